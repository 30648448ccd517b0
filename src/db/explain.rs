//! Noderoles read together with why each is not ACTIVE (SEMANTICS.md §5): one statement
//! gathers a noderole's row and the [`Facts`] its reason is decided from.
//!
//! The facts that only matter in one state are looked up only for the noderoles in that
//! state, in a second statement (a parent that is not ACTIVE for BLOCKED, an ERROR or a
//! busy run on the node for TODO, the number of running runs for a queued TODO), so a page
//! of failures or of settled noderoles costs little more than the rows themselves.

use std::{collections::HashMap, sync::LazyLock};

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{
    error::Result,
    node_roles::{NODEROLE_COLUMNS, NODEROLE_FROM, NodeRole, NodeRoleFilter},
    paging::rows_by_id,
};
use crate::domain::{
    reason::{Facts, Other, Reason, reason},
    state::NodeRoleState,
};

/// A noderole and why it is not running (`None` when ACTIVE).
pub type Explained = (NodeRole, Option<Value>);

/// The page of noderoles `filter` selects, explained.
pub async fn page(pool: &PgPool, filter: &NodeRoleFilter, cap: i64) -> Result<Vec<Explained>> {
    let mut conn = pool.acquire().await?;
    let ids = filter.page_ids(&mut conn).await?;
    noderoles(&mut conn, &ids, cap).await
}

/// The noderoles of `ids` (those that exist), explained, in the order of `ids`. `cap` is the run cap
/// a queued noderole waits under.
pub async fn noderoles(conn: &mut PgConnection, ids: &[i64], cap: i64) -> Result<Vec<Explained>> {
    let rows: Vec<Row> = rows_by_id(conn, &SELECT_EXPLAINED, "nr", ids).await?;
    let mut waits = waits_of(conn, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let waits = waits.remove(&row.noderole.id);
            row.explain(waits, cap)
        })
        .collect())
}

/// What the TODO and BLOCKED noderoles among `rows` wait for, by id.
async fn waits_of(conn: &mut PgConnection, rows: &[Row]) -> Result<HashMap<i64, Waits>> {
    let waiting: Vec<&NodeRole> = rows
        .iter()
        .map(|row| &row.noderole)
        .filter(|nr| {
            matches!(
                NodeRoleState::from_code(nr.state),
                Some(NodeRoleState::Todo | NodeRoleState::Blocked)
            )
        })
        .collect();
    if waiting.is_empty() {
        return Ok(HashMap::new());
    }
    let waits: Vec<Waits> = sqlx::query_as(SELECT_WAITS)
        .bind(waiting.iter().map(|nr| nr.id).collect::<Vec<_>>())
        .bind(waiting.iter().map(|nr| nr.node_id).collect::<Vec<_>>())
        .bind(waiting.iter().map(|nr| nr.state).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(waits.into_iter().map(|w| (w.id, w)).collect())
}

/// The reason of each of `ids` that is not ACTIVE, as JSON (`{code, message, ...}`).
pub async fn reasons(pool: &PgPool, ids: &[i64], cap: i64) -> Result<HashMap<i64, Value>> {
    let mut conn = pool.acquire().await?;
    Ok(noderoles(&mut conn, ids, cap)
        .await?
        .into_iter()
        .filter_map(|(noderole, reason)| Some((noderole.id, reason?)))
        .collect())
}

/// Each noderole with what its reason needs in any state.
static SELECT_EXPLAINED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {NODEROLE_COLUMNS},
                d.state = 'proposed' AS deployment_proposed, n.alive AS node_alive,
                j.name AS jig, j.active AS jig_active,
                own.id AS own_run, own.state = 'running' AS own_running
         {NODEROLE_FROM}
           JOIN jigs j ON j.id = r.jig_id
           LEFT JOIN runs own ON own.noderole_id = nr.id"
    )
});

/// What TODO and BLOCKED noderoles wait for: the first parent that is not ACTIVE (when
/// BLOCKED), another noderole in ERROR on the node or the node's run of another noderole
/// (when TODO), and the runs executing (when TODO; counted once per statement). The
/// noderoles come as arrays of their ids, nodes and states, already read.
const SELECT_WAITS: &str = "
    SELECT nr.id,
           w.id AS waiting_id, w.role AS waiting_role, w.node AS waiting_node, w.state AS waiting_state,
           f.id AS frozen_id, f.role AS frozen_role,
           b.id AS busy_id, b.role AS busy_role, b.state AS busy_state,
           CASE WHEN nr.state = 1
                THEN (SELECT count(*) FROM runs WHERE state = 'running' AND lane = 'normal')
           END AS running
      FROM unnest($1::bigint[], $2::bigint[], $3::smallint[]) AS nr (id, node_id, state)
      LEFT JOIN LATERAL (
          SELECT p.id, pr.name AS role, pn.name AS node, p.state
            FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
            JOIN roles pr ON pr.id = p.role_id JOIN nodes pn ON pn.id = p.node_id
           WHERE nr.state = 3 AND e.child_id = nr.id AND p.state <> 0
           ORDER BY p.cohort, p.id LIMIT 1) w ON true
      LEFT JOIN LATERAL (
          SELECT o.id, orr.name AS role FROM noderoles o JOIN roles orr ON orr.id = o.role_id
           WHERE nr.state = 1 AND o.node_id = nr.node_id AND o.state = -1 AND o.id <> nr.id
           ORDER BY o.id LIMIT 1) f ON true
      LEFT JOIN LATERAL (
          SELECT o.id, orr.name AS role, o.state FROM runs ru JOIN noderoles o ON o.id = ru.noderole_id
            JOIN roles orr ON orr.id = o.role_id
           WHERE nr.state = 1 AND ru.node_id = nr.node_id AND ru.noderole_id <> nr.id
           LIMIT 1) b ON true";

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    noderole: NodeRole,
    deployment_proposed: bool,
    node_alive: bool,
    jig: String,
    jig_active: bool,
    own_run: Option<i64>,
    own_running: Option<bool>,
}

#[derive(sqlx::FromRow, Default)]
struct Waits {
    id: i64,
    waiting_id: Option<i64>,
    waiting_role: Option<String>,
    waiting_node: Option<String>,
    waiting_state: Option<i16>,
    frozen_id: Option<i64>,
    frozen_role: Option<String>,
    busy_id: Option<i64>,
    busy_role: Option<String>,
    busy_state: Option<i16>,
    running: Option<i64>,
}

impl Row {
    fn explain(self, waits: Option<Waits>, cap: i64) -> Explained {
        let state = |code: i16| NodeRoleState::from_code(code).unwrap_or(NodeRoleState::Blocked);
        let nr = &self.noderole;
        let own_state = state(nr.state);
        if own_state == NodeRoleState::Active {
            return (self.noderole, None); // no reason: skip gathering the facts
        }
        let waits = waits.unwrap_or_default();
        let facts = Facts {
            state: own_state,
            runlog: &nr.runlog,
            deployment: &nr.deployment,
            deployment_proposed: self.deployment_proposed,
            node: &nr.node,
            node_alive: self.node_alive,
            node_available: nr.available,
            jig: &self.jig,
            jig_active: self.jig_active,
            waiting_on: waits.waiting_id.map(|id| Other {
                id,
                role: waits.waiting_role.unwrap_or_default(),
                node: waits.waiting_node.unwrap_or_default(),
                state: state(waits.waiting_state.unwrap_or(3)),
            }),
            frozen_by: waits.frozen_id.map(|id| Other {
                id,
                role: waits.frozen_role.unwrap_or_default(),
                node: nr.node.clone(),
                state: NodeRoleState::Error,
            }),
            busy_with: waits.busy_id.map(|id| Other {
                id,
                role: waits.busy_role.unwrap_or_default(),
                node: nr.node.clone(),
                state: state(waits.busy_state.unwrap_or(1)),
            }),
            own_run: self
                .own_run
                .map(|id| (id, self.own_running.unwrap_or(false))),
            running: waits.running.unwrap_or(0),
            cap,
        };
        let reason = reason(&facts).map(Reason::into_json);
        (self.noderole, reason)
    }
}
