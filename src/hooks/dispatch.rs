//! Feeds durable events to hooks, once per installation, in order.

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{HookContext, Hooks, NodeEvent, NodeRoleEvent};
use crate::{
    db::{self, hooks::HookEvent},
    domain::state::NodeRoleState,
    events::Duty,
};

/// Events to dispatch at most per round.
const BATCH: i64 = 500;

/// Dispatches every pending event to `hooks`; returns how many events it passed.
///
/// Events come in `seq` order ([`db::events::sequence_pending`]), which never skips one and
/// never waits for unrelated transactions; the cursor moves past them after their hooks ran. A failing hook is logged; the
/// dispatcher never touches the graph itself.
pub async fn dispatch_pending(pool: &PgPool, hooks: &Hooks) -> crate::db::Result<usize> {
    // number what committed since (any daemon may; the one holding the lock does)
    db::events::sequence_pending(pool, BATCH).await?;
    let Some(mut cursor) = db::hooks::lease_cursor(pool).await? else {
        return Ok(0); // another daemon is dispatching
    };
    let events = cursor.pending(BATCH).await?;
    let ctx = HookContext { pool: pool.clone() };
    // The names of the roles the batch's noderole events carry, in one statement. By the
    // role recorded with the event, not by the noderole: the change happened whether or
    // not the noderole is still there, and the lookup stays as small as the roles table
    // (by noderole, it read one row per event).
    let mut role_ids: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "node_role.updated")
        .filter_map(role_id)
        .collect();
    role_ids.sort_unstable();
    role_ids.dedup();
    let roles = db::hooks::role_names(pool, &role_ids).await?;
    for event in &events {
        dispatch_one(hooks, &ctx, &roles, event).await;
    }
    cursor.advance(events.last()).await?;
    Ok(events.len())
}

/// The role a `node_role.updated` event recorded (its noderole may be gone since).
fn role_id(event: &HookEvent) -> Option<i64> {
    event.data["role_id"].as_i64()
}

async fn dispatch_one(
    hooks: &Hooks,
    ctx: &HookContext,
    roles: &HashMap<i64, String>,
    event: &HookEvent,
) {
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
            let role = role_id(event).and_then(|id| roles.get(&id)).cloned();
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

/// The dispatcher task of a daemon: on notifications while it holds the event `duty`,
/// and once a second always.
pub struct Dispatcher {
    pub pool: PgPool,
    pub hooks: Hooks,
    pub duty: Duty,
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
                _ = wake.notified() => if !self.duty.held() {
                    continue;
                },
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
