//! Noderoles: binding (§3), reading with reasons, data edits, commits and proposals of one
//! noderole or one node (§4), retry (§5) and deletion (§9). Whether a change is allowed is
//! `domain::node_role`'s decision, asked with the rows locked here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use tracing::field::Empty;

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    locks::{self, Lock},
    paging::{PagedQuery, Window},
    ripple,
};
use crate::domain::{
    bind::{BindWorld, ExistingNodeRole, NodeRoleRef, plan_bind},
    key::Key,
    node_role::{self, Descendant, Retry},
    reason::Other,
    state::NodeRoleState,
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NodeRole {
    pub id: i64,
    pub node: String,
    pub node_id: i64,
    pub role: String,
    pub role_id: i64,
    pub deployment: String,
    pub deployment_id: i64,
    pub state: i16,
    pub status: String,
    pub cohort: i32,
    pub run_count: i32,
    pub runlog: String,
    /// Whether the node is available (admin flag).
    pub available: bool,
    /// Whether any noderole on the same node is in ERROR (the node is frozen).
    pub node_error: bool,
    pub explicit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns of [`NodeRole`], read from [`NODEROLE_FROM`].
pub(super) const NODEROLE_COLUMNS: &str = "
    nr.id, n.name AS node, nr.node_id, r.name AS role, nr.role_id, d.name AS deployment,
    nr.deployment_id, nr.state,
    CASE nr.state WHEN -1 THEN 'error' WHEN 0 THEN 'active' WHEN 1 THEN 'todo'
                  WHEN 2 THEN 'transition' WHEN 3 THEN 'blocked' ELSE 'proposed' END AS status,
    nr.cohort, nr.run_count, nr.runlog, n.available,
    EXISTS (SELECT 1 FROM noderoles o WHERE o.node_id = nr.node_id AND o.state = -1) AS node_error,
    nr.explicit, nr.created_at, nr.updated_at";

/// Noderoles as `nr` with their node `n`, role `r` and deployment `d`.
pub(super) const NODEROLE_FROM: &str = "
    FROM noderoles nr JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
    JOIN deployments d ON d.id = nr.deployment_id";

/// A single noderole with its data, wall and neighbours.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeRoleDetail {
    #[serde(flatten)]
    pub noderole: NodeRole,
    /// Committed data, or proposed data while PROPOSED.
    pub data: Value,
    pub proposed_data: Value,
    pub committed_data: Value,
    pub sysdata: Value,
    pub wall: Value,
    pub parents: Vec<i64>,
    pub children: Vec<i64>,
}

/// Filters of a noderole listing; deployment, node and role match by name or id.
#[derive(Debug, Clone, Default)]
pub struct NodeRoleFilter {
    pub state: Option<NodeRoleState>,
    pub deployment: Option<String>,
    pub node: Option<String>,
    pub role: Option<String>,
    /// Only the noderoles of these nodes, when given.
    pub node_ids: Option<Vec<i64>>,
    pub window: Window,
}

impl NodeRoleFilter {
    /// The ids of the page this filter selects.
    pub(super) async fn page_ids(&self, conn: &mut PgConnection) -> Result<Vec<i64>> {
        let mut query = PagedQuery::new("noderoles");
        query
            .equal("state", self.state.map(|s| s.code()))
            .refers_to("deployment_id", "deployments", self.deployment.clone())
            .refers_to("node_id", "nodes", self.node.clone())
            .refers_to("role_id", "roles", self.role.clone())
            .any("node_id", self.node_ids.clone());
        query.ids(conn, self.window).await
    }
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<NodeRole> {
    sqlx::query_as::<_, NodeRole>(sqlx::AssertSqlSafe(format!(
        "SELECT {NODEROLE_COLUMNS} {NODEROLE_FROM} WHERE nr.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::not_found("noderole", id))
}

/// The noderole of `role` on `node`.
pub async fn find(conn: &mut PgConnection, node: &Key, role: &str) -> Result<i64> {
    let (node_id, node_name) = node.parts();
    sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
          WHERE (n.id = $1 OR n.name = $2) AND r.name = $3",
    )
    .bind(node_id)
    .bind(node_name)
    .bind(role)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::not_found("noderole", format!("{role} on {node}")))
}

pub async fn detail(conn: &mut PgConnection, id: i64) -> Result<NodeRoleDetail> {
    let noderole = get(conn, id).await?;
    let (proposed_data, committed_data, sysdata, wall): (Value, Value, Value, Value) =
        sqlx::query_as(
            "SELECT proposed_data, committed_data, sysdata, wall FROM noderoles WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let parents = sqlx::query_scalar(
        "SELECT parent_id FROM noderole_edges WHERE child_id = $1 ORDER BY parent_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let children = sqlx::query_scalar(
        "SELECT child_id FROM noderole_edges WHERE parent_id = $1 ORDER BY child_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let data = if noderole.state == NodeRoleState::Proposed.code() {
        proposed_data.clone()
    } else {
        committed_data.clone()
    };
    Ok(NodeRoleDetail {
        noderole,
        data,
        proposed_data,
        committed_data,
        sysdata,
        wall,
        parents,
        children,
    })
}

/// What a binding created.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub noderole: NodeRole,
    /// Parent noderoles the binding had to create, parents first.
    pub created: Vec<NodeRole>,
}

/// Binds `role` to `node` in `deployment` (default: the node's deployment), creating the
/// parents it needs, all PROPOSED (§3). Refusals leave no rows behind.
#[tracing::instrument(skip_all, fields(node = %node, deployment = deployment.map(display), noderole = Empty))]
pub async fn bind(
    conn: &mut PgConnection,
    node: &Key,
    role: &str,
    deployment: Option<&Key>,
    data: Option<&Value>,
    actor: &Actor,
) -> Result<Bound> {
    locks::hold(conn, Lock::Graph).await?;
    let node_id = super::nodes::id_of(conn, node).await?;
    let deployment_id = match deployment {
        Some(key) => super::deployments::id_of(conn, key).await?,
        None => {
            sqlx::query_scalar("SELECT deployment_id FROM nodes WHERE id = $1")
                .bind(node_id)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    if let Some(data) = data
        && !data.is_object()
    {
        return Err(Error::invalid(
            "invalid_data",
            "noderole data must be a JSON object",
        ));
    }
    let catalog = super::role_catalog::load(conn).await?;
    let relevant: Vec<String> = catalog.closure(role).into_iter().collect();
    let chain = super::deployments::chain(conn, deployment_id).await?;
    // On N; of the roles R may want, in the chain; and the cluster peers of those on N,
    // whichever deployment they are in (a cluster parent comes with all its peers).
    let existing: Vec<(i64, String, i64, i64, i32)> = sqlx::query_as(
        "SELECT nr.id, r.name, nr.node_id, nr.deployment_id, nr.cohort
           FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE nr.node_id = $1
             OR (r.name = ANY($3)
                 AND (nr.deployment_id = ANY($2)
                      OR (r.cluster AND EXISTS (
                            SELECT 1 FROM noderoles o
                             WHERE o.node_id = $1 AND o.role_id = nr.role_id
                               AND o.deployment_id = nr.deployment_id))))",
    )
    .bind(node_id)
    .bind(&chain)
    .bind(&relevant)
    .fetch_all(&mut *conn)
    .await?;
    let cluster_parents: Vec<i64> = existing
        .iter()
        .filter(|(_, r, _, d, _)| *d == deployment_id && catalog.role(r).is_some_and(|r| r.cluster))
        .map(|(id, ..)| *id)
        .collect();
    let cluster_edges: Vec<(i64, i64)> =
        sqlx::query_as("SELECT parent_id, child_id FROM noderole_edges WHERE parent_id = ANY($1)")
            .bind(&cluster_parents)
            .fetch_all(&mut *conn)
            .await?;
    let mut world = BindWorld {
        catalog,
        node_id,
        deployment_chain: chain,
        noderoles: existing
            .into_iter()
            .map(
                |(id, role, node_id, deployment_id, cohort)| ExistingNodeRole {
                    id,
                    role,
                    node_id,
                    deployment_id,
                    cohort,
                },
            )
            .collect(),
        cluster_children: Default::default(),
    };
    for (parent, child) in cluster_edges {
        world
            .cluster_children
            .entry(parent)
            .or_default()
            .push(child);
    }
    let plan = plan_bind(&world, role).map_err(|e| Error::Conflict {
        code: "bind_refused",
        details: json!({ "roles": e.roles() }),
        message: e.to_string(),
    })?;

    let mut ids = Vec::with_capacity(plan.create.len());
    for (index, new) in plan.create.iter().enumerate() {
        let target = index == plan.target();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO noderoles (node_id, role_id, deployment_id, state, cohort, explicit, proposed_data)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(node_id)
        .bind(new.role_id)
        .bind(deployment_id)
        .bind(NodeRoleState::Proposed.code())
        .bind(new.cohort)
        .bind(target)
        .bind(if target { data.cloned().unwrap_or(json!({})) } else { json!({}) })
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::from_constraint)?;
        ids.push(id);
    }
    let resolve = |r: NodeRoleRef| match r {
        NodeRoleRef::Existing(id) => id,
        NodeRoleRef::New(i) => ids[i],
    };
    let (parents, children): (Vec<i64>, Vec<i64>) = plan
        .edges
        .iter()
        .map(|&(p, c)| (resolve(p), resolve(c)))
        .unzip();
    sqlx::query(
        "INSERT INTO noderole_edges (parent_id, child_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&parents)
    .bind(&children)
    .execute(&mut *conn)
    .await?;
    ripple::fix_cohorts(conn, &plan.adopted).await?;
    // Adopted children gained a parent that is not ACTIVE: those waiting to run now wait
    // for it too, as when a parent goes back to TODO (§5).
    let mut changed = ids.clone();
    changed.extend(ripple::block_waiting_children(conn, &ids).await?);
    events::noderoles_changed(conn, actor, &format!("bound {role}"), &changed).await?;
    let mut created = Vec::with_capacity(ids.len());
    for id in &ids {
        created.push(get(conn, *id).await?);
    }
    let noderole = created
        .pop()
        .expect("a plan creates at least the bound noderole");
    tracing::Span::current().record("noderole", noderole.id);
    Ok(Bound { noderole, created })
}

/// Sets a noderole's proposed data (while it or its deployment is PROPOSED).
#[tracing::instrument(skip_all, fields(noderole = id))]
pub async fn set_data(
    conn: &mut PgConnection,
    id: i64,
    data: &Value,
    actor: &Actor,
) -> Result<NodeRole> {
    if !data.is_object() {
        return Err(Error::invalid(
            "invalid_data",
            "noderole data must be a JSON object",
        ));
    }
    let (state, deployment_proposed): (i16, bool) = sqlx::query_as(
        "SELECT nr.state, d.state = 'proposed' FROM noderoles nr
           JOIN deployments d ON d.id = nr.deployment_id WHERE nr.id = $1 FOR UPDATE OF nr",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("noderole", id))?;
    node_role::may_edit_data(state_of(state), deployment_proposed)?;
    sqlx::query("UPDATE noderoles SET proposed_data = $2 WHERE id = $1")
        .bind(id)
        .bind(data)
        .execute(&mut *conn)
        .await?;
    events::noderoles_changed(conn, actor, "data proposed", &[id]).await?;
    get(conn, id).await
}

/// Retry (§5): ERROR, ACTIVE or BLOCKED → TODO when every parent is ACTIVE (409 otherwise);
/// waiting children (TODO/ERROR) are blocked and re-run after it succeeds.
#[tracing::instrument(skip_all, fields(noderole = id))]
pub async fn retry(conn: &mut PgConnection, id: i64, actor: &Actor) -> Result<NodeRole> {
    let state = lock_state(conn, id).await?;
    let waiting: Vec<(i64, String, String, i16)> = sqlx::query_as(
        "SELECT p.id, r.name, n.name, p.state FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
           JOIN roles r ON r.id = p.role_id JOIN nodes n ON n.id = p.node_id
          WHERE e.child_id = $1 AND p.state <> 0 ORDER BY p.cohort, p.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let waiting: Vec<Other> = waiting
        .into_iter()
        .map(|(id, role, node, state)| Other {
            id,
            role,
            node,
            state: state_of(state),
        })
        .collect();
    if node_role::may_retry(state, &waiting)? == Retry::Unneeded {
        return get(conn, id).await;
    }
    sqlx::query("UPDATE noderoles SET state = $2 WHERE id = $1")
        .bind(id)
        .bind(NodeRoleState::Todo.code())
        .execute(&mut *conn)
        .await?;
    let mut changed = vec![id];
    changed.extend(ripple::block_waiting_children(conn, &[id]).await?);
    events::noderoles_changed(conn, actor, "retry", &changed).await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    get(conn, id).await
}

/// Deletes a noderole and its descendants when allowed (§9): it has no children, or all its
/// descendants are on its node, or all are PROPOSED and never ran. Otherwise 409 naming
/// the blocking children.
#[tracing::instrument(skip_all, fields(noderole = id))]
pub async fn delete(conn: &mut PgConnection, id: i64, actor: &Actor) -> Result<Vec<i64>> {
    locks::hold(conn, Lock::Graph).await?;
    let node_id: i64 = sqlx::query_scalar("SELECT node_id FROM noderoles WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found("noderole", id))?;
    let descendants: Vec<(i64, i64, i16, i32, String, String)> = sqlx::query_as(
        "WITH RECURSIVE d(id) AS (
             SELECT child_id FROM noderole_edges WHERE parent_id = $1
             UNION SELECT down.id FROM d CROSS JOIN LATERAL (
                 SELECT e.child_id AS id FROM noderole_edges e WHERE e.parent_id = d.id OFFSET 0) down)
         SELECT nr.id, nr.node_id, nr.state, nr.run_count, r.name, n.name
           FROM d JOIN noderoles nr ON nr.id = d.id JOIN roles r ON r.id = nr.role_id
           JOIN nodes n ON n.id = nr.node_id ORDER BY nr.id FOR UPDATE OF nr",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let descendants: Vec<Descendant> = descendants
        .into_iter()
        .map(|(id, node_id, state, run_count, role, node)| Descendant {
            id,
            node_id,
            state: state_of(state),
            run_count,
            role,
            node,
        })
        .collect();
    node_role::may_delete(node_id, &descendants)?;
    let mut removed: Vec<i64> = descendants.iter().map(|d| d.id).collect();
    removed.push(id);
    sqlx::query("DELETE FROM noderoles WHERE id = ANY($1)")
        .bind(&removed)
        .execute(&mut *conn)
        .await?;
    for removed_id in &removed {
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "node_role.deleted",
                noderole_id: Some(*removed_id),
                node_id: Some(node_id),
                data: json!({ "id": removed_id }),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(removed)
}

/// Commits one PROPOSED noderole (§4, for a single noderole): its proposed data becomes its
/// committed data and it becomes TODO when every parent is ACTIVE, else BLOCKED. Any other
/// state is a 409: only a proposal can be committed.
#[tracing::instrument(skip_all, fields(noderole = id))]
pub async fn commit_one(conn: &mut PgConnection, id: i64, actor: &Actor) -> Result<NodeRole> {
    node_role::may_commit(id, lock_state(conn, id).await?)?;
    commit_locked(conn, &[id], actor, "noderole committed").await?;
    get(conn, id).await
}

/// Puts one noderole back to PROPOSED so its data can be edited; nothing runs it until it is
/// committed again. A noderole that is running now is a 409 (`busy`). Children waiting on it
/// (TODO/ERROR) are blocked, queued runs of both are dropped; ACTIVE children stay.
#[tracing::instrument(skip_all, fields(noderole = id))]
pub async fn propose_one(conn: &mut PgConnection, id: i64, actor: &Actor) -> Result<NodeRole> {
    node_role::may_propose(id, lock_state(conn, id).await?)?;
    propose_locked(conn, &[id], actor, "noderole proposed").await?;
    get(conn, id).await
}

/// Commits every PROPOSED noderole on a node, in whatever deployment it lives (nodes
/// usually stay in `system` while their noderoles belong to other deployments). Returns
/// the ids whose state changed (the committed ones and children blocked by them); none is
/// fine.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn commit_node(conn: &mut PgConnection, node: &Key, actor: &Actor) -> Result<Vec<i64>> {
    let node_id = super::nodes::id_of(conn, node).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM noderoles WHERE node_id = $1 AND state = $2 ORDER BY id FOR UPDATE",
    )
    .bind(node_id)
    .bind(NodeRoleState::Proposed.code())
    .fetch_all(&mut *conn)
    .await?;
    commit_locked(conn, &ids, actor, "node committed").await
}

/// Puts every noderole on a node back to PROPOSED. If any of them is running now, nothing
/// changes and the answer is a 409 (`busy`) naming them. Returns the ids that changed.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn propose_node(conn: &mut PgConnection, node: &Key, actor: &Actor) -> Result<Vec<i64>> {
    let (_, rows) = lock_idle_node(conn, node).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    propose_locked(conn, &ids, actor, "node proposed").await
}

/// Runs everything on a node again from the start: each committed noderole forgets its
/// runs (so destructive roles such as an OS install run again) and its wall, and goes back
/// to TODO, or BLOCKED behind its parents. Proposed ones stay as they are. 409 (`busy`)
/// while one of them is running. Returns the ids whose state changed.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn redeploy_node(conn: &mut PgConnection, node: &Key, actor: &Actor) -> Result<Vec<i64>> {
    let (node_id, rows) = lock_idle_node(conn, node).await?;
    let ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.1 != NodeRoleState::Proposed)
        .map(|r| r.0)
        .collect();
    sqlx::query(
        "UPDATE noderoles SET run_count = 0, input_hash = NULL, wall = '{}', requested_lane = NULL
          WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let changed = ripple::reset_by_parents(conn, &ids).await?;
    events::noderoles_changed(conn, actor, "node redeployed", &changed).await?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.redeployed",
            reason: "everything on the node runs again".into(),
            node_id: Some(node_id),
            data: json!({"id": node_id, "noderoles": ids}),
            ..Default::default()
        },
    )
    .await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    Ok(changed)
}

/// Locks every noderole of a node (id order) unless one is running: 409 `busy` naming it.
async fn lock_idle_node(
    conn: &mut PgConnection,
    node: &Key,
) -> Result<(i64, Vec<(i64, NodeRoleState)>)> {
    let node_id = super::nodes::id_of(conn, node).await?;
    let rows: Vec<(i64, i16)> =
        sqlx::query_as("SELECT id, state FROM noderoles WHERE node_id = $1 ORDER BY id FOR UPDATE")
            .bind(node_id)
            .fetch_all(&mut *conn)
            .await?;
    let rows: Vec<(i64, NodeRoleState)> = rows
        .into_iter()
        .map(|(id, state)| (id, state_of(state)))
        .collect();
    node_role::node_idle(&rows)?;
    Ok((node_id, rows))
}

/// Locks a noderole row and returns its state.
async fn lock_state(conn: &mut PgConnection, id: i64) -> Result<NodeRoleState> {
    let code: i16 = sqlx::query_scalar("SELECT state FROM noderoles WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found("noderole", id))?;
    Ok(state_of(code))
}

/// A state as stored: the schema's check allows only the codes of [`NodeRoleState`].
fn state_of(code: i16) -> NodeRoleState {
    NodeRoleState::from_code(code).expect("the schema only allows valid states")
}

/// Commits the PROPOSED noderoles among `ids` (already locked): data, then TODO or BLOCKED
/// by parent state — all BLOCKED first, then settled, so a parent among `ids` is never
/// mistaken for ACTIVE. Children waiting on them (TODO/ERROR) are blocked.
async fn commit_locked(
    conn: &mut PgConnection,
    ids: &[i64],
    actor: &Actor,
    reason: &str,
) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let committed: Vec<i64> = sqlx::query_scalar(
        "UPDATE noderoles SET committed_data = proposed_data, state = $2
          WHERE id = ANY($1) AND state = $3 RETURNING id",
    )
    .bind(ids)
    .bind(NodeRoleState::Blocked.code())
    .bind(NodeRoleState::Proposed.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = committed.clone();
    ripple::settle(conn, &committed, NodeRoleState::Blocked).await?;
    changed.extend(ripple::block_waiting_children(conn, &committed).await?);
    changed.sort_unstable();
    changed.dedup();
    events::noderoles_changed(conn, actor, reason, &changed).await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    Ok(changed)
}

/// Puts `ids` (already locked, none in TRANSITION) into PROPOSED and blocks children that
/// were waiting on them, dropping the queued runs of all of those. Returns the ids that
/// changed.
async fn propose_locked(
    conn: &mut PgConnection,
    ids: &[i64],
    actor: &Actor,
    reason: &str,
) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let proposed: Vec<i64> = sqlx::query_scalar(
        "UPDATE noderoles SET state = $2, requested_lane = NULL
          WHERE id = ANY($1) AND state <> $2 RETURNING id",
    )
    .bind(ids)
    .bind(NodeRoleState::Proposed.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = proposed.clone();
    changed.extend(ripple::block_waiting_children(conn, &proposed).await?);
    changed.sort_unstable();
    changed.dedup();
    // none of them can start now: free their nodes for other work
    for id in &changed {
        super::runs::drop_queued_of_noderole(conn, *id).await?;
    }
    events::noderoles_changed(conn, actor, reason, &changed).await?;
    Ok(changed)
}
