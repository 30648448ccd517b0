//! What `crowbar simulate` reads and writes: a fleet written in bulk into one deployment,
//! whether it still moves, its final states and its run records, and its removal. Every
//! statement is scoped to that one deployment: a simulation never touches another.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::domain::state::NodeRoleState::{Error, Proposed, Todo, Transition};

/// A fleet to write: the same roles on every node, as PROPOSED noderoles.
#[derive(Debug, Clone, Copy)]
pub struct Population<'a> {
    /// Node names, in order.
    pub nodes: &'a [String],
    /// The role names bound on every node, in order (already imported).
    pub roles: &'a [String],
    /// The cohort of each role.
    pub cohorts: &'a [i32],
    /// Whether each role's noderoles are explicit bindings.
    pub explicit: &'a [bool],
    /// (parent role, child role): an edge between their noderoles on every node.
    pub edges: &'a [(String, String)],
    /// The proposed data of the noderole of role k on node i, at `i * roles.len() + k`.
    pub data: &'a [Value],
}

/// Writes the nodes (alive, no address: never probed) into deployment `deployment_id` and
/// binds the roles on each, with their data and edges. Noderole ids follow (node, role)
/// order, so on every node noderoles of one cohort run in the same order every time.
/// Written in bulk, without per-row events: nothing of it is committed yet.
pub async fn populate(
    conn: &mut PgConnection,
    deployment_id: i64,
    fleet: Population<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO nodes (name, alive, deployment_id, description)
         SELECT u.name, true, $1, 'a simulated node (crowbar simulate)'
           FROM unnest($2::text[]) WITH ORDINALITY AS u(name, i) ORDER BY u.i",
    )
    .bind(deployment_id)
    .bind(fleet.nodes)
    .execute(&mut *conn)
    .await?;
    let per_node = fleet.roles.len() as i64;
    sqlx::query(
        "INSERT INTO noderoles (node_id, role_id, deployment_id, state, cohort, explicit, proposed_data)
         SELECT n.id, r.id, $1, $7, c.cohort, c.explicit, d.data
           FROM unnest($2::text[]) WITH ORDINALITY AS u(name, i)
           JOIN nodes n ON n.name = u.name AND n.deployment_id = $1
          CROSS JOIN unnest($3::text[], $4::int[], $5::bool[]) WITH ORDINALITY AS c(role, cohort, explicit, k)
           JOIN roles r ON r.name = c.role
           JOIN unnest($6::jsonb[]) WITH ORDINALITY AS d(data, j) ON d.j = (u.i - 1) * $8 + c.k
          ORDER BY u.i, c.k",
    )
    .bind(deployment_id)
    .bind(fleet.nodes)
    .bind(fleet.roles)
    .bind(fleet.cohorts)
    .bind(fleet.explicit)
    .bind(fleet.data)
    .bind(Proposed.code())
    .bind(per_node)
    .execute(&mut *conn)
    .await?;
    let (parents, children): (Vec<&str>, Vec<&str>) = fleet
        .edges
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .unzip();
    sqlx::query(
        "INSERT INTO noderole_edges (parent_id, child_id)
         SELECT p.id, c.id
           FROM unnest($2::text[], $3::text[]) AS e(parent, child)
           JOIN roles pr ON pr.name = e.parent
           JOIN roles cr ON cr.name = e.child
           JOIN noderoles p ON p.role_id = pr.id AND p.deployment_id = $1
           JOIN noderoles c ON c.role_id = cr.id AND c.node_id = p.node_id AND c.deployment_id = $1",
    )
    .bind(deployment_id)
    .bind(&parents)
    .bind(&children)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Refreshes the planner's statistics of the tables a bulk write grew: without it, the
/// first passes over a large fleet plan as if the tables were still small.
pub async fn analyze(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("ANALYZE nodes, noderoles, noderole_edges")
        .execute(pool)
        .await?;
    Ok(())
}

/// The database's clock now: run records are stamped by it, so a simulation measures
/// against the same clock.
pub async fn clock(pool: &PgPool) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
}

/// Noderoles that can still change by themselves: running, or TODO on a node no failure
/// froze (`nr` is the noderole; binds $2, $3, $4 to TRANSITION, TODO, ERROR).
const UNSETTLED: &str = "(nr.state = $2
      OR (nr.state = $3 AND NOT EXISTS (
             SELECT 1 FROM noderoles f WHERE f.node_id = nr.node_id AND f.state = $4)))";

/// How many noderoles of the deployment can still change by themselves. None left: the
/// simulation is over (the rest is ACTIVE, ERROR, BLOCKED behind an error, or TODO on a
/// frozen node).
pub async fn unsettled(pool: &PgPool, deployment_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM noderoles nr WHERE nr.deployment_id = $1 AND {UNSETTLED}"
    )))
    .bind(deployment_id)
    .bind(Transition.code())
    .bind(Todo.code())
    .bind(Error.code())
    .fetch_one(pool)
    .await
}

/// Committed deployments with work on `jig` that can still run (at most five names): a
/// simulation going on, or one killed before it could clean up. Every simulation's
/// annealer runs that jig, so two at once would run each other's work.
pub async fn busy_with_jig(pool: &PgPool, jig: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT d.name FROM noderoles nr
           JOIN deployments d ON d.id = nr.deployment_id AND d.state = 'committed'
           JOIN roles r ON r.id = nr.role_id JOIN jigs j ON j.id = r.jig_id
          WHERE j.name = $1 AND {UNSETTLED}
          ORDER BY 1 LIMIT 5"
    )))
    .bind(jig)
    .bind(Transition.code())
    .bind(Todo.code())
    .bind(Error.code())
    .fetch_all(pool)
    .await
}

/// A noderole's final place and state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRoleOutcome {
    pub node: String,
    pub role: String,
    pub state: i16,
}

/// Every noderole of the deployment, by node then noderole id, read in one statement (one
/// consistent moment).
pub async fn outcomes(pool: &PgPool, deployment_id: i64) -> sqlx::Result<Vec<NodeRoleOutcome>> {
    sqlx::query_as(
        "SELECT n.name AS node, r.name AS role, nr.state
           FROM noderoles nr JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1
          ORDER BY n.id, nr.id",
    )
    .bind(deployment_id)
    .fetch_all(pool)
    .await
}

/// One finished run of the deployment, in seconds since `since`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RunTimes {
    pub queued: f64,
    pub started: Option<f64>,
    pub finished: f64,
    /// When its noderole became ready: the last successful run of its parents finished
    /// (`None`: it has no parents, it was ready when the deployment was committed).
    pub ready: Option<f64>,
    pub outcome: String,
}

/// The run records of the deployment, oldest first, with times relative to `since`.
pub async fn run_times(
    pool: &PgPool,
    deployment_id: i64,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<RunTimes>> {
    sqlx::query_as(
        "SELECT extract(epoch FROM rr.queued_at - $2)::float8 AS queued,
                extract(epoch FROM rr.started_at - $2)::float8 AS started,
                extract(epoch FROM rr.finished_at - $2)::float8 AS finished,
                (SELECT extract(epoch FROM max(p.finished_at) - $2)::float8
                   FROM noderole_edges e JOIN run_records p ON p.noderole_id = e.parent_id
                  WHERE e.child_id = rr.noderole_id AND p.outcome IN ('succeeded', 'skipped')) AS ready,
                rr.outcome
           FROM run_records rr JOIN noderoles nr ON nr.id = rr.noderole_id
          WHERE nr.deployment_id = $1
          ORDER BY rr.id",
    )
    .bind(deployment_id)
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Removes the deployment's noderoles, its nodes and the deployment itself, in one
/// transaction. A node that also holds noderoles of another deployment stays, and so does
/// the deployment then; returns whether everything went.
pub async fn remove(pool: &PgPool, deployment_id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM noderoles WHERE deployment_id = $1")
        .bind(deployment_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM nodes n WHERE n.deployment_id = $1
            AND NOT EXISTS (SELECT 1 FROM noderoles nr WHERE nr.node_id = n.id)",
    )
    .bind(deployment_id)
    .execute(&mut *tx)
    .await?;
    let removed = sqlx::query(
        "DELETE FROM deployments d WHERE d.id = $1 AND NOT d.system
            AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.deployment_id = d.id)
            AND NOT EXISTS (SELECT 1 FROM deployments c WHERE c.parent_id = d.id)
            AND NOT EXISTS (SELECT 1 FROM networks w WHERE w.deployment_id = d.id)",
    )
    .bind(deployment_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(removed == 1)
}
