//! `crowbar serve --demo`'s deployment: seeded once, and it converges by itself.

use std::time::{Duration, Instant};

use crowbar::{db, http::AppState};

use crate::support::ui_site::UiSite;

#[tokio::test]
async fn the_demo_deployment_converges_by_itself_and_is_seeded_once() {
    let site = UiSite::start().await;
    let state = AppState::new(site.pool.clone());
    assert!(crowbar::demo::seed(&state).await.unwrap());
    assert!(!crowbar::demo::seed(&state).await.unwrap(), "seeded once");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = db::anneal::status(&site.pool, Some(crowbar::demo::DEPLOYMENT))
            .await
            .unwrap();
        if status.status == "finished" {
            break;
        }
        assert_ne!(status.status, "failed", "{status:?}");
        assert!(Instant::now() < deadline, "not converged: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id
          WHERE d.name = 'demo' AND nr.state = 0",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert!(
        active >= 6,
        "the bound roles and their parents ran: {active}"
    );
    site.stop().await;
}

#[tokio::test]
async fn serve_with_demo_seeds_and_converges_the_demo() {
    use crate::support::daemon::{Daemon, DaemonOptions};
    let mut daemon = Daemon::start(DaemonOptions::default().arg("--demo")).await;
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = daemon
            .client()
            .get(format!("{}/api/v2/anneal?deployment=demo", daemon.url()))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        if status == 200 {
            assert_eq!(body["status"], "finished");
            break;
        }
        assert_eq!(status, 202, "{body}");
        assert!(
            Instant::now() < deadline,
            "the demo did not converge: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        daemon.stdout().contains("/deployments/demo"),
        "{}",
        daemon.stdout()
    );
    assert!(daemon.stop().await.success());
}
