//! The OS-install handshake's state (`os_installs`) and what it checks: the DHCP data
//! dnsmasq serves for a node, and the node's reports.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::error::Result;

/// Where a node's install stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Install {
    pub node_id: i64,
    /// The install bootenv.
    pub bootenv: String,
    /// `requested` (bootenv set, waiting for DHCP), `rebooting` (the node was rebooted into
    /// the installer), `installed` (the installer reported `bootenv=local` and the
    /// provisioner confirmed: the node may reboot), `done` (the installed system booted).
    pub state: String,
    #[serde(skip)]
    pub confirmed_after_event: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn get(conn: &mut PgConnection, node_id: i64) -> Result<Option<Install>> {
    Ok(sqlx::query_as(
        "SELECT node_id, bootenv, state, confirmed_after_event, created_at, updated_at
           FROM os_installs WHERE node_id = $1",
    )
    .bind(node_id)
    .fetch_optional(conn)
    .await?)
}

/// Starts the install of a node; false if it has one already (never two).
pub async fn start(conn: &mut PgConnection, node_id: i64, bootenv: &str) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO os_installs (node_id, bootenv, state) VALUES ($1, $2, 'requested')
         ON CONFLICT (node_id) DO NOTHING",
    )
    .bind(node_id)
    .bind(bootenv)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Moves an install from `from` to `to`; false if it was not in `from`.
pub async fn advance(pool: &PgPool, node_id: i64, from: &str, to: &str) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE os_installs SET state = $3,
                confirmed_after_event = CASE WHEN $3 = 'installed'
                    THEN (SELECT coalesce(max(id), 0) FROM events) ELSE confirmed_after_event END
          WHERE node_id = $1 AND state = $2",
    )
    .bind(node_id)
    .bind(from)
    .bind(to)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// The node as the handshake needs it: MAC, IPv4 admin address, bootenv.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BootFacts {
    pub name: String,
    pub mac: Option<String>,
    pub address: Option<String>,
    pub bootenv: String,
}

pub async fn boot_facts(pool: &PgPool, node_id: i64) -> Result<BootFacts> {
    Ok(sqlx::query_as(
        "SELECT name, mac::text AS mac, host(address) AS address, bootenv FROM nodes WHERE id = $1",
    )
    .bind(node_id)
    .fetch_one(pool)
    .await?)
}

/// Whether dnsmasq serves the node's current reservation: the DHCP database wrote (and had
/// dnsmasq reload) exactly the node's MAC and address, in a run that started after the
/// node's bootenv last changed (the change's hook asked for that run).
pub async fn dhcp_current(pool: &PgPool, node_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dhcp_reservations r JOIN nodes n ON n.id = r.node_id
                         WHERE r.node_id = $1 AND r.mac = n.mac AND r.address = n.address
                           AND r.written_at >= coalesce(
                                 (SELECT max(at) FROM events WHERE node_id = $1 AND type = 'node.updated'
                                     AND data -> 'changes' ? 'bootenv'), '-infinity'))",
    )
    .bind(node_id)
    .fetch_one(pool)
    .await?)
}

/// Whether the node reported `alive=true` after event `after`.
pub async fn booted_since(pool: &PgPool, node_id: i64, after: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE node_id = $1 AND type = 'node.updated' AND id > $2
                           AND data #>> '{changes,alive,to}' = 'true')",
    )
    .bind(node_id)
    .bind(after)
    .fetch_one(pool)
    .await?)
}
