//! A node's `alive` flag (SEMANTICS.md §6), as the probe and the script jig change it: under
//! the node's row lock, only when it differs, through the node update that runs the death
//! ripple and records who and why in the node's history.

use sqlx::PgPool;

use super::{
    Result,
    error::{Error, is_retryable},
    events::Actor,
    keys::Key,
    nodes::{self, NodeUpdate},
};

/// How often a change that lost a deadlock or serialization race is tried again.
const RETRIES: u32 = 5;

/// Sets the node's `alive` flag unless it holds that value already; returns whether it
/// changed. A node deleted meanwhile is left alone. A refusal other than a database failure
/// (the node cannot change) is logged and counts as no change.
#[tracing::instrument(skip_all, fields(node = node_id, alive))]
pub async fn set(
    pool: &PgPool,
    node_id: i64,
    alive: bool,
    actor: &Actor,
    reason: &str,
) -> Result<bool> {
    let update = NodeUpdate {
        alive: Some(alive),
        ..Default::default()
    };
    let mut attempt = 0;
    loop {
        let mut tx = pool.begin().await?;
        let before: Option<bool> =
            sqlx::query_scalar("SELECT alive FROM nodes WHERE id = $1 FOR UPDATE")
                .bind(node_id)
                .fetch_optional(&mut *tx)
                .await?;
        match before {
            None => return Ok(false), // deleted meanwhile
            Some(before) if before == alive => return Ok(false),
            Some(_) => {}
        }
        match nodes::update(&mut tx, &Key::Id(node_id), &update, actor, reason).await {
            Ok(_) => {
                tx.commit().await?;
                tracing::info!(node_id, alive, actor = %actor.0, reason, "node aliveness changed");
                return Ok(true);
            }
            Err(e) if is_retryable(&e) && attempt < RETRIES => attempt += 1,
            Err(e @ Error::Sql(_)) => return Err(e),
            Err(other) => {
                tracing::warn!(node_id, error = %other, "cannot change aliveness");
                return Ok(false);
            }
        }
    }
}

/// A node the probe checks: one with an address.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProbeTarget {
    pub id: i64,
    pub name: String,
    /// The address as text (`host(address)`), without a prefix length.
    pub address: String,
    pub alive: bool,
}

/// Every node with an address, by id.
pub async fn probe_targets(pool: &PgPool) -> Result<Vec<ProbeTarget>> {
    Ok(sqlx::query_as(
        "SELECT id, name, host(address) AS address, alive FROM nodes
          WHERE address IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// The node with id `id` when it has an address.
pub async fn probe_target(pool: &PgPool, id: i64) -> Result<Option<ProbeTarget>> {
    Ok(sqlx::query_as(
        "SELECT id, name, host(address) AS address, alive FROM nodes
          WHERE id = $1 AND address IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}
