//! Changes that both the REST API and the web UI make, each in its own transaction with
//! the hooks that must see it: one implementation, whichever edge asks.

use serde_json::Value;
use sqlx::PgConnection;

use super::{ApiError, AppState};
use crate::db::{
    self,
    deployments::{CommitOutcome, Deployment},
    events::Actor,
    keys::Key,
    noderoles::{Bound, NodeRole},
};

/// Binds `role` to `node` (SEMANTICS §3) after the bind hooks agree; unknown roles are
/// 404s like unknown nodes and deployments.
pub async fn bind(
    state: &AppState,
    actor: &Actor,
    node: &Key,
    role: &Key,
    deployment: Option<&Key>,
    data: Option<&Value>,
) -> Result<Bound, ApiError> {
    let mut tx = state.pool.begin().await?;
    let bound = bind_in(&mut tx, state, actor, node, role, deployment, data).await?;
    tx.commit().await?;
    Ok(bound)
}

/// [`bind`] inside the caller's transaction. Binding a role to a node discovery made is
/// accepting it (docs/provisioning.md "Discovery").
pub async fn bind_in(
    tx: &mut PgConnection,
    state: &AppState,
    actor: &Actor,
    node: &Key,
    role: &Key,
    deployment: Option<&Key>,
    data: Option<&Value>,
) -> Result<Bound, ApiError> {
    let role = db::roles::get_role(tx, role).await?;
    let bound = db::noderoles::bind(tx, node, &role.name, deployment, data, actor).await?;
    state.hooks.check_bind(tx, &bound).await?;
    let accept = db::nodes::NodeUpdate {
        accept: true,
        ..Default::default()
    };
    db::nodes::update(tx, node, &accept, actor, "a role was bound to it").await?;
    Ok(bound)
}

/// Commits a deployment (SEMANTICS §4) after the commit hooks agree; returns the
/// deployment as it is after the commit.
pub async fn commit_deployment(
    state: &AppState,
    actor: &Actor,
    key: &Key,
) -> Result<(Deployment, CommitOutcome), ApiError> {
    let mut tx = state.pool.begin().await?;
    let committed = commit_deployment_in(&mut tx, state, actor, key).await?;
    tx.commit().await?;
    Ok(committed)
}

/// [`commit_deployment`] inside the caller's transaction.
pub async fn commit_deployment_in(
    tx: &mut PgConnection,
    state: &AppState,
    actor: &Actor,
    key: &Key,
) -> Result<(Deployment, CommitOutcome), ApiError> {
    let outcome = db::deployments::commit(tx, key, actor).await?;
    let deployment = db::deployments::get(tx, key).await?;
    state.hooks.check_commit(tx, deployment.id).await?;
    Ok((deployment, outcome))
}

/// The state changes a single noderole can be asked for.
#[derive(Debug, Clone, Copy)]
pub enum StateChange {
    Retry,
    Propose,
    Commit,
}

/// Applies one state change to noderole `id` in its own transaction.
pub async fn change_noderole(
    state: &AppState,
    actor: &Actor,
    id: i64,
    change: StateChange,
) -> Result<NodeRole, ApiError> {
    let mut tx = state.pool.begin().await?;
    let noderole = match change {
        StateChange::Retry => db::noderoles::retry(&mut tx, id, actor).await?,
        StateChange::Propose => db::noderoles::propose_one(&mut tx, id, actor).await?,
        StateChange::Commit => db::noderoles::commit_one(&mut tx, id, actor).await?,
    };
    tx.commit().await?;
    Ok(noderole)
}
