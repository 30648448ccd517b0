//! Pinned SSH host keys (`nodes.host_key`): stored on first contact, compared on every
//! later one, cleared by an admin to accept a new key. Every change is recorded in the
//! node's history.

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
};
use crate::domain::key::Key;

/// The pinned key of a node (an OpenSSH public key line), if any.
pub async fn pinned(pool: &PgPool, node_id: i64) -> Result<Option<String>> {
    let mut conn = pool.acquire().await?;
    Ok(pin_of(&mut conn, node_id).await?)
}

async fn pin_of(conn: &mut PgConnection, node_id: i64) -> sqlx::Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT host_key FROM nodes WHERE id = $1")
            .bind(node_id)
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}

/// Pins `key` unless a key is pinned already. Returns the key pinned afterwards: `key`
/// itself, or the one another daemon (or an earlier contact) pinned first.
pub async fn pin_first(
    conn: &mut PgConnection,
    node_id: i64,
    key: &str,
    fingerprint: &str,
    actor: &Actor,
) -> Result<Option<String>> {
    let stored: Option<String> = sqlx::query_scalar(
        "UPDATE nodes SET host_key = $2 WHERE id = $1 AND host_key IS NULL RETURNING host_key",
    )
    .bind(node_id)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    if stored.is_some() {
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "node.host_key_pinned",
                reason: "first contact".into(),
                node_id: Some(node_id),
                data: json!({"id": node_id, "fingerprint": fingerprint}),
                ..Default::default()
            },
        )
        .await?;
        return Ok(stored);
    }
    Ok(pin_of(conn, node_id).await?)
}

/// Forgets the pinned key of a node: the next contact pins whatever key it presents.
/// Returns the key that was pinned.
pub async fn clear(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<Option<String>> {
    let (id, name) = key.parts();
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, host_key FROM nodes WHERE id = $1 OR name = $2 FOR UPDATE")
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let (node_id, old) = row.ok_or_else(|| Error::not_found("node", key))?;
    if old.is_some() {
        sqlx::query("UPDATE nodes SET host_key = NULL WHERE id = $1")
            .bind(node_id)
            .execute(&mut *conn)
            .await?;
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "node.host_key_cleared",
                reason: "a new host key will be accepted on next contact".into(),
                node_id: Some(node_id),
                data: json!({"id": node_id}),
                ..Default::default()
            },
        )
        .await?;
        // the node may be probed (and come back) now
        events::notify(conn, events::CHANNEL_ANNEAL).await?;
    }
    Ok(old)
}
