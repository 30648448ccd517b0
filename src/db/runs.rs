//! The run queue (SEMANTICS.md §5): queueing runnable noderoles, claiming runs under the
//! global cap, heartbeats, completion with the state ripple, and recovery of lost runs.
//!
//! At most one run per node is the `runs_one_per_node` unique constraint: a daemon that
//! loses a race to queue on a node simply queues nothing there.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tracing::field::Empty;

use super::{
    error::Result,
    events::{self, Actor},
    inputs,
    locks::{self, Lock},
    ripple,
};
use crate::domain::state::NodeRoleState::{self, Active, Error, Todo, Transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Normal,
    High,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::High => "high",
        }
    }
}

/// How the queue behaves.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Runs executing at once in the normal lane, across all daemons.
    pub cap: i64,
    /// Runs executing at once in the high-priority lane.
    pub high_cap: i64,
    pub default_timeout_secs: i32,
    /// Jigs this daemon can execute; runs of other jigs are not queued by it.
    pub jigs: Vec<String>,
    /// Most runs queued by one pass.
    pub batch: i64,
}

/// Queues a run for every node that has a runnable noderole (the lowest (cohort, id) first;
/// hook-requested re-runs before that). Returns how many were queued.
pub async fn queue_runnable(conn: &mut PgConnection, config: &QueueConfig) -> Result<usize> {
    queue_on(conn, config, None).await
}

/// SQL: the node `node` (an expression) has a noderole in ERROR or TRANSITION, so nothing
/// else may start on it (§5). The two states are written into the text rather than bound:
/// every plan, a reused generic one too, can then answer from the small partial index of
/// such noderoles (`noderoles_frozen`) instead of reading each of the node's noderoles.
fn node_frozen(node: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM noderoles o WHERE o.node_id = {node} AND o.state IN ({}, {}) OFFSET 0)",
        Error.code(),
        Transition.code()
    )
}

/// [`queue_runnable`] for the given nodes only: what a completion made runnable, queued in
/// the completion's own transaction, so the cost follows the work done, not the fleet.
pub async fn queue_runnable_on(
    conn: &mut PgConnection,
    config: &QueueConfig,
    nodes: &[i64],
) -> Result<usize> {
    if nodes.is_empty() {
        return Ok(0);
    }
    queue_on(conn, config, Some(nodes)).await
}

async fn queue_on(
    conn: &mut PgConnection,
    config: &QueueConfig,
    only: Option<&[i64]>,
) -> Result<usize> {
    // Driven by nodes: for each free node, one index walk over its own noderoles picks the
    // first runnable one. The cost follows the number of nodes, never the size of the graph.
    // The per-node tests are subplans whatever the statistics say (see `claim`), and the
    // noderoles' own state is a filter (`state + 0`, see the note atop `ripple`): written
    // `state = $2`, it allowed a plan that reads every TODO noderole by the (state, id)
    // index once per node, the plan statistics from before a commit of a million noderoles
    // favour (one such statement ran for 13 minutes at 100,000 x 10).
    let which_nodes = match only {
        Some(_) => "n.id = ANY($6) AND",
        None => "",
    };
    let candidates: Vec<(i64, i64, i32, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, n.id, c.timeout, c.lane
           FROM nodes n
           CROSS JOIN LATERAL (
               SELECT nr.id, coalesce(r.timeout_secs, $1) AS timeout,
                      CASE WHEN nr.requested_lane = 'high' THEN 'high' ELSE 'normal' END AS lane
                 FROM noderoles nr
                 JOIN deployments d ON d.id = nr.deployment_id AND d.state = 'committed'
                 JOIN roles r ON r.id = nr.role_id
                 JOIN jigs j ON j.id = r.jig_id AND j.active AND j.name = ANY($4)
                WHERE nr.node_id = n.id
                  AND (nr.state + 0 = $2 OR (nr.state + 0 = $3 AND nr.requested_lane IS NOT NULL))
                ORDER BY nr.requested_lane = 'high' DESC NULLS LAST, nr.cohort, nr.id
                LIMIT 1) c
          WHERE {which_nodes} n.alive AND n.available
            AND NOT EXISTS (SELECT 1 FROM runs ru WHERE ru.node_id = n.id OFFSET 0)
            AND NOT {frozen}
          ORDER BY n.id
          LIMIT $5",
        frozen = node_frozen("n.id"),
    )))
    .bind(config.default_timeout_secs)
    .bind(Todo.code())
    .bind(Active.code())
    .bind(&config.jigs)
    .bind(config.batch)
    .bind(only.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = candidates.iter().map(|c| c.0).collect();
    let mut computed = inputs::compute(conn, &ids).await?;
    let mut noderoles = Vec::new();
    let mut nodes = Vec::new();
    let mut timeouts = Vec::new();
    let mut lanes = Vec::new();
    let mut data = Vec::new();
    let mut hashes = Vec::new();
    for (id, node, timeout, lane) in candidates {
        let Some((input, hash)) = computed.remove(&id) else {
            continue;
        };
        noderoles.push(id);
        nodes.push(node);
        timeouts.push(timeout);
        lanes.push(lane);
        data.push(input);
        hashes.push(hash);
    }
    let queued = sqlx::query(
        "INSERT INTO runs (noderole_id, node_id, timeout_secs, lane, input, input_hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::jsonb[], $6::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&noderoles)
    .bind(&nodes)
    .bind(&timeouts)
    .bind(&lanes)
    .bind(&data)
    .bind(&hashes)
    .execute(&mut *conn)
    .await?
    .rows_affected() as usize;
    if queued > 0 {
        events::notify(conn, events::CHANNEL_RUNS).await?;
    }
    Ok(queued)
}

/// A run this worker claimed and must execute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedRun {
    pub id: i64,
    pub noderole_id: i64,
    pub node_id: i64,
    pub node: String,
    pub role: String,
    /// The barclamp that ships the role, and where its content was imported from (the
    /// script jig reads the role's scripts there).
    pub barclamp: String,
    pub barclamp_source: String,
    pub jig: String,
    pub destructive: bool,
    pub run_count: i32,
    pub timeout_secs: i32,
    pub input: Value,
}

/// Claims up to `max` queued runs for `worker`, never letting the number executing in a
/// lane exceed its cap across all daemons. Claimed noderoles go to TRANSITION. Each run
/// carries `lease`, the key of the worker's [`WorkerLease`] (`None`: the worker holds none).
#[tracing::instrument(skip_all, fields(worker = %worker, runs = Empty))]
pub async fn claim(
    conn: &mut PgConnection,
    worker: &str,
    lease: Option<i32>,
    config: &QueueConfig,
    max: i64,
) -> Result<Vec<ClaimedRun>> {
    locks::hold(conn, Lock::Claims).await?;
    // While the claims lock is held, every statement reads by index scans, with one plan
    // made once per statement and reused (no planning in the section every claim waits for):
    // - The running runs are counted from their index, entry by entry. Every run passes
    //   through it, so it holds many dead entries between vacuums; a bitmap scan (the
    //   planner's usual pick) visits the heap page of each of them again on every claim,
    //   while an index scan marks those it finds dead and later claims skip them.
    // - The queued runs are walked in the order of the queue's index (see step 1).
    sqlx::raw_sql(
        "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;
         SET LOCAL plan_cache_mode = force_generic_plan",
    )
    .execute(&mut *conn)
    .await?;
    let running: Vec<(String, i64)> =
        sqlx::query_as("SELECT lane, count(*) FROM runs WHERE state = 'running' GROUP BY lane")
            .fetch_all(&mut *conn)
            .await?;
    let running_in = |lane: &str| {
        running
            .iter()
            .find(|(l, _)| l == lane)
            .map_or(0, |(_, n)| *n)
    };
    let mut claimed = Vec::new();
    let mut budget = max;
    for (lane, cap) in [("high", config.high_cap), ("normal", config.cap)] {
        let free = (cap - running_in(lane)).min(budget);
        if free <= 0 {
            continue;
        }
        // Step 1: the oldest startable queued runs of the lane, locked. Every test on
        // another table is a per-run subplan (`OFFSET 0` keeps PostgreSQL from turning it
        // into a join): the plan is then the same whatever the statistics say, and its cost
        // follows the runs taken, not the fleet. (The table statistics lag a commit that
        // moves a million noderoles to TODO; a join planned on stale ones read every
        // TRANSITION noderole once per queued run.)
        // The limit is written into the text, rounded up by `written_limit` (a score of
        // texts in all), and the runs past `free` are let go at commit: with index scans
        // only, the reused plan walks the queue's index in order and stops at the limit.
        // (A bound limit made it plan each call: 2.7 s of server time in a 10,000 x 10
        // anneal, inside the section every claim waits for.)
        let limit = written_limit(free);
        let mut candidates: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT ru.id, ru.noderole_id FROM runs ru
              WHERE ru.state = 'queued' AND ru.lane = $1
                AND EXISTS (SELECT 1 FROM noderoles nr
                              JOIN deployments d ON d.id = nr.deployment_id
                              JOIN roles r ON r.id = nr.role_id JOIN jigs j ON j.id = r.jig_id
                             WHERE nr.id = ru.noderole_id
                               AND (nr.state = $2 OR (nr.state = $3 AND nr.requested_lane IS NOT NULL))
                               AND d.state = 'committed' AND j.active AND j.name = ANY($4)
                            OFFSET 0)
                AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = ru.node_id AND n.alive AND n.available
                            OFFSET 0)
                AND NOT {frozen}
              ORDER BY ru.queued_at, ru.id
              LIMIT {limit} FOR UPDATE OF ru SKIP LOCKED",
            frozen = node_frozen("ru.node_id"),
        )))
        .bind(lane)
        .bind(Todo.code())
        .bind(Active.code())
        .bind(&config.jigs)
        .fetch_all(&mut *conn)
        .await?;
        candidates.truncate(free as usize);
        if candidates.is_empty() {
            continue;
        }
        // Step 2: their noderoles, locked and checked again: one a ripple is changing now
        // is not started (its run stays queued, or the ripple drops it). Found by id, the
        // state a filter (`state + 0`, see the note atop `ripple`).
        let noderoles: Vec<i64> = candidates.iter().map(|c| c.1).collect();
        let startable: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM noderoles
              WHERE id = ANY($1)
                AND (state + 0 = $2 OR (state + 0 = $3 AND requested_lane IS NOT NULL))
              ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(&noderoles)
        .bind(Todo.code())
        .bind(Active.code())
        .fetch_all(&mut *conn)
        .await?;
        let startable: std::collections::HashSet<i64> = startable.into_iter().collect();
        let runs: Vec<i64> = candidates
            .iter()
            .filter(|c| startable.contains(&c.1))
            .map(|c| c.0)
            .collect();
        // The node's name is looked up per run: as a join, a plan made with a claim's own
        // values hashed every node of the fleet.
        let mut batch: Vec<ClaimedRun> = sqlx::query_as(
            "UPDATE runs ru SET state = 'running', worker = $2, worker_lease = $3,
                                 started_at = clock_timestamp(), heartbeat_at = clock_timestamp()
               FROM noderoles nr, roles r, jigs j, barclamps b
              WHERE ru.id = ANY($1) AND nr.id = ru.noderole_id
                AND r.id = nr.role_id AND j.id = r.jig_id AND b.id = r.barclamp_id
             RETURNING ru.id, ru.noderole_id, ru.node_id,
                       (SELECT n.name FROM nodes n WHERE n.id = ru.node_id) AS node, r.name AS role,
                       b.name AS barclamp, b.source AS barclamp_source, j.name AS jig, r.destructive, nr.run_count, ru.timeout_secs, ru.input",
        )
        .bind(&runs)
        .bind(worker)
        .bind(lease)
        .fetch_all(&mut *conn)
        .await?;
        budget -= batch.len() as i64;
        claimed.append(&mut batch);
    }
    sqlx::raw_sql("RESET enable_bitmapscan; RESET enable_seqscan; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await?;
    let runs: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    tracing::Span::current().record("runs", tracing::field::debug(&runs));
    if !claimed.is_empty() {
        let ids: Vec<i64> = claimed.iter().map(|c| c.noderole_id).collect();
        sqlx::query(
            "UPDATE noderoles SET state = $2, requested_lane = NULL, updated_at = now()
              WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(Transition.code())
        .execute(&mut *conn)
        .await?;
        events::noderoles_changed(
            conn,
            &Actor(format!("worker:{worker}")),
            "run started",
            &ids,
        )
        .await?;
    }
    Ok(claimed)
}

/// `wanted` rounded up to the next power of two, or to three quarters of it when that is
/// enough: few distinct values to write into a statement, at most half again as many as asked.
fn written_limit(wanted: i64) -> u64 {
    let wanted = wanted.max(1) as u64;
    let power = wanted.next_power_of_two();
    let three_quarters = power / 4 * 3;
    if power >= 4 && wanted <= three_quarters {
        three_quarters
    } else {
        power
    }
}

/// Marks the runs `ids` of this worker, while running, as alive. Only the runs the worker
/// still executes or completes: one it gave up on must not be kept alive.
pub async fn heartbeat(pool: &PgPool, worker: &str, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // A run locked by another transaction is being completed or recovered right now: the
    // heartbeat skips it rather than wait for that transaction (it delayed claims).
    Ok(sqlx::query(
        "UPDATE runs SET heartbeat_at = now()
          WHERE id IN (SELECT id FROM runs WHERE worker = $1 AND state = 'running' AND id = ANY($2)
                       FOR UPDATE SKIP LOCKED)",
    )
    .bind(worker)
    .bind(ids)
    .execute(pool)
    .await?
    .rows_affected())
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A destructive role that already ran: the jig was not called (§5).
    Skipped,
    Failed,
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
        }
    }
    pub fn success(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::Skipped)
    }
}

/// The result of executing one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: i64,
    pub outcome: Outcome,
    /// The jig's returned data; `None` keeps the previous wall.
    pub wall: Option<Value>,
    pub runlog: String,
}

/// What completing a batch changed.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub completed: usize,
    pub changed: Vec<i64>,
}

/// Finishes runs of `worker` in one transaction, applying the outcome table of §5. Results
/// for runs that are no longer this worker's (reaped as lost, deleted) are ignored.
///
/// With `next`, what the outcomes made runnable on the nodes they touched (the runs' own
/// nodes, and those of children unblocked or reset) is queued in the same transaction, so
/// it can be claimed at once, without waiting for an annealer pass (and without a pass over
/// the fleet). Without it, the annealers are woken to do that. Runs of jigs `next` does not
/// name are left to the annealers' sweeps.
#[tracing::instrument(skip_all, fields(worker = %worker, runs = ?results.iter().map(|r| r.run_id).collect::<Vec<_>>()))]
pub async fn complete(
    conn: &mut PgConnection,
    worker: &str,
    results: &[RunResult],
    next: Option<&QueueConfig>,
) -> Result<Completion> {
    let ids: Vec<i64> = results.iter().map(|r| r.run_id).collect();
    // Node rows first (shared), in id order: a concurrent death of the node waits for us or
    // we see it, never half of it.
    let live: Vec<(i64, i64, i64, bool, String)> = sqlx::query_as(
        "SELECT ru.id, ru.noderole_id, n.id, n.alive, ru.input_hash FROM runs ru JOIN nodes n ON n.id = ru.node_id
          WHERE ru.id = ANY($1) AND ru.worker = $2 AND ru.state = 'running'
          ORDER BY n.id FOR SHARE OF n",
    )
    .bind(&ids)
    .bind(worker)
    .fetch_all(&mut *conn)
    .await?;
    if live.is_empty() {
        return Ok(Completion::default());
    }
    let mut noderole_ids: Vec<i64> = live.iter().map(|l| l.1).collect();
    noderole_ids.sort_unstable();
    sqlx::query("SELECT id FROM noderoles WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&noderole_ids)
        .execute(&mut *conn)
        .await?;

    let by_run: std::collections::HashMap<i64, &RunResult> =
        results.iter().map(|r| (r.run_id, r)).collect();
    let (mut run_ids, mut outcomes, mut runlogs) = (vec![], vec![], vec![]);
    let (mut ok_ids, mut ok_walls, mut ok_hashes, mut ok_logs) = (vec![], vec![], vec![], vec![]);
    let (mut failed_ids, mut failed_logs) = (vec![], vec![]);
    let mut dead_ids = vec![];
    for (run_id, noderole_id, _, alive, hash) in &live {
        let result = by_run[run_id];
        run_ids.push(*run_id);
        outcomes.push(result.outcome.as_str());
        runlogs.push(result.runlog.clone());
        if !alive {
            dead_ids.push(*noderole_id);
        } else if result.outcome.success() {
            ok_ids.push(*noderole_id);
            ok_walls.push(result.wall.clone());
            ok_hashes.push(hash.clone());
            ok_logs.push(result.runlog.clone());
        } else {
            failed_ids.push(*noderole_id);
            failed_logs.push(result.runlog.clone());
        }
    }
    sqlx::query(
        "WITH done AS (DELETE FROM runs WHERE id = ANY($1) RETURNING *)
         INSERT INTO run_records (id, noderole_id, node_id, role_id, lane, worker, queued_at,
                                  started_at, finished_at, outcome, runlog)
         SELECT done.id, done.noderole_id, done.node_id, nr.role_id, done.lane, done.worker,
                done.queued_at, done.started_at, clock_timestamp(), r.outcome, r.runlog
           FROM done JOIN noderoles nr ON nr.id = done.noderole_id
           JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS r(id, outcome, runlog) ON r.id = done.id",
    )
    .bind(&run_ids)
    .bind(&outcomes)
    .bind(&runlogs)
    .execute(&mut *conn)
    .await?;

    let mut changed = Vec::new();
    if !ok_ids.is_empty() {
        changed.extend(
            sqlx::query_scalar::<_, i64>(
                "UPDATE noderoles nr SET state = $5, run_count = nr.run_count + 1, updated_at = now(),
                        wall = coalesce(u.wall, nr.wall), input_hash = u.hash, runlog = u.runlog
                   FROM unnest($1::bigint[], $2::jsonb[], $3::text[], $4::text[]) AS u(id, wall, hash, runlog)
                  WHERE nr.id = u.id RETURNING nr.id",
            )
            .bind(&ok_ids)
            .bind(&ok_walls)
            .bind(&ok_hashes)
            .bind(&ok_logs)
            .bind(Active.code())
            .fetch_all(&mut *conn)
            .await?,
        );
        changed.extend(ripple::unblock_children(conn, &ok_ids).await?);
        changed.extend(poke_consumers(conn, &ok_ids).await?);
    }
    if !failed_ids.is_empty() {
        changed.extend(
            sqlx::query_scalar::<_, i64>(
                "UPDATE noderoles nr SET state = $3, runlog = u.runlog, updated_at = now()
                   FROM unnest($1::bigint[], $2::text[]) AS u(id, runlog)
                  WHERE nr.id = u.id RETURNING nr.id",
            )
            .bind(&failed_ids)
            .bind(&failed_logs)
            .bind(Error.code())
            .fetch_all(&mut *conn)
            .await?,
        );
        changed.extend(ripple::block_descendants(conn, &failed_ids).await?);
        // A parent went back to TODO or BLOCKED while this ran: as a child already in ERROR
        // would have been then (§5), it waits for that parent (the runlog keeps the error)
        // rather than freeze its node with a retry that is refused until the parent is
        // ACTIVE — which, on the same node, it could never become.
        changed.extend(
            sqlx::query_scalar::<_, i64>(
                "UPDATE noderoles c SET state = $2
                  WHERE c.id = ANY($1) AND c.state = $3
                    AND EXISTS (SELECT 1 FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                                 WHERE e.child_id = c.id AND p.state <> $4)
                  RETURNING c.id",
            )
            .bind(&failed_ids)
            .bind(NodeRoleState::Blocked.code())
            .bind(Error.code())
            .bind(Active.code())
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    if !dead_ids.is_empty() {
        // The node died while it ran: the death already reset the node; this one follows.
        changed.extend(ripple::reset_by_parents(conn, &dead_ids).await?);
        changed.extend(ripple::block_waiting_children(conn, &dead_ids).await?);
    }
    changed.sort_unstable();
    changed.dedup();
    let actor = Actor(format!("worker:{worker}"));
    events::noderoles_changed(conn, &actor, "run finished", &changed).await?;
    // From what this transaction already holds, not read back from `run_records` (a join
    // planned on stale statistics read the whole table once per batch).
    let run_nodes: Vec<i64> = live.iter().map(|run| run.2).collect();
    let run_noderoles: Vec<i64> = live.iter().map(|run| run.1).collect();
    sqlx::query(
        "INSERT INTO events (type, actor, reason, node_id, noderole_id, deployment_id, run_id, data)
         SELECT 'run.finished', $1, r.outcome, r.node_id, r.noderole_id,
                (SELECT nr.deployment_id FROM noderoles nr WHERE nr.id = r.noderole_id), r.id,
                jsonb_build_object('id', r.id, 'outcome', r.outcome, 'noderole_id', r.noderole_id)
           FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[])
                AS r(id, outcome, noderole_id, node_id)
          ORDER BY r.id",
    )
    .bind(&actor.0)
    .bind(&run_ids)
    .bind(&outcomes)
    .bind(&run_noderoles)
    .bind(&run_nodes)
    .execute(&mut *conn)
    .await?;
    match next {
        Some(config) => {
            let mut nodes: Vec<i64> = live.iter().map(|run| run.2).collect();
            nodes.extend(
                sqlx::query_scalar::<_, i64>(
                    "SELECT DISTINCT node_id FROM noderoles WHERE id = ANY($1)",
                )
                .bind(&changed)
                .fetch_all(&mut *conn)
                .await?,
            );
            nodes.sort_unstable();
            nodes.dedup();
            queue_runnable_on(conn, config, &nodes).await?;
        }
        None => events::notify(conn, events::CHANNEL_ANNEAL).await?,
    }
    Ok(Completion {
        completed: run_ids.len(),
        changed,
    })
}

/// Asks for a run of a noderole on `lane` (hooks, §7), even while it is ACTIVE. A run already
/// queued for it (not started) gets fresh input data and the lane instead of a duplicate.
#[tracing::instrument(skip_all, fields(noderole = noderole_id, lane = lane.as_str()))]
pub async fn request_run(conn: &mut PgConnection, noderole_id: i64, lane: Lane) -> Result<()> {
    let queued: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE noderole_id = $1 AND state = 'queued' FOR UPDATE",
    )
    .bind(noderole_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run) = queued {
        if let Some((input, hash)) = inputs::compute(conn, &[noderole_id])
            .await?
            .remove(&noderole_id)
        {
            sqlx::query("UPDATE runs SET input = $2, input_hash = $3, lane = $4 WHERE id = $1")
                .bind(run)
                .bind(input)
                .bind(hash)
                .bind(lane.as_str())
                .execute(&mut *conn)
                .await?;
        }
        return Ok(());
    }
    sqlx::query(
        "UPDATE noderoles SET requested_lane = CASE WHEN requested_lane = 'high' THEN 'high' ELSE $2 END
          WHERE id = $1",
    )
    .bind(noderole_id)
    .bind(lane.as_str())
    .execute(&mut *conn)
    .await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await
}

/// Pokes (§8): ACTIVE children that want attribs owned by `parents`' roles re-run when the
/// data they would now receive differs from what their last run saw.
async fn poke_consumers(conn: &mut PgConnection, parents: &[i64]) -> Result<Vec<i64>> {
    let consumers: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT c.id, c.input_hash FROM noderole_edges e
           CROSS JOIN LATERAL (
               SELECT c.id, c.input_hash FROM noderoles c JOIN roles cr ON cr.id = c.role_id
                WHERE c.id = e.child_id AND c.state = $2
                  AND EXISTS (SELECT 1 FROM noderoles p JOIN attribs a ON a.role_id = p.role_id
                               WHERE p.id = e.parent_id AND a.name = ANY(cr.wants_attribs))
               OFFSET 0) c
          WHERE e.parent_id = ANY($1)",
    )
    .bind(parents)
    .bind(Active.code())
    .fetch_all(&mut *conn)
    .await?;
    if consumers.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = consumers.iter().map(|c| c.0).collect();
    let fresh = inputs::compute(conn, &ids).await?;
    let mut stale: Vec<i64> = consumers
        .into_iter()
        .filter(|(id, seen)| fresh.get(id).map(|f| &f.1) != seen.as_ref())
        .map(|(id, _)| id)
        .collect();
    stale.sort_unstable();
    sqlx::query("SELECT id FROM noderoles WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&stale)
        .execute(&mut *conn)
        .await?;
    let mut changed = ripple::reset_by_parents(conn, &stale).await?;
    changed.extend(ripple::block_waiting_children(conn, &stale).await?);
    Ok(changed)
}

/// Drops queued (not yet running) runs on a node, recording them as `dropped`.
pub async fn drop_queued_on_node(conn: &mut PgConnection, node_id: i64) -> Result<u64> {
    drop_where(conn, "node_id = $3::bigint AND state = 'queued'", node_id).await
}

/// Drops the queued (not yet running) run of a noderole, recording it as `dropped`.
pub async fn drop_queued_of_noderole(conn: &mut PgConnection, noderole_id: i64) -> Result<u64> {
    drop_where(
        conn,
        "noderole_id = $3::bigint AND state = 'queued'",
        noderole_id,
    )
    .await
}

async fn drop_where(conn: &mut PgConnection, condition: &str, param: i64) -> Result<u64> {
    let dropped = retire_runs(conn, condition, &[&param.to_string()], "dropped", "").await?;
    Ok(dropped.len() as u64)
}

/// When the recovery sweep counts a running run as lost.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// Its heartbeat is older than this (a hung daemon, or one that holds no lease).
    pub lost_after: std::time::Duration,
    /// Its worker's lease is gone (the daemon's database session ended) and its heartbeat is
    /// older than this: a short grace so that a daemon whose connection only blinked (a
    /// database restart) takes its lease back before its runs are given away.
    pub orphaned_after: std::time::Duration,
}

impl Recovery {
    /// Only the heartbeat counts.
    pub fn heartbeat_only(lost_after: std::time::Duration) -> Self {
        Recovery {
            lost_after,
            orphaned_after: lost_after,
        }
    }
}

/// The first key of every worker lease (`pg_advisory_lock(LEASE_SPACE, lease)`): "crow".
pub const LEASE_SPACE: i32 = 0x6372_6f77;

/// SQL: the lock `l` (a row of `pg_locks`) is a worker lease held on this database. (A
/// two-key advisory lock shows its keys as `classid`, `objid` with `objsubid` 2.)
fn held_lease(l: &str) -> String {
    format!(
        "{l}.locktype = 'advisory' AND {l}.granted AND {l}.objsubid = 2
         AND {l}.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND {l}.classid = {LEASE_SPACE}"
    )
}

/// Runs whose worker's lease is free: no session of this database holds its advisory lock.
///
/// And the leases have settled: the oldest session holding a lease on this server is older
/// than `grace` (an SQL expression, in seconds). After a failover the new primary holds no
/// lease at all, and every live worker takes its lease back within a heartbeat; until then
/// a free lease means nothing, and recovering its runs would run them a second time.
pub(super) fn lease_gone(grace: &str) -> String {
    format!(
        "worker_lease IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_locks l WHERE {held} AND l.objid = worker_lease::oid)
         AND coalesce((SELECT min(a.backend_start) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE {held}), now()) < now() - make_interval(secs => {grace})",
        held = held_lease("l"),
    )
}

/// How many worker leases the sessions of this database hold: one per runner, and one per
/// power worker (so two per daemon).
pub async fn leases_held(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_locks l WHERE {}",
        held_lease("l")
    )))
    .fetch_one(conn)
    .await?)
}

/// A worker's lease: a database session of its own, held for the worker's life, with the
/// advisory lock (`LEASE_SPACE`, key). Every run the worker claims carries the key.
pub struct WorkerLease {
    session: PgConnection,
    key: i32,
}

impl std::fmt::Debug for WorkerLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLease")
            .field("key", &self.key)
            .finish()
    }
}

impl WorkerLease {
    /// Takes a lease on a connection of its own, taken out of the pool (so the pool never
    /// hands the session, and its lock, to anyone else). Tries `wanted` first (a worker
    /// taking its lease back after its session dropped), then random keys.
    pub async fn take(pool: &PgPool, wanted: Option<i32>) -> Result<WorkerLease> {
        let mut session = pool.acquire().await?.detach();
        let mut candidates = wanted
            .into_iter()
            .chain(std::iter::repeat_with(|| rand::random::<i32>() & i32::MAX));
        for _ in 0..16 {
            let key = candidates.next().expect("endless");
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LEASE_SPACE)
                .bind(key)
                .fetch_one(&mut session)
                .await?;
            if held {
                return Ok(WorkerLease { session, key });
            }
        }
        Err(super::Error::Conflict {
            code: "lease_unavailable",
            message: "no free worker lease key after 16 tries".into(),
            details: Value::Null,
        })
    }

    pub fn key(&self) -> i32 {
        self.key
    }

    /// Whether the session (and so the lock) is still there.
    pub async fn holds(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.session)
            .await
            .is_ok()
    }
}

/// How long until the next run whose worker's lease is gone is due for recovery (its
/// heartbeat older than `orphaned_after`); `None` when no run is waiting for that.
pub async fn orphan_due(
    pool: &PgPool,
    orphaned_after: std::time::Duration,
) -> Result<Option<std::time::Duration>> {
    // (not greatest(0, ...) in SQL: it skips a NULL, and would make "none" due at once)
    let secs: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT extract(epoch FROM min(heartbeat_at) - now())::float8 + $1
           FROM runs WHERE state = 'running' AND {}",
        lease_gone("$1")
    )))
    .bind(orphaned_after.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(secs.map(|secs| std::time::Duration::from_secs_f64(secs.max(0.0))))
}

/// Recovery sweep: runs whose worker stopped heart-beating, or whose worker's database
/// session is gone, are recorded `lost` and their noderoles go back to TODO/BLOCKED; queued
/// runs that can no longer start are dropped; TRANSITION noderoles with no run are reset.
/// Returns how many noderoles it repaired.
pub async fn recover(conn: &mut PgConnection, recovery: &Recovery) -> Result<usize> {
    recover_on(conn, recovery, None).await
}

/// [`recover`], with the repair of lost triggers (BLOCKED noderoles whose parents are all
/// ACTIVE) and the drop of queued runs that can no longer start limited to `nodes` when
/// given: the daemon's sweep passes a window of nodes that moves on each time, so a sweep's
/// cost follows the window, not the fleet, and every node is still looked at in turn.
pub async fn recover_on(
    conn: &mut PgConnection,
    recovery: &Recovery,
    nodes: Option<&[i64]>,
) -> Result<usize> {
    let lost = lose_runs(
        conn,
        &format!(
            "state = 'running' AND (heartbeat_at < now() - make_interval(secs => $3::float8)
                OR (heartbeat_at < now() - make_interval(secs => $4::float8) AND {}))",
            lease_gone("$4::float8")
        ),
        &[
            &recovery.lost_after.as_secs_f64().to_string(),
            &recovery.orphaned_after.as_secs_f64().to_string(),
        ],
        "the worker running it stopped answering",
    )
    .await?;
    ripple::drop_stale_queued(
        conn,
        match nodes {
            Some(nodes) => ripple::Queued::OnNodes(nodes),
            None => ripple::Queued::All,
        },
    )
    .await?;
    let mut stranded: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM noderoles nr WHERE state = $1
            AND NOT EXISTS (SELECT 1 FROM runs ru WHERE ru.noderole_id = nr.id AND ru.state = 'running')
          ORDER BY id FOR UPDATE SKIP LOCKED",
    )
    .bind(Transition.code())
    .fetch_all(&mut *conn)
    .await?;
    stranded.extend(lost);
    stranded.sort_unstable();
    stranded.dedup();
    let mut changed = ripple::reset_by_parents(conn, &stranded).await?;
    // Repair: BLOCKED noderoles whose parents are all ACTIVE (a lost trigger) run again.
    // On a window, its nodes drive the plan and the state is a filter (`state + 0`, see
    // the note atop `ripple`).
    let which = match nodes {
        Some(_) => "c.node_id = ANY($3) AND c.state + 0 = $1",
        None => "c.state = $1",
    };
    let ready: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT c.id FROM noderoles c WHERE {which}
            AND NOT EXISTS (SELECT 1 FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                             WHERE e.child_id = c.id AND p.state <> $2 OFFSET 0)
          ORDER BY c.id FOR UPDATE SKIP LOCKED"
    )))
    .bind(NodeRoleState::Blocked.code())
    .bind(Active.code())
    .bind(nodes.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;
    changed.extend(ripple::settle(conn, &ready, NodeRoleState::Blocked).await?);
    events::noderoles_changed(conn, &Actor::annealer(), "recovered", &changed).await?;
    Ok(changed.len())
}

/// The next `size` nodes after `after` in id order: the sweep's window. Fewer than `size`
/// means the window reached the end of the fleet (the next one starts over).
pub async fn node_window(conn: &mut PgConnection, after: i64, size: i64) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM nodes WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(size)
            .fetch_all(conn)
            .await?,
    )
}

/// Records running runs matching `condition` (`$3`, `$4`, ... are `params`) as `lost`,
/// deletes them and returns their noderoles (still in TRANSITION: the caller resets them).
async fn lose_runs(
    conn: &mut PgConnection,
    condition: &str,
    params: &[&str],
    why: &str,
) -> sqlx::Result<Vec<i64>> {
    retire_runs(conn, condition, params, "lost", why).await
}

/// Deletes the runs matching `condition` (`$3`, `$4`, ... are `params`, as text; `$1` and
/// `$2` are taken), records each in `run_records` with `outcome` and `runlog`, and returns
/// their noderoles.
async fn retire_runs(
    conn: &mut PgConnection,
    condition: &str,
    params: &[&str],
    outcome: &str,
    runlog: &str,
) -> sqlx::Result<Vec<i64>> {
    let sql = format!(
        "WITH done AS (DELETE FROM runs WHERE {condition} RETURNING *)
         INSERT INTO run_records (id, noderole_id, node_id, role_id, lane, worker, queued_at, started_at, outcome, runlog)
         SELECT done.id, done.noderole_id, done.node_id, nr.role_id, done.lane, done.worker,
                done.queued_at, done.started_at, $1, $2
           FROM done JOIN noderoles nr ON nr.id = done.noderole_id
         RETURNING noderole_id"
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(outcome)
        .bind(runlog);
    for param in params {
        query = query.bind(*param);
    }
    query.fetch_all(conn).await
}

/// Hands back every run `worker` is executing (a daemon shutting down): recorded `lost`,
/// noderoles back to TODO/BLOCKED.
#[tracing::instrument(skip_all, fields(worker = %worker))]
pub async fn release_worker(conn: &mut PgConnection, worker: &str) -> Result<usize> {
    let mut released = lose_runs(
        conn,
        "state = 'running' AND worker = $3",
        &[worker],
        "the daemon running it shut down",
    )
    .await?;
    released.sort_unstable();
    let changed = ripple::reset_by_parents(conn, &released).await?;
    events::noderoles_changed(
        conn,
        &Actor(format!("worker:{worker}")),
        "released at shutdown",
        &changed,
    )
    .await?;
    if !released.is_empty() {
        events::notify(conn, events::CHANNEL_ANNEAL).await?;
    }
    Ok(released.len())
}

/// A queued or executing run, as the API lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Run {
    pub id: i64,
    pub node: String,
    pub node_id: i64,
    pub node_role: i64,
    pub role: String,
    pub state: String,
    pub lane: String,
    pub worker: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
}

/// A finished run as a node's timeline shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Finished {
    pub id: i64,
    /// The role's name, unless the role is gone.
    pub role: Option<String>,
    pub outcome: String,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
}

/// The last `limit` runs that finished on a node, newest first.
pub async fn finished_on_node(pool: &PgPool, node_id: i64, limit: i64) -> Result<Vec<Finished>> {
    Ok(sqlx::query_as(
        "SELECT rr.id, r.name AS role, rr.outcome, rr.started_at, rr.finished_at
           FROM run_records rr LEFT JOIN roles r ON r.id = rr.role_id
          WHERE rr.node_id = $1 ORDER BY rr.id DESC LIMIT $2",
    )
    .bind(node_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn list(pool: &PgPool, node: Option<&str>, limit: i64, offset: i64) -> Result<Vec<Run>> {
    list_in(pool, node, None, limit, offset).await
}

/// [`list`], only the runs of noderoles in `deployment` (name) when given.
pub async fn list_in(
    pool: &PgPool,
    node: Option<&str>,
    deployment: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(
        "SELECT ru.id, n.name AS node, ru.node_id, ru.noderole_id AS node_role, r.name AS role,
                ru.state, ru.lane, ru.worker, ru.queued_at, ru.started_at
           FROM runs ru JOIN nodes n ON n.id = ru.node_id
           JOIN noderoles nr ON nr.id = ru.noderole_id JOIN roles r ON r.id = nr.role_id
          WHERE ($1::text IS NULL OR n.name = $1 OR n.id::text = $1)
            AND ($4::text IS NULL OR nr.deployment_id = (SELECT id FROM deployments WHERE name = $4))
          ORDER BY ru.id LIMIT $2 OFFSET $3",
    )
    .bind(node)
    .bind(limit)
    .bind(offset)
    .bind(deployment)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::written_limit;

    #[test]
    fn a_written_limit_covers_what_is_wanted_with_half_as_many_again_at_most() {
        for (wanted, limit) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 3),
            (5, 6),
            (6, 6),
            (7, 8),
            (96, 96),
            (97, 128),
            (1000, 1024),
        ] {
            assert_eq!(written_limit(wanted), limit, "for {wanted}");
        }
        let mut distinct = std::collections::BTreeSet::new();
        for wanted in 1..=1000 {
            let limit = written_limit(wanted);
            assert!(
                limit >= wanted as u64 && 2 * limit <= 3 * wanted as u64 + 1,
                "{wanted} -> {limit}"
            );
            distinct.insert(limit);
        }
        assert!(distinct.len() <= 20, "{} texts", distinct.len());
    }
}
