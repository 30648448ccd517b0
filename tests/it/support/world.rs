//! Typed helpers for building a crowbar world in a test database and driving the annealer.

use crowbar::{
    annealer,
    db::{
        deployments,
        events::Actor,
        keys::Key,
        node_roles,
        nodes::{self, NewNode, NodeUpdate},
        runs::QueueConfig,
    },
    domain::state::NodeRoleState,
    jig::JigRegistry,
};
use serde_json::Value;
use sqlx::PgPool;

pub fn admin() -> Actor {
    Actor::token("test")
}

/// Loads the shipped barclamps (core and test) into the database.
pub async fn load_barclamps(pool: &PgPool) {
    crowbar::barclamps::import_shipped(pool)
        .await
        .expect("the shipped barclamps import");
}

pub fn queue_config(cap: i64) -> QueueConfig {
    QueueConfig {
        cap,
        high_cap: 2,
        default_timeout_secs: 30,
        jigs: JigRegistry::builtin().names(),
        batch: 1000,
    }
}

/// Runs the annealer in the calling task until nothing more can run.
pub async fn drive(pool: &PgPool) -> usize {
    annealer::run_until_idle(
        pool,
        &queue_config(10),
        &JigRegistry::builtin(),
        "test-worker",
    )
    .await
    .expect("annealer passes succeed")
}

pub async fn node(pool: &PgPool, name: &str, alive: bool) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    let (node, _token) = nodes::create(
        &mut conn,
        &NewNode {
            name: name.into(),
            ..Default::default()
        },
        &admin(),
    )
    .await
    .expect("create node");
    if alive {
        set_alive(pool, name, true).await;
    }
    node.id
}

pub async fn set_alive(pool: &PgPool, name: &str, alive: bool) {
    update_node(
        pool,
        name,
        NodeUpdate {
            alive: Some(alive),
            ..Default::default()
        },
    )
    .await;
}

pub async fn set_available(pool: &PgPool, name: &str, available: bool) {
    update_node(
        pool,
        name,
        NodeUpdate {
            available: Some(available),
            ..Default::default()
        },
    )
    .await;
}

pub async fn update_node(pool: &PgPool, name: &str, update: NodeUpdate) {
    let mut tx = pool.begin().await.unwrap();
    nodes::update(&mut tx, &Key::from(name), &update, &admin(), "test")
        .await
        .expect("update node");
    tx.commit().await.unwrap();
}

pub async fn deployment(pool: &PgPool, name: &str) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    deployments::create(&mut conn, name, "", None, &admin())
        .await
        .expect("create deployment")
        .id
}

pub async fn bind(pool: &PgPool, node: &str, role: &str, deployment: &str) -> node_roles::Bound {
    try_bind(pool, node, role, deployment, None)
        .await
        .unwrap_or_else(|e| panic!("bind {role} on {node}: {e}"))
}

pub async fn try_bind(
    pool: &PgPool,
    node: &str,
    role: &str,
    deployment: &str,
    data: Option<&Value>,
) -> Result<node_roles::Bound, crowbar::db::Error> {
    let mut tx = pool.begin().await.unwrap();
    let bound = node_roles::bind(
        &mut tx,
        &Key::from(node),
        role,
        Some(&Key::from(deployment)),
        data,
        &admin(),
    )
    .await?;
    tx.commit().await.unwrap();
    Ok(bound)
}

pub async fn commit(pool: &PgPool, deployment: &str) -> deployments::CommitOutcome {
    let mut tx = pool.begin().await.unwrap();
    let out = deployments::commit(&mut tx, &Key::from(deployment), &admin())
        .await
        .expect("commit");
    tx.commit().await.unwrap();
    out
}

pub async fn id_of(pool: &PgPool, node: &str, role: &str) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    node_roles::find(&mut conn, &Key::from(node), role)
        .await
        .unwrap_or_else(|e| panic!("{role} on {node}: {e}"))
}

pub async fn state(pool: &PgPool, node: &str, role: &str) -> NodeRoleState {
    let id = id_of(pool, node, role).await;
    let code: i16 = sqlx::query_scalar("SELECT state FROM noderoles WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    NodeRoleState::from_code(code).unwrap()
}

/// Every noderole as (node, role, state), sorted.
pub async fn states(pool: &PgPool) -> Vec<(String, String, NodeRoleState)> {
    let rows: Vec<(String, String, i16)> = sqlx::query_as(
        "SELECT n.name, r.name, nr.state FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id ORDER BY n.name, r.name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(n, r, s)| (n, r, NodeRoleState::from_code(s).unwrap()))
        .collect()
}

pub async fn retry(pool: &PgPool, node: &str, role: &str) -> Result<(), crowbar::db::Error> {
    let id = id_of(pool, node, role).await;
    let mut tx = pool.begin().await.unwrap();
    node_roles::retry(&mut tx, id, &admin()).await?;
    tx.commit().await.unwrap();
    Ok(())
}

/// (node, role, outcome) of every finished run, in the order they finished.
pub async fn run_history(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT n.name, r.name, rr.outcome FROM run_records rr JOIN nodes n ON n.id = rr.node_id
           JOIN roles r ON r.id = rr.role_id ORDER BY rr.finished_at, rr.id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Where the noderole tallies (what `/api/v2/anneal` counts from) disagree with the rows,
/// if anywhere: `(deployment, state, tallied, counted)`.
pub async fn tally_mismatches(pool: &PgPool) -> Vec<(i64, i16, i64, i64)> {
    sqlx::query_as(
        "WITH t AS (SELECT deployment_id, state, sum(n)::bigint AS n FROM noderole_tallies GROUP BY 1, 2),
              c AS (SELECT deployment_id, state, count(*) AS n FROM noderoles GROUP BY 1, 2)
         SELECT coalesce(t.deployment_id, c.deployment_id), coalesce(t.state, c.state),
                coalesce(t.n, 0), coalesce(c.n, 0)
           FROM t FULL JOIN c ON c.deployment_id = t.deployment_id AND c.state = t.state
          WHERE coalesce(t.n, 0) <> coalesce(c.n, 0)",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A run's record: `(node id, worker, started, finished, outcome)`, times in epoch seconds.
pub type RunSpan = (i64, String, f64, f64, String);

/// The records of the runs that executed (not those dropped or lost before starting),
/// oldest first.
pub async fn executed_runs(pool: &PgPool) -> Vec<RunSpan> {
    sqlx::query_as(
        "SELECT node_id, worker, extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8, outcome
           FROM run_records WHERE outcome IN ('succeeded', 'failed', 'timed_out', 'skipped')
          ORDER BY started_at",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Asserts from run records that no node ever had two runs at once and that at most `cap`
/// ran at any instant; returns the peak.
pub fn assert_one_per_node_within_cap(runs: &[RunSpan], cap: i64) -> i64 {
    let mut by_node: std::collections::HashMap<i64, Vec<(f64, f64)>> = Default::default();
    for r in runs {
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
    let mut edges: Vec<(f64, i64)> = runs.iter().flat_map(|r| [(r.2, 1), (r.3, -1)]).collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut running = 0;
    let mut peak = 0;
    for (_, step) in edges {
        running += step;
        peak = peak.max(running);
    }
    assert!(
        peak <= cap,
        "{peak} runs executed at once; the cap is {cap}"
    );
    peak
}

/// Waits until `deployment` has converged (panics when a run failed or after `limit`). Reads
/// that fail are tried again: the database may be away for a moment (a failover).
pub async fn converged(pool: &PgPool, deployment: &str, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = crowbar::db::anneal::status(pool, Some(deployment)).await;
        if let Ok(status) = &status {
            match status.status {
                "finished" => return,
                "failed" => panic!("a run failed: {status:?}"),
                _ => {}
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{deployment} did not converge in {limit:?}: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
