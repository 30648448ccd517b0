//! Set-based state ripples through the noderole graph (SEMANTICS.md §5).
//!
//! Each function runs inside the caller's transaction, changes states in bulk, and returns
//! the ids it changed so the caller can record events. A noderole a ripple takes out of
//! TODO loses its queued run, which could no longer start ([`drop_stale_queued`], which the
//! recovery sweep also runs). Rows are locked in id order before
//! they are read for a decision, so two transactions finishing two parents of one child
//! cannot both miss that the child became runnable.
//!
//! Every statement is driven by the ids it is given, whatever the table statistics say:
//! tests on other rows are per-row subplans (`OFFSET 0` keeps PostgreSQL from turning them
//! into joins), and a test of the given rows' own state is written `state + 0 = ...`, which
//! no index answers, so that it filters the rows found by id instead of choosing them.
//! Statistics lag the big moves an anneal makes (a commit puts a million noderoles in
//! BLOCKED or TODO, then they turn ACTIVE): planned on stale ones, in which BLOCKED is rare,
//! `id = ANY($1) AND state = 3` walked the index of unsettled noderoles over every BLOCKED
//! one and filtered by id, once per completion batch.
//!
//! Walks down the graph are driven the same way: each step looks up the edges of the rows
//! it has (a lateral subquery per row). As a join, a recursive step could be planned to
//! hash every edge of the graph on every call, a cost that grows with the fleet.

use sqlx::PgConnection;

use super::error::Result;
use crate::domain::state::NodeRoleState::{Active, Blocked, Error, Proposed, Todo, Transition};

/// BLOCKED children of `parents` whose parents are now all ACTIVE become TODO.
pub async fn unblock_children(conn: &mut PgConnection, parents: &[i64]) -> Result<Vec<i64>> {
    if parents.is_empty() {
        return Ok(vec![]);
    }
    // driven by the parents' edges (never by a scan of BLOCKED), then locked and checked
    let children: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT child_id FROM noderole_edges WHERE parent_id = ANY($1)",
    )
    .bind(parents)
    .fetch_all(&mut *conn)
    .await?;
    let candidates: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM noderoles WHERE id = ANY($1) AND state + 0 = $2 ORDER BY id FOR UPDATE",
    )
    .bind(&children)
    .bind(Blocked.code())
    .fetch_all(&mut *conn)
    .await?;
    settle(conn, &candidates, Blocked).await
}

/// Of `ids` in state `from`, those whose parents are all ACTIVE become TODO. Returns them.
pub async fn settle(
    conn: &mut PgConnection,
    ids: &[i64],
    from: crate::domain::state::NodeRoleState,
) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(sqlx::query_scalar(
        "UPDATE noderoles c SET state = $2, updated_at = now()
          WHERE c.id = ANY($1) AND c.state + 0 = $3
            AND NOT EXISTS (SELECT 1 FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                             WHERE e.child_id = c.id AND p.state <> $4 OFFSET 0)
          RETURNING c.id",
    )
    .bind(ids)
    .bind(Todo.code())
    .bind(from.code())
    .bind(Active.code())
    .fetch_all(conn)
    .await?)
}

/// Puts `ids` into TODO when all their parents are ACTIVE, else BLOCKED — in two steps, so a
/// parent among `ids` is never mistaken for ACTIVE. Returns every id whose state changed.
pub async fn reset_by_parents(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut changed: Vec<i64> = sqlx::query_scalar(
        "UPDATE noderoles SET state = $2 WHERE id = ANY($1) AND state <> $2 RETURNING id",
    )
    .bind(ids)
    .bind(Blocked.code())
    .fetch_all(&mut *conn)
    .await?;
    changed.extend(settle(conn, ids, Blocked).await?);
    changed.sort_unstable();
    changed.dedup();
    drop_stale_queued(conn, Queued::OfNoderoles(&changed)).await?;
    Ok(changed)
}

/// Failure ripple: every transitive descendant of `ids`, on any node, that is not PROPOSED,
/// TRANSITION or already BLOCKED becomes BLOCKED.
pub async fn block_descendants(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let blocked = sqlx::query_scalar(
        "WITH RECURSIVE d(id) AS (
             SELECT child_id FROM noderole_edges WHERE parent_id = ANY($1)
             UNION
             SELECT down.id FROM d CROSS JOIN LATERAL (
                 SELECT e.child_id AS id FROM noderole_edges e WHERE e.parent_id = d.id OFFSET 0) down
         )
         UPDATE noderoles n SET state = $2
          WHERE n.id = ANY(ARRAY(SELECT id FROM d)) AND n.state + 0 NOT IN ($2, $3, $4)
         RETURNING n.id",
    )
    .bind(ids)
    .bind(Blocked.code())
    .bind(Proposed.code())
    .bind(Transition.code())
    .fetch_all(&mut *conn)
    .await?;
    drop_stale_queued(conn, Queued::OfNoderoles(&blocked)).await?;
    Ok(blocked)
}

/// A parent going back to TODO or BLOCKED blocks only children in TODO or ERROR (and theirs,
/// transitively); ACTIVE children stay ACTIVE.
pub async fn block_waiting_children(conn: &mut PgConnection, parents: &[i64]) -> Result<Vec<i64>> {
    if parents.is_empty() {
        return Ok(vec![]);
    }
    let blocked = sqlx::query_scalar(
        "WITH RECURSIVE d(id) AS (
             SELECT c.id FROM noderole_edges e JOIN noderoles c ON c.id = e.child_id
              WHERE e.parent_id = ANY($1) AND c.state + 0 IN ($2, $3)
             UNION
             SELECT down.id FROM d CROSS JOIN LATERAL (
                 SELECT c.id FROM noderole_edges e JOIN noderoles c ON c.id = e.child_id
                  WHERE e.parent_id = d.id AND c.state + 0 IN ($2, $3) OFFSET 0) down
         )
         UPDATE noderoles SET state = $4 WHERE id = ANY(ARRAY(SELECT id FROM d)) RETURNING id",
    )
    .bind(parents)
    .bind(Todo.code())
    .bind(Error.code())
    .bind(Blocked.code())
    .fetch_all(&mut *conn)
    .await?;
    drop_stale_queued(conn, Queued::OfNoderoles(&blocked)).await?;
    Ok(blocked)
}

/// Raises cohorts so each is 1 + the highest of its parents', starting from `ids` and
/// following children while anything changes (edges added to existing noderoles).
pub async fn fix_cohorts(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    let mut frontier = ids.to_vec();
    while !frontier.is_empty() {
        let raised: Vec<i64> = sqlx::query_scalar(
            "UPDATE noderoles c SET cohort = sub.cohort
               FROM (SELECT e.child_id AS id, max(p.cohort) + 1 AS cohort
                       FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                      WHERE e.child_id = ANY($1) GROUP BY e.child_id) sub
              WHERE c.id = sub.id AND c.cohort < sub.cohort
              RETURNING c.id",
        )
        .bind(&frontier)
        .fetch_all(&mut *conn)
        .await?;
        frontier = if raised.is_empty() {
            vec![]
        } else {
            sqlx::query_scalar(
                "SELECT DISTINCT child_id FROM noderole_edges WHERE parent_id = ANY($1)",
            )
            .bind(&raised)
            .fetch_all(&mut *conn)
            .await?
        };
    }
    Ok(())
}

/// Which queued runs [`drop_stale_queued`] looks at.
#[derive(Debug, Clone, Copy)]
pub enum Queued<'a> {
    /// Every queued run.
    All,
    /// The runs of these noderoles (a ripple's).
    OfNoderoles(&'a [i64]),
    /// The runs of these nodes (the sweep's window).
    OnNodes(&'a [i64]),
}

/// Drops queued runs whose noderole no longer waits to run (of `which`), recording them
/// `dropped`. Left behind, such a run could never start, yet it would hold its node's one
/// run slot until the sweep.
pub async fn drop_stale_queued(conn: &mut PgConnection, which: Queued<'_>) -> Result<u64> {
    let (noderoles, nodes) = match which {
        Queued::All => (None, None),
        Queued::OfNoderoles(ids) => (Some(ids), None),
        Queued::OnNodes(ids) => (None, Some(ids)),
    };
    if noderoles.or(nodes).is_some_and(|ids| ids.is_empty()) {
        return Ok(0);
    }
    Ok(sqlx::query(
        "WITH done AS (DELETE FROM runs ru USING noderoles nr
                        WHERE ru.noderole_id = nr.id AND ru.state = 'queued'
                          AND ($3::bigint[] IS NULL OR ru.noderole_id = ANY($3))
                          AND ($4::bigint[] IS NULL OR ru.node_id = ANY($4))
                          AND NOT (nr.state = $1 OR (nr.state = $2 AND nr.requested_lane IS NOT NULL))
                       RETURNING ru.*, nr.role_id)
         INSERT INTO run_records (id, noderole_id, node_id, role_id, lane, worker, queued_at, started_at, outcome)
         SELECT id, noderole_id, node_id, role_id, lane, worker, queued_at, started_at, 'dropped' FROM done",
    )
    // planned for each call with its own values, so that the tests of the ids not given
    // fall away and the ids given drive the plan (a generic plan keeps both and reads
    // every queued run)
    .persistent(false)
    .bind(Todo.code())
    .bind(Active.code())
    .bind(noderoles)
    .bind(nodes)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
