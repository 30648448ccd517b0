//! What both the REST API and the web UI do for a request: every change in its own
//! transaction with the hooks that must see it, and noderoles read with the reason each is
//! not running. One implementation, whichever edge asks; the handlers of `api` and `ui`
//! only parse the request and shape the answer.

use std::{collections::HashMap, net::IpAddr};

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use super::{audit::Acting, error::ApiError, state::AppState};
use crate::db::{
    self,
    audit::Object,
    deployment_roles::DeploymentRole,
    deployments::{CommitOutcome, Deployment},
    documents::Applied,
    events::Actor,
    explain::Explained,
    keys::Key,
    networks::{NewNetwork, NewRange},
    node_roles::{Bound, NodeRole, NodeRoleFilter},
    nodes::{NewNode, NodeUpdate},
};

/// Runs `change` in a transaction of its own with its audit record (on the object and
/// with the summary `change` returns), committed when it succeeds.
async fn in_transaction<T>(
    state: &AppState,
    acting: &Acting,
    change: impl AsyncFnOnce(&mut PgConnection) -> Result<(T, Object, Value), ApiError>,
) -> Result<T, ApiError> {
    let mut tx = state.pool.begin().await?;
    let (done, object, summary) = change(&mut tx).await?;
    acting.record(&mut tx, &object, summary).await?;
    tx.commit().await?;
    Ok(done)
}

/// The audit object of a noderole: its id, named `role@node`.
pub fn noderole_object(noderole: &NodeRole) -> Object {
    Object::new(
        "noderole",
        noderole.id,
        format!("{}@{}", noderole.role, noderole.node),
    )
}

/// The top-level keys of role data, for an audit summary: which settings changed, never
/// their values (they may be secrets).
pub fn data_keys(data: &Value) -> Vec<&str> {
    data.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The audit summary of a commit: the snapshot recorded and how many noderoles changed.
pub fn commit_summary(outcome: &CommitOutcome) -> Value {
    serde_json::json!({
        "snapshot": outcome.snapshot.as_ref().map(|s| s.seq),
        "recorded": outcome.recorded,
        "noderoles_changed": outcome.changed.len(),
    })
}

/// Binds `role` to `node` (SEMANTICS §3) after the bind hooks agree; unknown roles are
/// 404s like unknown nodes and deployments.
pub async fn bind(
    state: &AppState,
    acting: &Acting,
    node: &Key,
    role: &Key,
    deployment: Option<&Key>,
    data: Option<&Value>,
) -> Result<Bound, ApiError> {
    in_transaction(state, acting, async |tx| {
        let bound = bind_in(tx, state, &acting.actor, node, role, deployment, data).await?;
        let object = noderole_object(&bound.noderole);
        let summary = serde_json::json!({
            "deployment": bound.noderole.deployment,
            "parents_created": bound.created.len(),
        });
        Ok((bound, object, summary))
    })
    .await
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
    let bound = db::node_roles::bind(tx, node, &role.name, deployment, data, actor).await?;
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
    acting: &Acting,
    key: &Key,
) -> Result<(Deployment, CommitOutcome), ApiError> {
    in_transaction(state, acting, async |tx| {
        let (deployment, outcome) = commit_deployment_in(tx, state, &acting.actor, key).await?;
        let object = Object::new("deployment", deployment.id, &deployment.name);
        let summary = commit_summary(&outcome);
        Ok(((deployment, outcome), object, summary))
    })
    .await
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
    acting: &Acting,
    id: i64,
    change: StateChange,
) -> Result<NodeRole, ApiError> {
    let actor = &acting.actor;
    in_transaction(state, acting, async |tx| {
        let noderole = match change {
            StateChange::Retry => db::node_roles::retry(tx, id, actor).await?,
            StateChange::Propose => db::node_roles::propose_one(tx, id, actor).await?,
            StateChange::Commit => db::node_roles::commit_one(tx, id, actor).await?,
        };
        let object = noderole_object(&noderole);
        let summary = serde_json::json!({ "state": noderole.status });
        Ok((noderole, object, summary))
    })
    .await
}

/// Creates a deployment under `parent` (the system deployment when none).
pub async fn create_deployment(
    state: &AppState,
    acting: &Acting,
    name: &str,
    description: &str,
    parent: Option<&Key>,
) -> Result<Deployment, ApiError> {
    in_transaction(state, acting, async |tx| {
        let made = db::deployments::create(tx, name, description, parent, &acting.actor).await?;
        let object = Object::new("deployment", made.id, &made.name);
        let summary = serde_json::json!({ "parent": made.parent });
        Ok((made, object, summary))
    })
    .await
}

/// Opens a proposal on a deployment (SEMANTICS §4).
pub async fn propose_deployment(
    state: &AppState,
    acting: &Acting,
    key: &Key,
) -> Result<Deployment, ApiError> {
    in_transaction(state, acting, async |tx| {
        let deployment = db::deployments::propose(tx, key, &acting.actor).await?;
        let object = Object::new("deployment", deployment.id, &deployment.name);
        Ok((deployment, object, serde_json::json!({})))
    })
    .await
}

/// Makes snapshot `seq` of a deployment its proposal again.
pub async fn recall_snapshot(
    state: &AppState,
    acting: &Acting,
    key: &Key,
    seq: i32,
) -> Result<Applied, ApiError> {
    in_transaction(state, acting, async |tx| {
        let applied = db::documents::recall(tx, key, seq, &acting.actor).await?;
        let deployment = db::deployments::get(tx, key).await?;
        let object = Object::new("deployment", deployment.id, &deployment.name);
        let mut summary = applied_summary(&applied);
        summary["recalled"] = seq.into();
        Ok((applied, object, summary))
    })
    .await
}

/// The audit summary of applying a document: the snapshot and the plan's counts.
pub fn applied_summary(applied: &Applied) -> Value {
    serde_json::json!({
        "snapshot": applied.snapshot,
        "changed": applied.changed,
        "committed": applied.committed,
        "plan": {
            "create": applied.plan.create.len(),
            "remove": applied.plan.remove.len(),
            "rerun": applied.plan.rerun.len(),
        },
    })
}

/// Adds `role` to a deployment's roles with `data`.
pub async fn add_deployment_role(
    state: &AppState,
    acting: &Acting,
    deployment: &Key,
    role: &Key,
    data: &Value,
) -> Result<DeploymentRole, ApiError> {
    in_transaction(state, acting, async |tx| {
        let made = db::deployment_roles::create(tx, deployment, role, data, &acting.actor).await?;
        let object = Object::new(
            "deployment_role",
            made.id,
            format!("{}@{}", made.role, made.deployment),
        );
        Ok((made, object, serde_json::json!({})))
    })
    .await
}

/// Unbinds noderole `id` and its descendants (SEMANTICS §9); returns their ids, sorted.
pub async fn delete_noderole(
    state: &AppState,
    acting: &Acting,
    id: i64,
) -> Result<Vec<i64>, ApiError> {
    let mut deleted = in_transaction(state, acting, async |tx| {
        let noderole = db::node_roles::get(tx, id).await?;
        let deleted = db::node_roles::delete(tx, id, &acting.actor).await?;
        let summary = serde_json::json!({ "noderoles_deleted": deleted.len() });
        Ok((deleted, noderole_object(&noderole), summary))
    })
    .await?;
    deleted.sort_unstable();
    Ok(deleted)
}

/// Applies one update to several nodes, all or none; `why` goes into each node's history.
/// Each node changed has its own audit record with `summary`.
pub async fn update_nodes(
    state: &AppState,
    acting: &Acting,
    nodes: &[Key],
    update: &NodeUpdate,
    why: &str,
    summary: &Value,
) -> Result<(), ApiError> {
    let mut tx = state.pool.begin().await?;
    for node in nodes {
        let node = db::nodes::update(&mut tx, node, update, &acting.actor, why).await?;
        acting
            .record(
                &mut tx,
                &Object::new("node", node.id, &node.name),
                summary.clone(),
            )
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A noderole as the API shows it: its fields plus `reason` (null when ACTIVE, else why it
/// is not running, from [`db::explain`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithReason<T> {
    #[serde(flatten)]
    pub noderole: T,
    /// Why it is not running: `{code, message, ...}`, or null when ACTIVE.
    pub reason: Option<Value>,
}

impl From<Explained> for WithReason<NodeRole> {
    fn from((noderole, reason): Explained) -> Self {
        WithReason { noderole, reason }
    }
}

/// The page of noderoles `filter` selects, with their reasons.
pub async fn noderole_page(
    state: &AppState,
    filter: &NodeRoleFilter,
) -> Result<Vec<WithReason<NodeRole>>, ApiError> {
    let page = db::explain::page(&state.pool, filter, state.run_cap).await?;
    Ok(page.into_iter().map(WithReason::from).collect())
}

/// Attaches reasons to noderoles (read again with their facts, in one go).
pub async fn with_reasons(
    state: &AppState,
    noderoles: Vec<NodeRole>,
) -> Result<Vec<WithReason<NodeRole>>, ApiError> {
    let ids: Vec<i64> = noderoles.iter().map(|nr| nr.id).collect();
    let mut reasons = reasons_of(state, &ids).await?;
    Ok(noderoles
        .into_iter()
        .map(|noderole| WithReason {
            reason: reasons.remove(&noderole.id),
            noderole,
        })
        .collect())
}

/// Attaches the reason of noderole `id` to one noderole representation.
pub async fn with_reason<T>(
    state: &AppState,
    id: i64,
    noderole: T,
) -> Result<WithReason<T>, ApiError> {
    let mut reasons = reasons_of(state, &[id]).await?;
    Ok(WithReason {
        reason: reasons.remove(&id),
        noderole,
    })
}

async fn reasons_of(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, Value>, ApiError> {
    Ok(db::explain::reasons(&state.pool, ids, state.run_cap).await?)
}

/// The role the admin node gets; it pulls in what an admin node needs.
const ADMIN_ROLE: &str = "crowbar-admin-node";

/// The admin network of the setup wizard, as `ui::setup` checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminNetwork {
    pub name: String,
    pub first: IpAddr,
    pub last: IpAddr,
    pub router: Option<IpAddr>,
}

/// The first-start setup (web UI `/setup`), in one transaction: the admin network, the admin
/// node in the system deployment, [`ADMIN_ROLE`] bound to it and the system deployment
/// committed.
pub async fn set_up_admin_node(
    state: &AppState,
    acting: &Acting,
    node_name: &str,
    address: IpAddr,
    network: &AdminNetwork,
) -> Result<(), ApiError> {
    let actor = &acting.actor;
    in_transaction(state, acting, async |tx| {
        let system_id = db::deployments::system_id(tx).await?;
        let system = Key::Id(system_id);
        create_admin_network(tx, network, actor).await?;
        let (node, _token) = db::nodes::create(
            tx,
            &NewNode {
                name: node_name.to_string(),
                address: Some(address.to_string()),
                admin: true,
                description: "the admin node, named in the setup wizard".into(),
                deployment: Some(system.clone()),
                ..Default::default()
            },
            actor,
        )
        .await?;
        bind_in(
            tx,
            state,
            actor,
            &Key::Id(node.id),
            &Key::Name(ADMIN_ROLE.into()),
            Some(&system),
            None,
        )
        .await?;
        commit_deployment_in(tx, state, actor, &system).await?;
        let object = Object::new("node", node.id, &node.name);
        let summary = serde_json::json!({
            "admin_node": node_name,
            "address": address.to_string(),
            "network": network.name,
        });
        Ok(((), object, summary))
    })
    .await
}

/// Creates the admin network (named `admin` in the form by default, which gets an `auto`
/// IPv6 prefix and gives nodes their admin addresses; see docs/provisioning.md).
async fn create_admin_network(
    tx: &mut PgConnection,
    network: &AdminNetwork,
    actor: &Actor,
) -> Result<(), ApiError> {
    db::networks::create(
        tx,
        &NewNetwork {
            name: network.name.clone(),
            description: "the admin network, from the setup wizard".into(),
            deployment: None,
            v6prefix: None,
            v4prefix: None,
            ranges: vec![NewRange {
                name: "admin".into(),
                first: network.first,
                last: network.last,
            }],
            router: network.router.map(|address| (address, 0)),
        },
        actor,
    )
    .await?;
    Ok(())
}

/// Queues `action` on every node of `nodes` (ids) in one transaction, all or none: each
/// must have a BMC. A node with the same action already waiting keeps that one (it is in
/// the answer, not queued twice). Returns the operations, in the order of `nodes`.
pub async fn request_power(
    state: &AppState,
    acting: &Acting,
    nodes: &[i64],
    action: &str,
    force: bool,
) -> Result<Vec<db::power_ops::PowerOp>, ApiError> {
    if crate::domain::bmc::PowerOperation::parse(action).is_none() {
        return Err(ApiError::unprocessable(
            "invalid_power_action",
            format!(
                "`{action}` is not a power action: on, off, force-off, cycle, pxe-once, discover or check"
            ),
        ));
    }
    let mut tx = state.pool.begin().await?;
    let mut ops = Vec::with_capacity(nodes.len());
    for &node_id in nodes {
        let node = db::nodes::get(&mut tx, &Key::Id(node_id)).await?;
        if db::bmcs::get(&mut tx, node_id).await?.is_none() {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "no_bmc",
                format!(
                    "node {} has no BMC; enroll one first (crowbar nodes bmc set {} ...)",
                    node.name, node.name
                ),
            ));
        }
        let (op, queued) =
            db::power_ops::request(&mut tx, node_id, action, force, &acting.actor).await?;
        if queued {
            acting
                .record(
                    &mut tx,
                    &Object::new("node", node.id, &node.name),
                    serde_json::json!({ "power_op": op.id, "action": action, "force": force }),
                )
                .await?;
        }
        ops.push(op);
    }
    tx.commit().await?;
    Ok(ops)
}
