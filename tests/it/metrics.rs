//! `GET /metrics` of a real daemon (API.md "Serving"): the figures match what happened.

use std::time::{Duration, Instant};

use crate::support::{
    daemon::{Daemon, DaemonOptions},
    db::test_db,
    world::*,
};

/// The value of the sample `name{labels}` (labels exactly as printed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_requests_and_the_fleet() {
    let test = test_db().await;
    let pool = &test.pool;
    load_barclamps(pool).await;
    deployment(pool, "metered").await;
    for name in ["m1.example.com", "m2.example.com", "m3.example.com"] {
        node(pool, name, true).await;
    }
    bind(pool, "m1.example.com", "test-server", "metered").await;
    bind(pool, "m2.example.com", "test-client", "metered").await;
    bind(pool, "m3.example.com", "test-client", "metered").await;
    set_available(pool, "m3.example.com", false).await;

    let daemon = Daemon::start(
        DaemonOptions::default()
            .env("CROWBAR_DATABASE_URL", test.url.expose())
            .env("CROWBAR_ADMIN_TOKEN", "metrics-test-token"),
    )
    .await;
    commit(pool, "metered").await;
    // m3 is reserved: its noderoles wait, everything else becomes ACTIVE
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (unsettled, runs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
                      WHERE nr.state <> 0 AND n.name <> 'm3.example.com'),
                    (SELECT count(*) FROM runs)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if unsettled == 0 && runs == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not settle: {unsettled} unsettled, {runs} runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let anneal_calls = 3;
    for _ in 0..anneal_calls {
        let reply = daemon
            .client()
            .get(format!("{}/api/v2/anneal", daemon.url()))
            .bearer_auth("metrics-test-token")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202);
    }
    let unauthorized = daemon.get("/api/v2/nodes").await;
    assert_eq!(unauthorized.status(), 401);

    // no token needed: counts and route templates only
    let reply = daemon.get("/metrics").await;
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text().await.unwrap();

    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM run_records WHERE outcome = 'succeeded'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(succeeded > 0);
    assert_eq!(
        sample(&text, "crowbar_runs_finished_total{outcome=\"succeeded\"}"),
        Some(succeeded as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "crowbar_run_duration_seconds_count{outcome=\"succeeded\"}"
        ),
        Some(succeeded as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "crowbar_http_requests_total{method=\"GET\",route=\"/api/v2/anneal\",status=\"202\"}"
        ),
        Some(anneal_calls as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "crowbar_http_requests_total{method=\"GET\",route=\"/api/v2/nodes\",status=\"401\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for (state, code) in [("active", 0), ("todo", 1), ("blocked", 3), ("error", -1)] {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles WHERE state = $1")
            .bind(code as i16)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(
            sample(&text, &format!("crowbar_noderoles{{state=\"{state}\"}}")),
            Some(count as f64),
            "{state}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "crowbar_nodes{alive=\"true\",available=\"false\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "crowbar_runs{state=\"running\",lane=\"normal\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains("example.com"), "no names in metrics: {text}");
}

/// Clients choose method names and paths; the labels must not grow with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_leave_the_labels_bounded() {
    let test = test_db().await;
    let daemon =
        Daemon::start(DaemonOptions::default().env("CROWBAR_DATABASE_URL", test.url.expose()))
            .await;
    let made_up = 40;
    for i in 0..made_up {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        // a known route (no such method on it) and an unknown path
        for path in ["/api/v2/nodes".to_string(), format!("/no-such-place-{i}")] {
            let reply = daemon
                .client()
                .request(method.clone(), format!("{}{path}", daemon.url()))
                .send()
                .await
                .unwrap();
            assert!(
                reply.status().is_client_error(),
                "{path}: {}",
                reply.status()
            );
        }
    }
    let text = daemon.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains("BREW"),
        "a made-up method became a label: {text}"
    );
    assert!(
        !text.contains("no-such-place"),
        "a raw path became a label: {text}"
    );
    assert_eq!(
        sample(
            &text,
            "crowbar_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(made_up as f64),
        "{text}"
    );
    let other_on_route: f64 = text
        .lines()
        .filter(|line| {
            line.starts_with("crowbar_http_requests_total{method=\"OTHER\",route=\"/api/v2/nodes\"")
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(other_on_route, made_up as f64, "{text}");
}
