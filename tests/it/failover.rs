//! crowbar on a replicated PostgreSQL (docs/ha.md): etcd and Patroni manage two PostgreSQL
//! members with synchronous replication, three daemons share them through a URL that lists
//! both, and a fleet converges on the test jig while the test writes through the API.
//!
//! - Failover drill: `kill -9` of the primary's postmaster mid-anneal. Patroni promotes the
//!   standby; the daemons find it, reconnect and finish the fleet. Nothing the API
//!   acknowledged is lost, no node ever ran two jobs at once, the cap held, no noderole is
//!   left in TRANSITION and every noderole succeeded exactly once.
//! - Switchover (`patronictl switchover`) mid-anneal: a client that retries an idempotent
//!   request once (after `Retry-After`) sees no error.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crowbar::{db, domain::state::NodeRoleState};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{
    client_builder,
    daemon::{Daemon, DaemonOptions},
    ha::HaCluster,
    sse::SseStream,
    world::*,
};

const DAEMONS: usize = 3;
const CAP: i64 = 6;
const TOKEN: &str = "failover-test-token";
/// How long one API request may take before the test calls it hung.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// A fleet whose anneal lasts several seconds: `nodes` nodes, each with a chain of four
/// simulated roles of `delay` seconds.
async fn fleet(pool: &PgPool, nodes: usize, delay: f64) -> i64 {
    load_barclamps(pool).await;
    deployment(pool, "drill").await;
    for i in 1..=nodes {
        let n = format!("n{i}");
        node(pool, &n, true).await;
        bind(pool, &n, "test-server", "drill").await;
        bind(pool, &n, "test-client-client", "drill").await;
    }
    sqlx::query("UPDATE noderoles SET proposed_data = jsonb_build_object('test', jsonb_build_object('delay', $1::float8))")
        .bind(delay)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A drill under way: the cluster, a pool that follows its primary, a committed fleet of
/// `total` noderoles and the daemons converging it.
struct Drill {
    cluster: HaCluster,
    pool: PgPool,
    total: i64,
    daemons: Vec<Daemon>,
    urls: Vec<String>,
}

impl Drill {
    async fn start(nodes: usize) -> Drill {
        let cluster = HaCluster::start().await;
        let pool = db::connect(&cluster.url(), 4).await.unwrap();
        db::migrate(&pool).await.unwrap();
        let total = fleet(&pool, nodes, 0.4).await;
        let mut daemons = Vec::new();
        for _ in 0..DAEMONS {
            daemons.push(Daemon::start(DaemonOptions::sharing(&cluster.url(), TOKEN, CAP)).await);
        }
        let urls = daemons.iter().map(Daemon::url).collect();
        let (status, body) = daemons[0]
            .call(TOKEN, Method::PUT, "/api/v2/deployments/drill/commit", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Drill {
            cluster,
            pool,
            total,
            daemons,
            urls,
        }
    }

    /// The lines of the daemons' logs at warning level or above, each named by its daemon:
    /// what a test shows when a request got an answer it should not have.
    fn logged_errors(&self) -> String {
        self.daemons
            .iter()
            .enumerate()
            .flat_map(|(i, daemon)| {
                daemon
                    .stderr()
                    .lines()
                    .filter(|line| line.contains("ERROR") || line.contains("WARN"))
                    .map(|line| format!("daemon {i}: {line}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the daemons (each must exit cleanly) and the cluster.
    async fn stop(mut self) {
        for daemon in &mut self.daemons {
            assert!(daemon.stop().await.success(), "{}", daemon.stderr());
        }
        self.pool.close().await;
        self.cluster.stop().await;
    }
}

/// What one API request got: its status (`None`: no answer at all), when it was sent and
/// how long it took.
#[derive(Debug, Clone)]
struct Sent {
    what: String,
    status: Option<StatusCode>,
    at: Instant,
    took: Duration,
}

/// Sends `method path body` to `url`; `retry_once`: a failure (5xx or no answer) is sent
/// again once, after the answer's `Retry-After` (1 s without one).
async fn send(
    client: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    body: serde_json::Value,
    retry_once: bool,
) -> Sent {
    let at = Instant::now();
    let mut tries = if retry_once { 2 } else { 1 };
    loop {
        tries -= 1;
        let mut request = client
            .request(method.clone(), format!("{url}{path}"))
            .bearer_auth(TOKEN);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await;
        let (status, wait) = match &answer {
            Ok(response) => {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                (Some(response.status()), wait)
            }
            Err(_) => (None, 1),
        };
        let failed = status.is_none_or(|s| s.is_server_error());
        if !failed || tries == 0 {
            return Sent {
                what: format!("{method} {path}"),
                status,
                at,
                took: at.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// What the whole anneal left behind, asserted: every noderole ACTIVE after exactly one
/// successful run, none in TRANSITION, one run per node at a time within the cap. Returns
/// how many runs were recorded lost (their results could not be recorded in time).
async fn assert_converged_cleanly(pool: &PgPool, total: i64) -> i64 {
    let states: Vec<(i16, i64)> = sqlx::query_as(
        "SELECT nr.state, count(*) FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id
          WHERE d.name = 'drill' GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        states,
        vec![(NodeRoleState::Active.code(), total)],
        "every noderole ACTIVE (none left in TRANSITION)"
    );
    let twice: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT noderole_id, count(*) FROM run_records WHERE outcome = 'succeeded'
          GROUP BY 1 HAVING count(*) <> 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(twice, vec![], "every noderole succeeded exactly once");
    let runs = executed_runs(pool).await;
    assert_one_per_node_within_cap(&runs, CAP);
    assert_eq!(tally_mismatches(pool).await, vec![]);
    sqlx::query_scalar("SELECT count(*) FROM run_records WHERE outcome = 'lost'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until some runs have finished and some are still to come: mid-anneal.
async fn mid_anneal(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM run_records WHERE outcome = 'succeeded'")
                .fetch_one(pool)
                .await
                .unwrap();
        if done >= 10 {
            return;
        }
        assert!(Instant::now() < deadline, "no runs finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows `GET /api/v2/events` on `url` as a browser's EventSource does (reconnecting with
/// `Last-Event-ID` when the stream ends) until `stop`: the ids delivered, and how many times
/// it reconnected.
async fn follow_events(url: String, stop: Arc<AtomicBool>) -> (Vec<i64>, usize) {
    let client = client_builder().build().unwrap();
    let mut ids: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut request = client
            .get(format!("{url}/api/v2/events"))
            .bearer_auth(TOKEN);
        if let Some(last) = ids.last() {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status() == StatusCode::OK => r,
            _ => {
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = SseStream::new(response);
        loop {
            if stop.load(Ordering::Relaxed) {
                return (ids, reconnects);
            }
            match stream.maybe_next(Duration::from_millis(200)).await {
                Some(event) => ids.push(event.seq()),
                None if stream.ended() => break,
                None => {}
            }
        }
        reconnects += 1;
    }
    (ids, reconnects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_dies_mid_anneal_and_nothing_acknowledged_is_lost() {
    let drill = Drill::start(30).await;

    // a script writing through every daemon, logging what was acknowledged: it makes a node,
    // changes it, and binds a role to it in a deployment it never commits (so nothing runs)
    deployment(&drill.pool, "acks").await;
    let client = client_builder().timeout(REQUEST_LIMIT).build().unwrap();
    // (what was written: 0 made, 1 changed, 2 bound; the node; what the request got)
    let log: Arc<Mutex<Vec<(usize, String, Sent)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (client, log, stop, urls) = (
            client.clone(),
            log.clone(),
            stop.clone(),
            drill.urls.clone(),
        );
        async move {
            let mut i = 0;
            let mut made = false;
            while !stop.load(Ordering::Relaxed) {
                let (kind, name) = (i % 3, format!("ack-{}", i / 3));
                i += 1;
                if kind > 0 && !made {
                    // its node may not exist: the script moves on to the next one
                    continue;
                }
                let url = &urls[i % urls.len()];
                let (method, path, body) = match kind {
                    0 => (
                        Method::POST,
                        "/api/v2/nodes".to_string(),
                        json!({ "name": name }),
                    ),
                    1 => (
                        Method::PUT,
                        format!("/api/v2/nodes/{name}"),
                        json!({ "description": format!("changed {name}") }),
                    ),
                    _ => (
                        Method::POST,
                        "/api/v2/node_roles".to_string(),
                        json!({ "node": name, "role": "test-admin", "deployment": "acks" }),
                    ),
                };
                let sent = send(&client, url, method, &path, body, false).await;
                if kind == 0 {
                    made = sent.status == Some(StatusCode::CREATED);
                }
                log.lock().unwrap().push((kind, name, sent));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // an event stream open through the failover, on another daemon than the commit's
    let events = tokio::spawn(follow_events(drill.urls[1].clone(), stop.clone()));

    mid_anneal(&drill.pool).await;
    let (old, killed) = drill.cluster.kill_leader_postmaster().await;
    let (new, promoted) = drill.cluster.wait_new_leader(&old, killed).await;
    converged(&drill.pool, "drill", Duration::from_secs(240)).await;
    // a few more acknowledged writes after the fleet is done, then stop writing
    let settled = log.lock().unwrap().len() + 20;
    while log.lock().unwrap().len() < settled {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (ids, reconnects) = events.await.unwrap();
    // gap-free and in order through the failover: every id once, one after another
    assert!(ids.len() > 100, "the stream delivered events: {ids:?}");
    let breaks: Vec<(i64, i64)> = ids
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert_eq!(breaks, vec![], "the event stream skipped or repeated ids");

    let written = log.lock().unwrap().clone();
    let log: Vec<Sent> = written.iter().map(|(_, _, sent)| sent.clone()).collect();
    let hung: Vec<&Sent> = log.iter().filter(|s| s.took >= REQUEST_LIMIT).collect();
    assert!(hung.is_empty(), "requests waited forever: {hung:?}");
    let acknowledged = |s: &Sent| s.status.is_some_and(|s| s.is_success());
    let failed: Vec<&Sent> = log.iter().filter(|s| !acknowledged(s)).collect();
    for sent in &failed {
        assert!(
            sent.status
                .is_none_or(|s| s == StatusCode::SERVICE_UNAVAILABLE),
            "a failure during a failover is a 503 (or no answer): {} got {:?}\n\
             what the daemons logged as errors:\n{}",
            sent.what,
            sent.status,
            drill.logged_errors()
        );
    }
    let first_write = log
        .iter()
        .find(|s| s.at >= killed && acknowledged(s))
        .map(|s| s.at + s.took - killed)
        .expect("a write succeeded after the kill");

    // every acknowledged write is there, read from the new primary
    let acked = |which: usize| -> Vec<String> {
        let mut names: Vec<String> = written
            .iter()
            .filter(|(kind, _, sent)| *kind == which && acknowledged(sent))
            .map(|(_, name, _)| name.clone())
            .collect();
        names.sort();
        names
    };
    let (made, changed, bound) = (acked(0), acked(1), acked(2));
    assert!(made.len() > 20, "the writer got answers: {log:?}");
    let found = |sql: &'static str, names: Vec<String>| {
        let pool = drill.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .bind(names)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        found(
            "SELECT name FROM nodes WHERE name = ANY($1) ORDER BY name",
            made.clone()
        )
        .await,
        made,
        "every acknowledged node survived"
    );
    assert_eq!(
        found(
            "SELECT name FROM nodes WHERE name = ANY($1) AND description = 'changed ' || name ORDER BY name",
            changed.clone()
        )
        .await,
        changed,
        "every acknowledged change survived"
    );
    assert_eq!(
        found(
            "SELECT n.name FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
               JOIN roles r ON r.id = nr.role_id JOIN deployments d ON d.id = nr.deployment_id
              WHERE n.name = ANY($1) AND r.name = 'test-admin' AND d.name = 'acks' ORDER BY 1",
            bound.clone()
        )
        .await,
        bound,
        "every acknowledged binding survived"
    );
    let snapshots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM snapshots s JOIN deployments d ON d.id = s.deployment_id WHERE d.name = 'drill'",
    )
    .fetch_one(&drill.pool)
    .await
    .unwrap();
    assert_eq!(snapshots, 1, "the acknowledged commit survived");
    let lost_runs = assert_converged_cleanly(&drill.pool, drill.total).await;

    for daemon in &drill.daemons {
        assert!(
            daemon
                .stderr()
                .contains("following the new database primary"),
            "{}",
            daemon.stderr()
        );
    }
    eprintln!(
        "failover drill: {old} killed, {new} promoted by Patroni after {:.2} s; first acknowledged \
         API write {:.2} s after the kill; {} nodes made, {} changed, {} bindings acknowledged, {} \
         requests refused with 503 or unanswered; {lost_runs} runs recorded lost and run again; \
         the event stream delivered {} events in order without a gap ({reconnects} reconnects)",
        promoted.as_secs_f64(),
        first_write.as_secs_f64(),
        made.len(),
        changed.len(),
        bound.len(),
        failed.len(),
        ids.len(),
    );
    drill.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_mid_anneal_costs_a_retrying_client_nothing() {
    let drill = Drill::start(20).await;

    // a script that reads the anneal and renames nodes' descriptions (idempotent requests),
    // retrying a failure once as a careful client does
    let client = client_builder().timeout(REQUEST_LIMIT).build().unwrap();
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, url) in drill.urls.iter().enumerate() {
        let (client, log, stop, url) = (client.clone(), log.clone(), stop.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let node = format!("n{}", 1 + (i + w) % 20);
                let put = send(
                    &client,
                    &url,
                    Method::PUT,
                    &format!("/api/v2/nodes/{node}"),
                    json!({ "description": format!("write {i} from script {w}") }),
                    true,
                )
                .await;
                let get = send(
                    &client,
                    &url,
                    Method::GET,
                    "/api/v2/anneal",
                    json!(null),
                    true,
                )
                .await;
                log.lock().unwrap().extend([put, get]);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    mid_anneal(&drill.pool).await;
    let (old, new, took) = drill.cluster.switchover().await;
    converged(&drill.pool, "drill", Duration::from_secs(240)).await;
    let settled = log.lock().unwrap().len() + 20;
    while log.lock().unwrap().len() < settled {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let errors: Vec<&Sent> = log
        .iter()
        .filter(|s| !s.status.is_some_and(|s| s.is_success()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed even after one retry: {errors:?}",
        errors.len(),
        log.len()
    );
    let slowest = log.iter().map(|s| s.took).max().unwrap_or_default();
    let lost_runs = assert_converged_cleanly(&drill.pool, drill.total).await;
    eprintln!(
        "switchover {old} → {new} took {:.2} s (patronictl); {} requests, none failed after one \
         retry, the slowest {:.2} s with its retry; {lost_runs} runs recorded lost and run again",
        took.as_secs_f64(),
        log.len(),
        slowest.as_secs_f64()
    );
    drill.stop().await;
}
