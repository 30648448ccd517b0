//! What the hook dispatcher reads and keeps: its cursor over the numbered event log (`seq`,
//! see [`super::events::sequence_pending`]; the cursor lives in the `installation` table,
//! so one daemon at a time dispatches and a restart resumes), the events past it, and the
//! role lookups hooks need.

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::Result;

/// The `installation` key of the cursor.
const CURSOR_KEY: &str = "hooks.cursor";

/// A durable event, as hooks see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HookEvent {
    pub id: i64,
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub node_id: Option<i64>,
    pub noderole_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub data: Value,
}

/// This daemon's hold on the cursor: the transaction that locks its row. Dropping it
/// without [`CursorLease::advance`] leaves the cursor where it was.
pub struct CursorLease {
    tx: Transaction<'static, Postgres>,
    /// The `seq` of the last event dispatched.
    at: i64,
}

/// Takes the cursor, creating it at the end of the log on first use; `None` when another
/// daemon holds it.
pub async fn lease_cursor(pool: &PgPool) -> Result<Option<CursorLease>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO installation (key, value)
         SELECT $1, jsonb_build_object('seq', coalesce(max(seq), 0)) FROM event_order
         ON CONFLICT DO NOTHING",
    )
    .bind(CURSOR_KEY)
    .execute(&mut *tx)
    .await?;
    // A cursor of an earlier version names (txid, id): it resumes from the last numbered
    // event at or before it (hooks tolerate being called again for an event).
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT coalesce((value->>'seq')::bigint,
                         (SELECT coalesce(max(o.seq), 0)
                            FROM event_order o JOIN events e ON e.id = o.event_id
                           WHERE (txid::text::bigint, id) <= ((value->>'txid')::bigint, (value->>'id')::bigint)))
           FROM installation WHERE key = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(CURSOR_KEY)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(at.map(|at| CursorLease { tx, at }))
}

impl CursorLease {
    /// Up to `limit` numbered events past the cursor, in `seq` order.
    pub async fn pending(&mut self, limit: i64) -> Result<Vec<HookEvent>> {
        Ok(sqlx::query_as(
            "SELECT e.id, o.seq, type, node_id, noderole_id, deployment_id, data
               FROM event_order o JOIN events e ON e.id = o.event_id
              WHERE o.seq > $1 ORDER BY o.seq LIMIT $2",
        )
        .bind(self.at)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Moves the cursor past `last` (when there is one) and lets it go.
    pub async fn advance(mut self, last: Option<&HookEvent>) -> Result<()> {
        if let Some(last) = last {
            sqlx::query(
                "UPDATE installation SET value = jsonb_build_object('seq', $2::bigint)
                  WHERE key = $1",
            )
            .bind(CURSOR_KEY)
            .bind(last.seq)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(self.tx.commit().await?)
    }
}

/// Role names by role id (the ids `node_role.updated` events carry); a role that is gone
/// has none.
pub async fn role_names(
    pool: &PgPool,
    role_ids: &[i64],
) -> Result<std::collections::HashMap<i64, String>> {
    if role_ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM roles WHERE id = ANY($1)")
        .bind(role_ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The deployment's noderoles of the given roles, as (noderole id, role), in the order
/// commit hooks see them (cohort, then id).
pub async fn noderoles_of_roles(
    conn: &mut PgConnection,
    deployment_id: i64,
    roles: &[&str],
) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT nr.id, r.name FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1 AND r.name = ANY($2) ORDER BY nr.cohort, nr.id",
    )
    .bind(deployment_id)
    .bind(roles)
    .fetch_all(conn)
    .await?)
}
