//! Server-side role hooks (SEMANTICS.md §7).
//!
//! State and node hooks are driven by the event log: the dispatcher reads events after they
//! are durable and calls every registered hook, so a hook never sees a change that was rolled
//! back and a crash between a change and its hook loses nothing (the cursor only advances
//! past dispatched events). Veto hooks (`on_node_bind`, `on_commit`) run inside the
//! transaction of the change, before it commits.

mod dispatch;

use std::{collections::BTreeMap, sync::Arc};

use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

pub use dispatch::{Dispatcher, dispatch_pending};

use crate::domain::state::NodeRoleState;

/// What a hook learns about a noderole.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRoleEvent {
    pub noderole_id: i64,
    pub node_id: i64,
    pub role: String,
    pub deployment_id: i64,
    pub state: NodeRoleState,
}

/// What a hook learns about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub node_id: i64,
    pub name: String,
    /// For `on_node_change`: `{field: {from, to}}`.
    pub changes: Value,
}

/// A refusal from a veto hook: the change does not happen (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{hook} refused: {reason}")]
pub struct Veto {
    pub hook: String,
    pub reason: String,
}

pub type HookResult = Result<(), String>;

/// What a hook may do: read and write through the pool, and ask for runs.
#[derive(Clone)]
pub struct HookContext {
    pub pool: PgPool,
}

impl HookContext {
    /// Asks for a run of a noderole on the high-priority lane (§7); asking again before it
    /// started refreshes its data instead of queueing a duplicate.
    pub async fn request_run(&self, noderole_id: i64) -> crate::db::Result<()> {
        let mut tx = self.pool.begin().await?;
        crate::db::runs::request_run(&mut tx, noderole_id, crate::db::runs::Lane::High).await?;
        Ok(tx.commit().await?)
    }
}

/// Hooks a role implements. Every method has a no-op default; hooks are fast, idempotent,
/// and must tolerate being called again for the same event.
pub trait RoleHooks: Send + Sync {
    /// The role whose noderole state hooks these are. Node and deployment hooks are called
    /// for every node and deployment, whatever role registered them.
    fn role(&self) -> &str;

    /// A noderole of this role changed state (after the change is committed; only for
    /// committed deployments): on_proposed, on_todo, on_transition, on_blocked, on_active,
    /// on_error in one method, by `event.state`.
    fn on_state<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _event: &'a NodeRoleEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    fn on_node_create<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    /// Every committed change of an available node.
    fn on_node_change<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    fn on_node_delete<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    fn on_deployment_create<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _deployment_id: i64,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    fn on_deployment_delete<'a>(
        &'a self,
        _ctx: &'a HookContext,
        _deployment_id: i64,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    /// Inside the binding's transaction: refuse by returning an error.
    fn on_node_bind<'a>(
        &'a self,
        _conn: &'a mut PgConnection,
        _noderole_id: i64,
        _node_id: i64,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
    /// Inside the commit's transaction, for each noderole of this role in the deployment.
    fn on_commit<'a>(
        &'a self,
        _conn: &'a mut PgConnection,
        _noderole_id: i64,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async { Ok(()) })
    }
}

/// The hooks a daemon runs.
#[derive(Clone, Default)]
pub struct Hooks {
    by_role: BTreeMap<String, Vec<Arc<dyn RoleHooks>>>,
}

impl Hooks {
    pub fn with(mut self, hooks: impl RoleHooks + 'static) -> Self {
        self.by_role
            .entry(hooks.role().to_string())
            .or_default()
            .push(Arc::new(hooks));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.by_role.is_empty()
    }

    pub fn for_role(&self, role: &str) -> &[Arc<dyn RoleHooks>] {
        self.by_role.get(role).map_or(&[], |v| v.as_slice())
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn RoleHooks>> {
        self.by_role.values().flatten()
    }

    /// Runs `on_node_bind` of the bound noderole's role and of every parent it created,
    /// inside the binding's transaction.
    pub async fn check_bind(
        &self,
        conn: &mut PgConnection,
        bound: &crate::db::node_roles::Bound,
    ) -> Result<(), Veto> {
        for nr in bound.created.iter().chain([&bound.noderole]) {
            for hook in self.for_role(&nr.role) {
                hook.on_node_bind(conn, nr.id, nr.node_id)
                    .await
                    .map_err(|reason| Veto {
                        hook: format!("{}.on_node_bind", nr.role),
                        reason,
                    })?;
            }
        }
        Ok(())
    }

    /// Runs `on_commit` for every noderole of the deployment whose role has hooks, inside
    /// the commit's transaction.
    pub async fn check_commit(
        &self,
        conn: &mut PgConnection,
        deployment_id: i64,
    ) -> Result<(), Veto> {
        if self.is_empty() {
            return Ok(());
        }
        let roles: Vec<&str> = self.by_role.keys().map(|s| s.as_str()).collect();
        let noderoles = crate::db::hooks::noderoles_of_roles(conn, deployment_id, &roles)
            .await
            .map_err(|e| Veto {
                hook: "on_commit".into(),
                reason: e.to_string(),
            })?;
        for (id, role) in noderoles {
            for hook in self.for_role(&role) {
                hook.on_commit(conn, id).await.map_err(|reason| Veto {
                    hook: format!("{role}.on_commit"),
                    reason,
                })?;
            }
        }
        Ok(())
    }
}
