//! Nodes' BMCs (migration 0017): where they are, who crowbar is to them (the password
//! sealed by the caller), the certificate pinned and the power state last read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::error::{Error, Result};

/// A node's BMC as the API shows it: everything but the password.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Bmc {
    pub node: String,
    pub node_id: i64,
    /// `redfish` or `ipmi`
    pub driver: String,
    pub address: String,
    pub port: Option<i32>,
    /// The Redfish system's id; null: the BMC's only system.
    pub system: Option<String>,
    pub username: String,
    /// The certificate pinned on first contact (`sha256:<hex>`); null until then.
    pub cert_fingerprint: Option<String>,
    /// `on`, `off` or `unknown` as last read; null before the first read.
    pub power: Option<String>,
    pub power_checked_at: Option<DateTime<Utc>>,
    /// Why the last read failed, if it did.
    pub power_reason: String,
    /// The power state crowbar last asked for (`on`, `off`); null before any operation.
    pub desired_power: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What enrolling a BMC stores.
#[derive(Debug, Clone)]
pub struct NewBmc {
    pub driver: String,
    pub address: String,
    pub port: Option<i32>,
    pub system: Option<String>,
    pub username: String,
    pub password_sealed: Vec<u8>,
}

/// The node's BMC, if it has one.
pub async fn get(conn: &mut PgConnection, node_id: i64) -> Result<Option<Bmc>> {
    Ok(sqlx::query_as(
        "SELECT n.name AS node, b.node_id, b.driver, b.address, b.port, b.system, b.username,
                b.cert_fingerprint, b.power, b.power_checked_at, b.power_reason, b.desired_power,
                b.updated_at
           FROM node_bmcs b JOIN nodes n ON n.id = b.node_id
          WHERE b.node_id = $1",
    )
    .bind(node_id)
    .fetch_optional(conn)
    .await?)
}

/// The node's BMC, or a 404 that says the node has none.
pub async fn require(conn: &mut PgConnection, node_id: i64, node: &str) -> Result<Bmc> {
    get(conn, node_id)
        .await?
        .ok_or_else(|| Error::not_found("BMC of node", node))
}

/// Every node with a BMC: (id, name), by id.
pub async fn enrolled(pool: &sqlx::PgPool) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT n.id, n.name FROM node_bmcs b JOIN nodes n ON n.id = b.node_id ORDER BY n.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Those of `nodes` (ids) with a BMC, in the order given.
pub async fn with_bmc(conn: &mut PgConnection, nodes: &[i64]) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT b.node_id FROM unnest($1::bigint[]) WITH ORDINALITY AS given (id, at)
           JOIN node_bmcs b ON b.node_id = given.id ORDER BY given.at",
    )
    .bind(nodes)
    .fetch_all(conn)
    .await?)
}

/// Every node with a BMC that no power operation is using now (the sweep leaves a BMC
/// alone while an operation talks to it): (id, name), by id.
pub async fn idle(pool: &sqlx::PgPool) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT n.id, n.name FROM node_bmcs b JOIN nodes n ON n.id = b.node_id
          WHERE NOT EXISTS (SELECT 1 FROM power_ops o WHERE o.node_id = b.node_id AND o.state = 'running')
          ORDER BY n.id",
    )
    .fetch_all(pool)
    .await?)
}

/// The sealed password of the node's BMC.
pub async fn sealed_password(conn: &mut PgConnection, node_id: i64) -> Result<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT password_sealed FROM node_bmcs WHERE node_id = $1")
            .bind(node_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Enrolls or replaces the node's BMC. A new address (or driver, port or system) forgets
/// the pinned certificate and the power last read: it is another BMC.
pub async fn set(conn: &mut PgConnection, node_id: i64, bmc: &NewBmc) -> Result<()> {
    sqlx::query(
        "INSERT INTO node_bmcs (node_id, driver, address, port, system, username, password_sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (node_id) DO UPDATE SET
           driver = excluded.driver, address = excluded.address, port = excluded.port,
           system = excluded.system, username = excluded.username,
           password_sealed = excluded.password_sealed,
           cert_fingerprint = CASE WHEN (node_bmcs.driver, node_bmcs.address, node_bmcs.port, node_bmcs.system)
                                     IS NOT DISTINCT FROM (excluded.driver, excluded.address, excluded.port, excluded.system)
                                   THEN node_bmcs.cert_fingerprint END,
           power = NULL, power_checked_at = NULL, power_reason = '',
           updated_at = now()",
    )
    .bind(node_id)
    .bind(&bmc.driver)
    .bind(&bmc.address)
    .bind(bmc.port)
    .bind(&bmc.system)
    .bind(&bmc.username)
    .bind(&bmc.password_sealed)
    .execute(conn)
    .await?;
    Ok(())
}

/// Enrolls or replaces the node's BMC ([`set`]) and queues the `check` every enrolment
/// gets (are the credentials good, may the account change the power): the BMC and the
/// check. The caller commits.
pub async fn enroll(
    conn: &mut PgConnection,
    node_id: i64,
    node: &str,
    bmc: &NewBmc,
    actor: &super::events::Actor,
) -> Result<(Bmc, super::power_ops::PowerOp)> {
    set(conn, node_id, bmc).await?;
    let (check, _) = super::power_ops::request(conn, node_id, "check", false, actor).await?;
    Ok((require(conn, node_id, node).await?, check))
}

/// The name of the node other than `node_id` whose BMC (of `driver`) is at `address`, if
/// one is: a BMC belongs to one machine.
pub async fn owner_of(
    conn: &mut PgConnection,
    driver: &str,
    address: &str,
    node_id: i64,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT n.name FROM node_bmcs b JOIN nodes n ON n.id = b.node_id
          WHERE b.driver = $1 AND b.address = $2 AND b.node_id <> $3
          ORDER BY n.id LIMIT 1",
    )
    .bind(driver)
    .bind(address)
    .bind(node_id)
    .fetch_optional(conn)
    .await?)
}

/// Removes the node's BMC; whether it had one.
pub async fn delete(conn: &mut PgConnection, node_id: i64) -> Result<bool> {
    Ok(sqlx::query("DELETE FROM node_bmcs WHERE node_id = $1")
        .bind(node_id)
        .execute(conn)
        .await?
        .rows_affected()
        > 0)
}

/// Forgets the pinned certificate: the next contact pins what the BMC presents. Returns
/// the one forgotten.
pub async fn forget_certificate(conn: &mut PgConnection, node_id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "UPDATE node_bmcs b SET cert_fingerprint = NULL, updated_at = now()
           FROM (SELECT cert_fingerprint FROM node_bmcs WHERE node_id = $1 FOR UPDATE) old
          WHERE b.node_id = $1
         RETURNING old.cert_fingerprint",
    )
    .bind(node_id)
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// Pins `fingerprint` when nothing is pinned yet (first contact; two daemons making first
/// contact at once pin the first one).
pub async fn pin_certificate(
    conn: &mut PgConnection,
    node_id: i64,
    fingerprint: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE node_bmcs SET cert_fingerprint = $2 WHERE node_id = $1 AND cert_fingerprint IS NULL",
    )
    .bind(node_id)
    .bind(fingerprint)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a power read: the state, or why there is none (`state` `None`). A state other
/// than the one read before is a `node.power_changed` event (the node's history and the
/// pages follow it; the first read of a BMC is not a change).
pub async fn record_power(
    conn: &mut PgConnection,
    node_id: i64,
    state: Option<&str>,
    reason: &str,
) -> Result<()> {
    let before: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE node_bmcs b SET power = coalesce($2, 'unknown'), power_checked_at = now(),
                power_reason = $3
           FROM (SELECT power FROM node_bmcs WHERE node_id = $1 FOR UPDATE) old
          WHERE b.node_id = $1
         RETURNING old.power",
    )
    .bind(node_id)
    .bind(state)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    let now = state.unwrap_or("unknown");
    if let Some(Some(before)) = before
        && before != now
    {
        super::events::record(
            conn,
            &super::events::Actor("power".into()),
            super::events::NewEvent {
                kind: "node.power_changed",
                reason: reason.to_string(),
                node_id: Some(node_id),
                data: serde_json::json!({
                    "power": now,
                    "changes": { "power": { "from": before, "to": now } },
                }),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}
