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
            Daemon::start(
                DaemonOptions::default()
                    .arg("--run-cap")
                    .arg(CAP.to_string())
                    .arg("--sweep-interval")
                    .arg("1s")
                    .env("CROWBAR_DATABASE_URL", test.url.expose())
                    .env("CROWBAR_ADMIN_TOKEN", "multi-daemon-test-token"),
            )
            .await,
        );
    }
    commit(pool, "multi").await;

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = db::anneal::status(pool, Some("multi")).await.unwrap();
        match status.status {
            "finished" => break,
            "failed" => panic!("a run failed: {status:?}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "did not converge in time: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for daemon in &mut daemons {
        assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    }
    // three daemons appended and folded tallies at once; they still add up
    assert_eq!(tally_mismatches(pool).await, vec![]);

    // every noderole ran exactly once (destructive ones included: first runs)
    let runs: Vec<(i64, String, f64, f64, String)> = sqlx::query_as(
        "SELECT node_id, worker, extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8, outcome
           FROM run_records WHERE outcome IN ('succeeded', 'failed', 'timed_out', 'skipped')
          ORDER BY started_at",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(runs.len() as i64, total, "one run per noderole");
    assert!(runs.iter().all(|r| r.4 == "succeeded"));

    // no node ever had two overlapping runs
    let mut by_node: std::collections::HashMap<i64, Vec<(f64, f64)>> = Default::default();
    for r in &runs {
        by_node.entry(r.0).or_default().push((r.2, r.3));
    }
    for (node, mut spans) in by_node {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "node {node} ran two jobs at once: {pair:?}"
            );
        }
    }
    // the global cap held at every instant
    let mut edges: Vec<(f64, i64)> = runs.iter().flat_map(|r| [(r.2, 1), (r.3, -1)]).collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut running = 0;
    let mut peak = 0;
    for (_, step) in edges {
        running += step;
        peak = peak.max(running);
    }
    assert!(
        peak <= CAP,
        "{peak} runs executed at once; the cap is {CAP}"
    );
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
