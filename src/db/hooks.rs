//! What the hook dispatcher reads and keeps: its cursor over the event log (in the
//! `installation` table, so one daemon at a time dispatches and a restart resumes), the
//! durable events past it, and the role lookups hooks need.

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::Result;

/// The `installation` key of the cursor.
const CURSOR_KEY: &str = "hooks.cursor";

/// A durable event, as hooks see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HookEvent {
    pub id: i64,
    pub txid: i64,
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
    /// The (transaction id, event id) of the last event dispatched.
    at: (i64, i64),
}

/// Takes the cursor, creating it at the end of the log on first use; `None` when another
/// daemon holds it.
pub async fn lease_cursor(pool: &PgPool) -> Result<Option<CursorLease>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO installation (key, value)
         SELECT $1, jsonb_build_object('txid', coalesce(max(txid::text::bigint), 0), 'id', coalesce(max(id), 0))
           FROM events ON CONFLICT DO NOTHING",
    )
    .bind(CURSOR_KEY)
    .execute(&mut *tx)
    .await?;
    let cursor: Option<Value> =
        sqlx::query_scalar("SELECT value FROM installation WHERE key = $1 FOR UPDATE SKIP LOCKED")
            .bind(CURSOR_KEY)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(cursor.map(|cursor| CursorLease {
        tx,
        at: (
            cursor["txid"].as_i64().unwrap_or(0),
            cursor["id"].as_i64().unwrap_or(0),
        ),
    }))
}

impl CursorLease {
    /// Up to `limit` events past the cursor, in (transaction id, event id) order, and only
    /// from transactions older than every transaction still in flight: nothing can appear
    /// later before the cursor, so no event is skipped even when transactions commit out of
    /// id order.
    pub async fn pending(&mut self, limit: i64) -> Result<Vec<HookEvent>> {
        Ok(sqlx::query_as(
            "SELECT id, txid::text::bigint AS txid, type, node_id, noderole_id, deployment_id, data
               FROM events
              WHERE (txid::text::bigint, id) > ($1, $2)
                AND txid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY txid, id LIMIT $3",
        )
        .bind(self.at.0)
        .bind(self.at.1)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Moves the cursor past `last` (when there is one) and lets it go.
    pub async fn advance(mut self, last: Option<&HookEvent>) -> Result<()> {
        if let Some(last) = last {
            sqlx::query(
                "UPDATE installation SET value = jsonb_build_object('txid', $2::bigint, 'id', $3::bigint)
                  WHERE key = $1",
            )
            .bind(CURSOR_KEY)
            .bind(last.txid)
            .bind(last.id)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(self.tx.commit().await?)
    }
}

/// The role of a noderole, `None` when the noderole is gone.
pub async fn role_of_noderole(pool: &PgPool, noderole_id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT r.name FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE nr.id = $1",
    )
    .bind(noderole_id)
    .fetch_optional(pool)
    .await?)
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
