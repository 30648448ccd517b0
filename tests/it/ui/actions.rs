//! UI actions over plain HTTP with a session and its CSRF token: retry all.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};
use sqlx::PgPool;

use super::access::{client, session};
use crate::support::{
    app::ADMIN_TOKEN,
    ui_site::UiSite,
    world::{bind, commit, deployment, node},
};

/// How many finished runs each `test-fails` noderole has, by id.
async fn failed_runs(pool: &PgPool) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT nr.id, (SELECT count(*) FROM run_records rr
                         WHERE rr.noderole_id = nr.id AND rr.outcome = 'failed')
           FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          WHERE r.name = 'test-fails' ORDER BY nr.id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Polls until every `test-fails` noderole is in ERROR after `runs` failed runs.
async fn wait_failed(pool: &PgPool, runs: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let errors: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM noderoles nr JOIN roles r ON r.id = nr.role_id
              WHERE r.name = 'test-fails' AND nr.state = -1",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let counts = failed_runs(pool).await;
        if errors == 2 && counts.iter().all(|(_, n)| *n == runs) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{errors} errors, runs {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn retry_all_reruns_every_error() {
    let site = UiSite::start().await;
    node(&site.pool, "n1", true).await;
    node(&site.pool, "n2", true).await;
    deployment(&site.pool, "web").await;
    bind(&site.pool, "n1", "test-fails", "web").await;
    bind(&site.pool, "n2", "test-fails", "web").await;
    commit(&site.pool, "web").await;
    wait_failed(&site.pool, 1).await;

    let (cookie, csrf) = session(&site, &[("token", ADMIN_TOKEN)]).await;
    let response = client()
        .post(format!("{}/annealer/retry_all", site.url()))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // the page follows through the event stream: no reload
    assert!(!response.headers().contains_key("hx-refresh"));
    // both ran again (and, being test-fails, failed again)
    wait_failed(&site.pool, 2).await;
    site.stop().await;
}
