//! Convergence status and reasons, read from the database.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::domain::{
    reason::{Facts, Other, reason},
    state::NodeRoleState,
};

/// `/api/v2/anneal`: the status and counts of committed noderoles by state.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AnnealStatus {
    /// failed | working | scheduled | blocked | finished
    pub status: &'static str,
    pub counts: BTreeMap<String, i64>,
}

/// Noderoles by state code (of one deployment, by name, or of all), summed from the tallies
/// the noderoles triggers keep (migration 0003) instead of counting rows.
pub async fn counts_by_state(
    conn: &mut sqlx::PgConnection,
    deployment: Option<&str>,
) -> sqlx::Result<Vec<(i16, i64)>> {
    sqlx::query_as(
        "SELECT state, sum(n)::bigint FROM noderole_tallies
          WHERE $1::text IS NULL OR deployment_id = (SELECT id FROM deployments WHERE name = $1)
          GROUP BY state",
    )
    .bind(deployment)
    .fetch_all(conn)
    .await
}

/// Folds the appended tally rows into one per (deployment, state), dropping zeros. Safe
/// beside writers and other folders: it folds exactly the rows it deletes.
pub async fn fold_tallies(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "WITH folded AS (DELETE FROM noderole_tallies RETURNING deployment_id, state, n)
         INSERT INTO noderole_tallies (deployment_id, state, n)
         SELECT deployment_id, state, sum(n) FROM folded GROUP BY 1, 2 HAVING sum(n) <> 0",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn status(pool: &PgPool, deployment: Option<&str>) -> sqlx::Result<AnnealStatus> {
    let mut conn = pool.acquire().await?;
    let rows = counts_by_state(&mut conn, deployment).await?;
    let count = |s: NodeRoleState| rows.iter().find(|r| r.0 == s.code()).map_or(0, |r| r.1);
    use NodeRoleState::*;
    let status = if count(Error) > 0 {
        "failed"
    } else if count(Transition) > 0 {
        "working"
    } else if count(Todo) > 0 {
        "scheduled"
    } else if count(Blocked) > 0 {
        "blocked"
    } else {
        "finished"
    };
    let counts = NodeRoleState::ALL
        .into_iter()
        .filter(|s| *s != Proposed)
        .map(|s| (s.name().to_string(), count(s)))
        .collect();
    Ok(AnnealStatus { status, counts })
}

#[derive(sqlx::FromRow)]
struct FactRow {
    id: i64,
    state: i16,
    runlog: String,
    deployment: String,
    deployment_proposed: bool,
    node: String,
    node_alive: bool,
    node_available: bool,
    jig: String,
    jig_active: bool,
    own_run: Option<i64>,
    own_running: Option<bool>,
    waiting_id: Option<i64>,
    waiting_role: Option<String>,
    waiting_node: Option<String>,
    waiting_state: Option<i16>,
    frozen_id: Option<i64>,
    frozen_role: Option<String>,
    busy_id: Option<i64>,
    busy_role: Option<String>,
    busy_state: Option<i16>,
}

/// The reason of each given noderole that is not ACTIVE, as JSON (`{code, message, ...}`).
pub async fn reasons(pool: &PgPool, ids: &[i64], cap: i64) -> sqlx::Result<HashMap<i64, Value>> {
    let rows: Vec<FactRow> = sqlx::query_as(
        "SELECT nr.id, nr.state, nr.runlog, d.name AS deployment, d.state = 'proposed' AS deployment_proposed,
                n.name AS node, n.alive AS node_alive, n.available AS node_available,
                j.name AS jig, j.active AS jig_active,
                own.id AS own_run, own.state = 'running' AS own_running,
                w.id AS waiting_id, w.role AS waiting_role, w.node AS waiting_node, w.state AS waiting_state,
                f.id AS frozen_id, f.role AS frozen_role,
                b.id AS busy_id, b.role AS busy_role, b.state AS busy_state
           FROM noderoles nr
           JOIN deployments d ON d.id = nr.deployment_id JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id JOIN jigs j ON j.id = r.jig_id
           LEFT JOIN runs own ON own.noderole_id = nr.id
           LEFT JOIN LATERAL (
               SELECT p.id, pr.name AS role, pn.name AS node, p.state
                 FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                 JOIN roles pr ON pr.id = p.role_id JOIN nodes pn ON pn.id = p.node_id
                WHERE e.child_id = nr.id AND p.state <> 0 ORDER BY p.cohort, p.id LIMIT 1) w ON true
           LEFT JOIN LATERAL (
               SELECT o.id, orr.name AS role FROM noderoles o JOIN roles orr ON orr.id = o.role_id
                WHERE o.node_id = nr.node_id AND o.state = -1 AND o.id <> nr.id ORDER BY o.id LIMIT 1) f ON true
           LEFT JOIN LATERAL (
               SELECT o.id, orr.name AS role, o.state FROM runs ru JOIN noderoles o ON o.id = ru.noderole_id
                 JOIN roles orr ON orr.id = o.role_id
                WHERE ru.node_id = nr.node_id AND ru.noderole_id <> nr.id LIMIT 1) b ON true
          WHERE nr.id = ANY($1) AND nr.state <> 0",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'running' AND lane = 'normal'")
            .fetch_one(pool)
            .await?;
    let state = |code: i16| NodeRoleState::from_code(code).unwrap_or(NodeRoleState::Blocked);
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let facts = Facts {
                state: state(row.state),
                runlog: row.runlog,
                deployment: row.deployment,
                deployment_proposed: row.deployment_proposed,
                node: row.node.clone(),
                node_alive: row.node_alive,
                node_available: row.node_available,
                jig: row.jig,
                jig_active: row.jig_active,
                waiting_on: row.waiting_id.map(|id| Other {
                    id,
                    role: row.waiting_role.unwrap_or_default(),
                    node: row.waiting_node.unwrap_or_default(),
                    state: state(row.waiting_state.unwrap_or(3)),
                }),
                frozen_by: row.frozen_id.map(|id| Other {
                    id,
                    role: row.frozen_role.unwrap_or_default(),
                    node: row.node.clone(),
                    state: NodeRoleState::Error,
                }),
                busy_with: row.busy_id.map(|id| Other {
                    id,
                    role: row.busy_role.unwrap_or_default(),
                    node: row.node.clone(),
                    state: state(row.busy_state.unwrap_or(1)),
                }),
                own_run: row.own_run.map(|id| (id, row.own_running.unwrap_or(false))),
                running,
                cap,
            };
            reason(&facts).map(|r| (row.id, r.to_json()))
        })
        .collect())
}
