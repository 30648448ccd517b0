//! What the DHCP and DNS databases read from the nodes, and what they record having handed
//! to dnsmasq (`dhcp_reservations`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::error::Result;

/// A node's DHCP reservation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reservation {
    pub node_id: i64,
    /// When the row was read (the statement's start): what dnsmasq serves is as of then.
    pub read_at: DateTime<Utc>,
    pub name: String,
    pub mac: String,
    pub address: String,
}

/// Every node with a MAC and an IPv4 admin address.
pub async fn reservations(pool: &PgPool) -> Result<Vec<Reservation>> {
    Ok(sqlx::query_as(
        "SELECT id AS node_id, now() AS read_at, name, mac::text AS mac, host(address) AS address
           FROM nodes WHERE mac IS NOT NULL AND family(address) = 4 ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// `(name, address)` of every address of every node: admin addresses and allocations.
pub async fn records(pool: &PgPool) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT n.name, host(a.address) FROM (
             SELECT id AS node_id, address FROM nodes WHERE address IS NOT NULL
             UNION SELECT node_id, address FROM network_allocations) a
           JOIN nodes n ON n.id = a.node_id ORDER BY n.id, family(a.address), a.address",
    )
    .fetch_all(pool)
    .await?)
}

/// Records `rows` as what dnsmasq serves now (and nothing else).
pub async fn record_reservations(pool: &PgPool, rows: &[Reservation]) -> Result<()> {
    let ids: Vec<i64> = rows.iter().map(|r| r.node_id).collect();
    let macs: Vec<&str> = rows.iter().map(|r| r.mac.as_str()).collect();
    let addresses: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
    let read_at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.read_at).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM dhcp_reservations WHERE NOT (node_id = ANY($1))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO dhcp_reservations (node_id, mac, address, written_at)
         SELECT r.node_id, r.mac::macaddr, r.address::inet, r.read_at
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])
                AS r(node_id, mac, address, read_at)
           JOIN nodes n ON n.id = r.node_id
         ON CONFLICT (node_id) DO UPDATE SET mac = excluded.mac, address = excluded.address,
                                             written_at = excluded.written_at",
    )
    .bind(&ids)
    .bind(&macs)
    .bind(&addresses)
    .bind(&read_at)
    .execute(&mut *tx)
    .await?;
    Ok(tx.commit().await?)
}

/// The ACTIVE, TODO or TRANSITION noderoles of `role` in committed deployments: those a
/// node change re-runs. A running one counts: the change may have come too late for the
/// data it read, so it runs once more after.
pub async fn runnable_noderoles_of(pool: &PgPool, role: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id
           JOIN deployments d ON d.id = nr.deployment_id
          WHERE r.name = $1 AND d.state = 'committed' AND nr.state IN (0, 1, 2)",
    )
    .bind(role)
    .fetch_all(pool)
    .await?)
}
