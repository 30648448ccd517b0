//! Feeds durable events to hooks, once per installation, in order.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{HookContext, Hooks, NodeEvent, NodeRoleEvent};
use crate::domain::state::NodeRoleState;

/// Where the dispatcher has got to, kept in the `installation` table so one daemon at a
/// time dispatches and a restart resumes.
const CURSOR_KEY: &str = "hooks.cursor";

/// Events to dispatch at most per round.
const BATCH: i64 = 500;

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    txid: i64,
    #[sqlx(rename = "type")]
    kind: String,
    node_id: Option<i64>,
    noderole_id: Option<i64>,
    deployment_id: Option<i64>,
    data: Value,
}

/// Dispatches every pending event to `hooks`; returns how many events it passed.
///
/// Events are consumed in (transaction id, event id) order, and only from transactions
/// older than every transaction still in flight: nothing can appear later before the
/// cursor, so no event is skipped even when transactions commit out of id order. A failing
/// hook is logged; the dispatcher never touches the graph itself.
pub async fn dispatch_pending(pool: &PgPool, hooks: &Hooks) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO installation (key, value)
         SELECT $1, jsonb_build_object('txid', coalesce(max(txid::text::bigint), 0), 'id', coalesce(max(id), 0))
           FROM events ON CONFLICT DO NOTHING",
    )
    .bind(CURSOR_KEY)
    .execute(&mut *tx)
    .await?;
    let Some(cursor): Option<Value> =
        sqlx::query_scalar("SELECT value FROM installation WHERE key = $1 FOR UPDATE SKIP LOCKED")
            .bind(CURSOR_KEY)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(0); // another daemon is dispatching
    };
    let cursor = (
        cursor["txid"].as_i64().unwrap_or(0),
        cursor["id"].as_i64().unwrap_or(0),
    );
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT id, txid::text::bigint AS txid, type, node_id, noderole_id, deployment_id, data
           FROM events
          WHERE (txid::text::bigint, id) > ($1, $2)
            AND txid < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY txid, id LIMIT $3",
    )
    .bind(cursor.0)
    .bind(cursor.1)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let ctx = HookContext { pool: pool.clone() };
    for event in &events {
        dispatch_one(pool, hooks, &ctx, event).await;
    }
    if let Some(last) = events.last() {
        sqlx::query(
            "UPDATE installation SET value = jsonb_build_object('txid', $2::bigint, 'id', $3::bigint)
              WHERE key = $1",
        )
        .bind(CURSOR_KEY)
        .bind(last.txid)
        .bind(last.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(events.len())
}

async fn dispatch_one(pool: &PgPool, hooks: &Hooks, ctx: &HookContext, event: &EventRow) {
    let result = match event.kind.as_str() {
        "node_role.updated" => {
            let (Some(noderole_id), Some(node_id), Some(deployment_id)) =
                (event.noderole_id, event.node_id, event.deployment_id)
            else {
                return;
            };
            let Some(state) = event.data["state"]
                .as_i64()
                .and_then(|s| NodeRoleState::from_code(s as i16))
            else {
                return;
            };
            let role: Option<String> = sqlx::query_scalar(
                "SELECT r.name FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE nr.id = $1",
            )
            .bind(noderole_id)
            .fetch_optional(pool)
            .await
            .ok()
            .flatten();
            // state hooks are for committed deployments, as they were when the change happened
            let committed = event.data["deployment_committed"].as_bool() == Some(true);
            let Some(role) = role else { return };
            if !committed || hooks.for_role(&role).is_empty() {
                return;
            }
            let e = NodeRoleEvent {
                noderole_id,
                node_id,
                role: role.clone(),
                deployment_id,
                state,
            };
            let mut result = Ok(());
            for hook in hooks.for_role(&role) {
                result = result.and(hook.on_state(ctx, &e).await);
            }
            result
        }
        kind @ ("node.created" | "node.updated" | "node.deleted") => {
            let Some(node_id) = event.node_id else { return };
            let node = NodeEvent {
                node_id,
                name: event.data["name"].as_str().unwrap_or_default().to_string(),
                changes: event.data.get("changes").cloned().unwrap_or(Value::Null),
            };
            // on_node_change is for nodes that were available when they changed
            if kind == "node.updated" && event.data["available"].as_bool() != Some(true) {
                return;
            }
            let mut result = Ok(());
            for hook in hooks.all() {
                result = result.and(match kind {
                    "node.created" => hook.on_node_create(ctx, &node).await,
                    "node.updated" => hook.on_node_change(ctx, &node).await,
                    _ => hook.on_node_delete(ctx, &node).await,
                });
            }
            result
        }
        kind @ ("deployment.created" | "deployment.deleted") => {
            let Some(id) = event.deployment_id else {
                return;
            };
            let mut result = Ok(());
            for hook in hooks.all() {
                result = result.and(if kind == "deployment.created" {
                    hook.on_deployment_create(ctx, id).await
                } else {
                    hook.on_deployment_delete(ctx, id).await
                });
            }
            result
        }
        _ => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(event = event.id, kind = %event.kind, %error, "a hook failed");
    }
}

/// The dispatcher task of a daemon.
pub struct Dispatcher {
    pub pool: PgPool,
    pub hooks: Hooks,
}

impl Dispatcher {
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        if self.hooks.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {},
                _ = tick.tick() => {},
            }
            loop {
                match dispatch_pending(&self.pool, &self.hooks).await {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "dispatching hooks failed");
                        break;
                    }
                }
            }
        }
    }
}
