//! Several `crowbar serve` processes on one PostgreSQL (SEMANTICS.md §5): scheduling stays
//! correct — no node ever runs two jobs at once and the global cap holds across daemons.

use std::time::{Duration, Instant};

use crowbar::db;

use crate::support::{
    daemon::{Daemon, DaemonOptions},
    db::test_db,
    world::*,
};

const DAEMONS: usize = 3;
const NODES: usize = 50;
const CAP: i64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_converge_one_database_without_overlapping_runs() {
    let test = test_db().await;
    let pool = &test.pool;
    load_barclamps(pool).await;
    deployment(pool, "multi").await;
    for i in 1..=NODES {
        node(pool, &format!("n{i}"), true).await;
    }
    bind(pool, "n1", "test-server", "multi").await;
    for i in 2..=NODES {
        let n = format!("n{i}");
        bind(pool, &n, "test-client-client", "multi").await;
        bind(pool, &n, "test-destructive", "multi").await;
        if i % 5 == 0 {
            bind(pool, &n, "test-cluster", "multi").await;
        }
    }
    // small random delays, so runs interleave across daemons
    sqlx::query(
        "UPDATE noderoles SET proposed_data = jsonb_build_object('test', jsonb_build_object('delay', round((random() * 0.04)::numeric, 3)))",
    )
    .execute(pool)
    .await
    .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(total >= 200, "a few hundred noderoles, got {total}");

    let mut daemons = Vec::new();
    for _ in 0..DAEMONS {
        daemons.push(
            Daemon::start(DaemonOptions::sharing(
                test.url.expose(),
                "multi-daemon-test-token",
                CAP,
            ))
            .await,
        );
    }
    commit(pool, "multi").await;
    converged(pool, "multi", Duration::from_secs(180)).await;
    for daemon in &mut daemons {
        assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    }
    // three daemons appended and folded tallies at once; they still add up
    assert_eq!(tally_mismatches(pool).await, vec![]);

    // every noderole ran exactly once (destructive ones included: first runs)
    let runs = executed_runs(pool).await;
    assert_eq!(runs.len() as i64, total, "one run per noderole");
    assert!(runs.iter().all(|r| r.4 == "succeeded"));
    // no node ever had two overlapping runs, and the global cap held at every instant
    assert_one_per_node_within_cap(&runs, CAP);
    // the work was shared
    let mut workers: Vec<String> = runs.iter().map(|r| r.1.clone()).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(
        workers.len(),
        DAEMONS,
        "every daemon ran some of the work: {workers:?}"
    );
}

/// A fleet for the recovery tests: `nodes` nodes, each with its own chain of simulated
/// roles (test-admin → test-server → test-client → test-client-client) taking `delay` s.
async fn chained_fleet(pool: &sqlx::PgPool, deployment_name: &str, nodes: usize, delay: f64) {
    load_barclamps(pool).await;
    deployment(pool, deployment_name).await;
    for i in 1..=nodes {
        let n = format!("n{i}");
        node(pool, &n, true).await;
        bind(pool, &n, "test-server", deployment_name).await;
        bind(pool, &n, "test-client-client", deployment_name).await;
    }
    sqlx::query("UPDATE noderoles SET proposed_data = jsonb_build_object('test', jsonb_build_object('delay', $1::float8))")
        .bind(delay)
        .execute(pool)
        .await
        .unwrap();
}

fn recovery_daemon(url: &str, lost_after: &str) -> DaemonOptions {
    DaemonOptions::sharing(url, "recovery-test-token", 8).env("CROWBAR_RUN_LOST_AFTER", lost_after)
}

/// The ids of the runs executing now, once some are (bounded wait).
async fn running_runs(pool: &sqlx::PgPool) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE state = 'running' ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        if !ids.is_empty() {
            return ids;
        }
        assert!(Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds from `since` (the database's clock) until the records of `runs` say `lost`;
/// panics when they do not within `limit`.
async fn lost_within(pool: &sqlx::PgPool, runs: &[i64], since: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let lost: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM finished_at)::float8 FROM run_records
              WHERE id = ANY($1) AND outcome = 'lost'",
        )
        .bind(runs)
        .fetch_all(pool)
        .await
        .unwrap();
        if lost.len() == runs.len() {
            return lost.into_iter().fold(0.0, f64::max) - since;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of the runs {runs:?} were recorded lost",
            lost.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn db_now(pool: &sqlx::PgPool) -> f64 {
    sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `kill -9` of the only daemon mid-anneal: the runs it was executing are recovered as soon
/// as its database session is gone (its worker lease), not after the heartbeat timeout
/// (a minute here), and a new daemon converges the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_runs_are_recovered_when_its_session_ends() {
    let test = test_db().await;
    let pool = &test.pool;
    chained_fleet(pool, "crash", 20, 0.4).await;
    let mut first = Daemon::start(recovery_daemon(test.url.expose(), "60s")).await;
    commit(pool, "crash").await;
    running_runs(pool).await;
    first.kill();
    // what the dead daemon was executing when it died
    let orphaned: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM runs WHERE state = 'running' ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(!orphaned.is_empty(), "the daemon died with runs executing");
    let second = Daemon::start(recovery_daemon(test.url.expose(), "60s")).await;
    let ready = db_now(pool).await;
    let after_ready = lost_within(pool, &orphaned, ready, Duration::from_secs(50)).await;
    converged(pool, "crash", Duration::from_secs(180)).await;
    let converged = db_now(pool).await - ready;
    println!(
        "lost runs recovered {after_ready:.2} s after the new daemon was ready; \
         converged {converged:.2} s after"
    );
    drop(second);
}

/// A daemon that hangs while connected keeps its session (and lease): its runs are
/// recovered by the heartbeat timeout, by another daemon, while it is still hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_daemons_runs_are_recovered_after_the_heartbeat_timeout() {
    let test = test_db().await;
    let pool = &test.pool;
    chained_fleet(pool, "hang", 6, 3.0).await;
    let hung = Daemon::start(recovery_daemon(test.url.expose(), "3s")).await;
    commit(pool, "hang").await;
    let orphaned = running_runs(pool).await;
    hung.signal(nix::sys::signal::Signal::SIGSTOP);
    let stopped = db_now(pool).await;
    let _other = Daemon::start(recovery_daemon(test.url.expose(), "3s")).await;
    let waited = lost_within(pool, &orphaned, stopped, Duration::from_secs(60)).await;
    // the hung daemon's session, and so its lease, were there all along
    let leases = db::runs::leases_held(&mut pool.acquire().await.unwrap())
        .await
        .unwrap();
    // each daemon holds two: its runner's and its power worker's
    assert_eq!(leases, 4, "both daemons hold their leases");
    println!("a hung daemon's runs recovered {waited:.2} s after it stopped");
    hung.signal(nix::sys::signal::Signal::SIGCONT);
    converged(pool, "hang", Duration::from_secs(180)).await;
}

/// The completion writers are shared by every daemon on the database: while other sessions
/// hold every writer slot, a daemon's finished runs wait for one (nothing is recorded), and
/// they are recorded, and the fleet converges, once the slots are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_wait_for_a_writer_slot_another_daemon_holds() {
    use db::locks::{self, Lock};
    let test = test_db().await;
    let pool = &test.pool;
    chained_fleet(pool, "slots", 4, 0.0).await;
    // another daemon's two writers, in the middle of their transactions
    let mut other = pool.begin().await.unwrap();
    for slot in 0..2 {
        locks::hold(&mut other, Lock::CompletionWriter(slot))
            .await
            .unwrap();
    }
    let _daemon = Daemon::start(DaemonOptions::sharing(
        test.url.expose(),
        "slots-test-token",
        8,
    ))
    .await;
    commit(pool, "slots").await;
    running_runs(pool).await;
    let slot_keys: Vec<i64> = (0..2)
        .map(|slot| Lock::CompletionWriter(slot).key())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
              WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND ((classid::bigint << 32) | objid::bigint) = ANY($1)",
        )
        .bind(&slot_keys)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no completion waited for a writer slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM run_records")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        recorded, 0,
        "a run was recorded while every writer slot was held"
    );
    other.rollback().await.unwrap();
    converged(pool, "slots", Duration::from_secs(120)).await;
    let runs = executed_runs(pool).await;
    let noderoles: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(runs.len() as i64, noderoles, "one run per noderole");
    assert!(runs.iter().all(|r| r.4 == "succeeded"), "{runs:?}");
}
