//! Deployments: the tree, propose/commit, and the snapshot every commit records (§4).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tracing::field::Empty;

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    keys::fetch_by_key,
    ripple,
};
use crate::domain::{data::content_hash, key::Key, state::NodeRoleState};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Deployment {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub parent: Option<String>,
    pub parent_id: Option<i64>,
    pub system: bool,
    /// `proposed`, or for a committed deployment: `error` if any noderole failed, `active`
    /// when everything converged, else `committed`.
    pub state: String,
    /// The latest committed snapshot's sequence number.
    pub snapshot: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT_DEPLOYMENT: &str = "
    SELECT d.id, d.name, d.description, p.name AS parent, d.parent_id, d.system,
           CASE WHEN d.state = 'proposed' THEN 'proposed'
                WHEN EXISTS (SELECT 1 FROM noderoles nr WHERE nr.deployment_id = d.id AND nr.state = -1) THEN 'error'
                WHEN NOT EXISTS (SELECT 1 FROM noderoles nr WHERE nr.deployment_id = d.id AND nr.state <> 0) THEN 'active'
                ELSE 'committed' END AS state,
           (SELECT max(seq) FROM snapshots s WHERE s.deployment_id = d.id) AS snapshot,
           d.created_at, d.updated_at
      FROM deployments d LEFT JOIN deployments p ON p.id = d.parent_id";

pub async fn system_id(conn: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT id FROM deployments WHERE system")
            .fetch_one(conn)
            .await?,
    )
}

pub async fn id_of(conn: &mut PgConnection, key: &Key) -> Result<i64> {
    let (id, name) = key.parts();
    sqlx::query_scalar("SELECT id FROM deployments WHERE id = $1 OR name = $2")
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("deployment", key))
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<Deployment> {
    fetch_by_key(
        conn,
        format!("{SELECT_DEPLOYMENT} WHERE d.id = $1 OR d.name = $2"),
        key,
        "deployment",
    )
    .await
}

pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<Deployment>> {
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(format!(
        "{SELECT_DEPLOYMENT} ORDER BY d.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// Creates a PROPOSED deployment under `parent` (default `system`).
#[tracing::instrument(skip_all, fields(deployment = Empty))]
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    description: &str,
    parent: Option<&Key>,
    actor: &Actor,
) -> Result<Deployment> {
    let parent_id = match parent {
        Some(key) => id_of(conn, key).await?,
        None => system_id(conn).await?,
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (name, description, parent_id) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(description)
    .bind(parent_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::from_constraint)?;
    tracing::Span::current().record("deployment", id);
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "deployment.created",
            deployment_id: Some(id),
            data: json!({"id": id, "name": name}),
            ..Default::default()
        },
    )
    .await?;
    get(conn, &Key::Id(id)).await
}

/// Locks a deployment row for the rest of the transaction; returns (id, system, state).
async fn lock(conn: &mut PgConnection, key: &Key) -> Result<(i64, bool, String)> {
    let (id, name) = key.parts();
    sqlx::query_as(
        "SELECT id, system, state FROM deployments WHERE id = $1 OR name = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::not_found("deployment", key))
}

/// Locks a deployment row for the rest of the transaction and returns its id.
pub async fn lock_id(conn: &mut PgConnection, key: &Key) -> Result<i64> {
    Ok(lock(conn, key).await?.0)
}

/// Makes a deployment editable; nothing in it is scheduled until it is committed again.
/// Runs already executing finish.
#[tracing::instrument(skip_all, fields(deployment = %key))]
pub async fn propose(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<Deployment> {
    let (id, system, state) = lock(conn, key).await?;
    if system {
        return Err(Error::conflict(
            "system_deployment",
            "the system deployment is always committed; bind into it and commit instead",
        ));
    }
    if state != "proposed" {
        sqlx::query("UPDATE deployments SET state = 'proposed' WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "deployment.proposed",
                deployment_id: Some(id),
                data: json!({"id": id}),
                ..Default::default()
            },
        )
        .await?;
    }
    get(conn, &Key::Id(id)).await
}

/// A snapshot of a deployment's committed desired state.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Snapshot {
    pub deployment_id: i64,
    pub seq: i32,
    pub content: Value,
    pub content_hash: String,
    pub committed_by: String,
    pub committed_at: DateTime<Utc>,
}

/// What a commit did.
#[derive(Debug, Clone, Serialize)]
pub struct CommitOutcome {
    pub snapshot: Option<Snapshot>,
    /// False when the desired state equals the latest snapshot: nothing was recorded.
    pub recorded: bool,
    /// Noderoles whose state changed.
    pub changed: Vec<i64>,
}

/// Commits a deployment in one transaction (§4): deployment-role data, then every PROPOSED
/// noderole (proposed data becomes committed; TODO when all parents are ACTIVE, else
/// BLOCKED); ACTIVE noderoles whose data changed re-run; a snapshot is recorded unless the
/// desired state equals the latest one.
#[tracing::instrument(skip_all, fields(deployment = %key))]
pub async fn commit(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<CommitOutcome> {
    let (id, _, _) = lock(conn, key).await?;
    // Roles whose deployment-wide data changes: their ACTIVE noderoles here re-run.
    let poked_roles: Vec<i64> = sqlx::query_scalar(
        "UPDATE deployment_roles SET committed_data = proposed_data
          WHERE deployment_id = $1 AND committed_data IS DISTINCT FROM proposed_data
          RETURNING role_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let proposed: Vec<i64> = sqlx::query_scalar(
        "UPDATE noderoles SET committed_data = proposed_data, state = $2, updated_at = now()
          WHERE deployment_id = $1 AND state = $3 RETURNING id",
    )
    .bind(id)
    .bind(NodeRoleState::Blocked.code())
    .bind(NodeRoleState::Proposed.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = proposed.clone();
    changed.extend(ripple::settle(conn, &proposed, NodeRoleState::Blocked).await?);
    let poked: Vec<i64> = sqlx::query_scalar(
        "UPDATE noderoles SET committed_data = proposed_data
          WHERE deployment_id = $1 AND state <> $2
            AND (committed_data IS DISTINCT FROM proposed_data OR role_id = ANY($3))
          RETURNING id",
    )
    .bind(id)
    .bind(NodeRoleState::Transition.code())
    .bind(&poked_roles)
    .fetch_all(&mut *conn)
    .await?;
    let rerun: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM noderoles WHERE id = ANY($1) AND state IN ($2, $3) ORDER BY id FOR UPDATE",
    )
    .bind(&poked)
    .bind(NodeRoleState::Active.code())
    .bind(NodeRoleState::Error.code())
    .fetch_all(&mut *conn)
    .await?;
    changed.extend(ripple::reset_by_parents(conn, &rerun).await?);
    changed.extend(ripple::block_waiting_children(conn, &rerun).await?);
    sqlx::query(
        "UPDATE deployments SET state = 'committed' WHERE id = $1 AND state <> 'committed'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    changed.sort_unstable();
    changed.dedup();
    events::noderoles_changed(conn, actor, "deployment committed", &changed).await?;

    let content = desired_state(conn, id).await?;
    let hash = content_hash(&content);
    let latest = latest_snapshot(conn, id).await?;
    let (snapshot, recorded) = match latest {
        Some(latest) if latest.content_hash == hash => (Some(latest), false),
        latest => {
            let seq = latest.map_or(1, |s| s.seq + 1);
            let snapshot: Snapshot = sqlx::query_as(
                "INSERT INTO snapshots (deployment_id, seq, content, content_hash, committed_by)
                 VALUES ($1, $2, $3, $4, $5)
                 RETURNING deployment_id, seq, content, content_hash, committed_by, committed_at",
            )
            .bind(id)
            .bind(seq)
            .bind(&content)
            .bind(&hash)
            .bind(&actor.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::from_constraint)?;
            (Some(snapshot), true)
        }
    };
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "deployment.committed",
            deployment_id: Some(id),
            data: json!({"id": id, "snapshot": snapshot.as_ref().map(|s| s.seq), "recorded": recorded}),
            ..Default::default()
        },
    )
    .await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    Ok(CommitOutcome {
        snapshot,
        recorded,
        changed,
    })
}

/// The deployment's desired state as a snapshot holds it: deployment roles with data and
/// explicit bindings with data, in a canonical order.
pub async fn desired_state(conn: &mut PgConnection, id: i64) -> Result<Value> {
    let roles: Vec<(String, Value)> = sqlx::query_as(
        "SELECT r.name, dr.committed_data FROM deployment_roles dr JOIN roles r ON r.id = dr.role_id
          WHERE dr.deployment_id = $1 ORDER BY r.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let bindings: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT n.name, r.name, nr.committed_data FROM noderoles nr
           JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1 AND nr.explicit ORDER BY n.name, r.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let roles: serde_json::Map<String, Value> = roles
        .into_iter()
        .map(|(name, data)| (name, json!({ "data": data })))
        .collect();
    let bindings: Vec<Value> = bindings
        .into_iter()
        .map(|(node, role, data)| json!({"node": node, "role": role, "data": data}))
        .collect();
    Ok(json!({"roles": roles, "bindings": bindings}))
}

pub async fn latest_snapshot(conn: &mut PgConnection, id: i64) -> Result<Option<Snapshot>> {
    Ok(sqlx::query_as(
        "SELECT deployment_id, seq, content, content_hash, committed_by, committed_at
           FROM snapshots WHERE deployment_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

pub async fn snapshot(conn: &mut PgConnection, key: &Key, seq: i32) -> Result<Snapshot> {
    let id = id_of(conn, key).await?;
    sqlx::query_as(
        "SELECT deployment_id, seq, content, content_hash, committed_by, committed_at
           FROM snapshots WHERE deployment_id = $1 AND seq = $2",
    )
    .bind(id)
    .bind(seq)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::not_found("snapshot", format!("{key}#{seq}")))
}

pub async fn snapshots(pool: &PgPool, id: i64, limit: i64, offset: i64) -> Result<Vec<Snapshot>> {
    Ok(sqlx::query_as(
        "SELECT deployment_id, seq, content, content_hash, committed_by, committed_at
           FROM snapshots WHERE deployment_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// Deletes a deployment (§9): not `system`, not one with child deployments. Its noderoles
/// and deployment roles go; its nodes move to the parent deployment.
#[tracing::instrument(skip_all, fields(deployment = %key))]
pub async fn delete(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<()> {
    let (id, system, _) = lock(conn, key).await?;
    if system {
        return Err(Error::conflict(
            "system_deployment",
            "the system deployment cannot be deleted",
        ));
    }
    let children: Vec<String> =
        sqlx::query_scalar("SELECT name FROM deployments WHERE parent_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    if !children.is_empty() {
        return Err(Error::Conflict {
            code: "has_child_deployments",
            message: format!(
                "delete its child deployments first: {}",
                children.join(", ")
            ),
            details: json!({ "children": children }),
        });
    }
    let parent_id: i64 = sqlx::query_scalar("SELECT parent_id FROM deployments WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    // Children in other deployments lose parents; re-judge them afterwards.
    let orphans: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT e.child_id FROM noderole_edges e
           JOIN noderoles p ON p.id = e.parent_id JOIN noderoles c ON c.id = e.child_id
          WHERE p.deployment_id = $1 AND c.deployment_id <> $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM noderoles WHERE deployment_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE nodes SET deployment_id = $2 WHERE deployment_id = $1")
        .bind(id)
        .bind(parent_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM deployments WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let changed = ripple::settle(conn, &orphans, NodeRoleState::Blocked).await?;
    events::noderoles_changed(conn, actor, "a parent's deployment was deleted", &changed).await?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "deployment.deleted",
            deployment_id: Some(id),
            data: json!({"id": id}),
            ..Default::default()
        },
    )
    .await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    Ok(())
}

/// The chain of deployment ids from `id` up to `system`.
pub async fn chain(conn: &mut PgConnection, id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE up(id, parent_id, depth) AS (
             SELECT id, parent_id, 0 FROM deployments WHERE id = $1
             UNION ALL
             SELECT d.id, d.parent_id, up.depth + 1 FROM deployments d JOIN up ON d.id = up.parent_id
         ) SELECT id FROM up ORDER BY depth",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

/// Changes a deployment's description.
#[tracing::instrument(skip_all, fields(deployment = %key))]
pub async fn update(
    conn: &mut PgConnection,
    key: &Key,
    description: Option<&str>,
    actor: &Actor,
) -> Result<Deployment> {
    let (id, _, _) = lock(conn, key).await?;
    if let Some(description) = description {
        let changed = sqlx::query(
            "UPDATE deployments SET description = $2 WHERE id = $1 AND description <> $2",
        )
        .bind(id)
        .bind(description)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed > 0 {
            events::record(
                conn,
                actor,
                NewEvent {
                    kind: "deployment.updated",
                    deployment_id: Some(id),
                    data: json!({"id": id, "description": description}),
                    ..Default::default()
                },
            )
            .await?;
        }
    }
    get(conn, &Key::Id(id)).await
}

/// One noderole as the graph shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GraphNodeRole {
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
}

/// A dependency: `child` waits on `parent`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GraphEdge {
    pub parent: i64,
    pub child: i64,
}

/// The noderole graph of a deployment: its noderoles, every edge touching them, and the
/// noderoles at the other end of those edges that live in other deployments (shared parents
/// up the tree, children elsewhere), so every edge's ends are in the list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Graph {
    pub deployment: String,
    pub deployment_id: i64,
    pub node_roles: Vec<GraphNodeRole>,
    pub edges: Vec<GraphEdge>,
}

pub async fn graph(conn: &mut PgConnection, key: &Key) -> Result<Graph> {
    let deployment = get(conn, key).await?;
    let edges: Vec<GraphEdge> = sqlx::query_as(
        "SELECT e.parent_id AS parent, e.child_id AS child FROM noderole_edges e
           JOIN noderoles p ON p.id = e.parent_id JOIN noderoles c ON c.id = e.child_id
          WHERE p.deployment_id = $1 OR c.deployment_id = $1
          ORDER BY e.parent_id, e.child_id",
    )
    .bind(deployment.id)
    .fetch_all(&mut *conn)
    .await?;
    let ends: Vec<i64> = edges.iter().flat_map(|e| [e.parent, e.child]).collect();
    let node_roles: Vec<GraphNodeRole> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_GRAPH_NODEROLE} WHERE nr.deployment_id = $1 OR nr.id = ANY($2)
          ORDER BY nr.cohort, nr.id"
    )))
    .bind(deployment.id)
    .bind(&ends)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Graph {
        deployment: deployment.name,
        deployment_id: deployment.id,
        node_roles,
        edges,
    })
}

/// One page of a deployment's grid rows: the nodes in it or with noderoles in it, by id,
/// after the id `after`; with how many there are, counted up to `cap`.
pub async fn grid_nodes(
    conn: &mut PgConnection,
    deployment_id: i64,
    after: Option<i64>,
    limit: i64,
    cap: i64,
) -> Result<(Vec<(i64, String)>, i64)> {
    const ROWS: &str = "FROM nodes n
          WHERE (n.deployment_id = $1
                 OR EXISTS (SELECT FROM noderoles nr WHERE nr.node_id = n.id AND nr.deployment_id = $1))";
    let page = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT n.id, n.name {ROWS} AND n.id > $2 ORDER BY n.id LIMIT $3"
    )))
    .bind(deployment_id)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM (SELECT 1 {ROWS} LIMIT $2) c"
    )))
    .bind(deployment_id)
    .bind(cap)
    .fetch_one(conn)
    .await?;
    Ok((page, count))
}

/// How many noderoles a deployment has (from its tallies: no count of the table).
pub async fn noderole_count(conn: &mut PgConnection, deployment_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(n), 0)::bigint FROM noderole_tallies WHERE deployment_id = $1",
    )
    .bind(deployment_id)
    .fetch_one(conn)
    .await?)
}

/// One role of a deployment's graph summary: its noderoles there, counted by state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleTally {
    pub role: String,
    pub role_id: i64,
    /// The lowest cohort of its noderoles here.
    pub cohort: i32,
    pub error: i64,
    pub active: i64,
    pub todo: i64,
    pub transition: i64,
    pub blocked: i64,
    pub proposed: i64,
}

impl RoleTally {
    pub fn total(&self) -> i64 {
        self.error + self.active + self.todo + self.transition + self.blocked + self.proposed
    }
}

/// A deployment's graph by role: each role's noderoles counted by state, and which roles
/// wait on which (a role edge wherever a noderole of one waits on a noderole of the other).
pub struct RoleGraph {
    pub deployment: String,
    pub roles: Vec<RoleTally>,
    /// (parent role id, child role id).
    pub edges: Vec<(i64, i64)>,
}

pub async fn role_graph(conn: &mut PgConnection, key: &Key) -> Result<RoleGraph> {
    let deployment = get(conn, key).await?;
    let roles = sqlx::query_as(
        "SELECT r.name AS role, nr.role_id, min(nr.cohort) AS cohort,
                count(*) FILTER (WHERE nr.state = -1) AS error,
                count(*) FILTER (WHERE nr.state = 0) AS active,
                count(*) FILTER (WHERE nr.state = 1) AS todo,
                count(*) FILTER (WHERE nr.state = 2) AS transition,
                count(*) FILTER (WHERE nr.state = 3) AS blocked,
                count(*) FILTER (WHERE nr.state = 4) AS proposed
           FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1
          GROUP BY r.name, nr.role_id
          ORDER BY min(nr.cohort), r.name",
    )
    .bind(deployment.id)
    .fetch_all(&mut *conn)
    .await?;
    let edges = sqlx::query_as(
        "SELECT DISTINCT p.role_id, c.role_id FROM noderole_edges e
           JOIN noderoles c ON c.id = e.child_id JOIN noderoles p ON p.id = e.parent_id
          WHERE c.deployment_id = $1 AND p.deployment_id = $1",
    )
    .bind(deployment.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(RoleGraph {
        deployment: deployment.name,
        roles,
        edges,
    })
}

/// How many noderoles of `role` (name) a deployment has.
pub async fn role_count(conn: &mut PgConnection, deployment_id: i64, role: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1 AND r.name = $2",
    )
    .bind(deployment_id)
    .bind(role)
    .fetch_one(conn)
    .await?)
}

/// The graph of one role's noderoles in a deployment, at most `limit` of them (by id),
/// with their parents and children wherever they are.
pub async fn role_subgraph(
    conn: &mut PgConnection,
    key: &Key,
    role: &str,
    limit: i64,
) -> Result<Graph> {
    let deployment = get(conn, key).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1 AND r.name = $2 ORDER BY nr.id LIMIT $3",
    )
    .bind(deployment.id)
    .bind(role)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let edges: Vec<GraphEdge> = sqlx::query_as(
        "SELECT parent_id AS parent, child_id AS child FROM noderole_edges
          WHERE parent_id = ANY($1) OR child_id = ANY($1) ORDER BY parent_id, child_id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut all: Vec<i64> = edges.iter().flat_map(|e| [e.parent, e.child]).collect();
    all.extend(&ids);
    let node_roles = graph_node_roles(conn, &all).await?;
    Ok(Graph {
        deployment: deployment.name,
        deployment_id: deployment.id,
        node_roles,
        edges,
    })
}

async fn graph_node_roles(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<GraphNodeRole>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_GRAPH_NODEROLE} WHERE nr.id = ANY($1) ORDER BY nr.cohort, nr.id"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

const SELECT_GRAPH_NODEROLE: &str = "
    SELECT nr.id, n.name AS node, nr.node_id, r.name AS role, nr.role_id, d.name AS deployment,
           nr.deployment_id, nr.state,
           CASE nr.state WHEN -1 THEN 'error' WHEN 0 THEN 'active' WHEN 1 THEN 'todo'
                         WHEN 2 THEN 'transition' WHEN 3 THEN 'blocked' ELSE 'proposed' END AS status,
           nr.cohort
      FROM noderoles nr JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
      JOIN deployments d ON d.id = nr.deployment_id";

/// The names of the roles a deployment lists (with or without noderoles), by role id.
pub async fn role_names(pool: &PgPool, deployment_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT r.name FROM deployment_roles dr JOIN roles r ON r.id = dr.role_id
          WHERE dr.deployment_id = $1 ORDER BY r.id",
    )
    .bind(deployment_id)
    .fetch_all(pool)
    .await?)
}
