//! A node's page draws its runs and changes on one time axis, in a real browser, with the
//! same runs in a table: as many marks as the database has records, failures marked so.

use std::time::{Duration, Instant};

use crate::support::{browser::Browser, ui_site::UiSite, world};

#[tokio::test]
async fn the_node_page_draws_its_runs_and_changes_on_a_timeline() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    world::deployment(&site.pool, "web").await;
    world::bind(&site.pool, "n1", "test-admin", "web").await;
    world::bind(&site.pool, "n1", "test-fails", "web").await;
    world::commit(&site.pool, "web").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (runs, failed) = loop {
        let (runs, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'failed') FROM run_records",
        )
        .fetch_one(&site.pool)
        .await
        .unwrap();
        if runs == 2 {
            break (runs, failed);
        }
        assert!(Instant::now() < deadline, "{runs} runs finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    world::set_available(&site.pool, "n1", false).await;
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e JOIN nodes n ON n.id = e.node_id
          WHERE n.name = 'n1' AND e.type = 'node.updated'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/nodes/n1").await;
    browser.find("svg#node-timeline").await;
    let count = |css: &str| {
        let css = serde_json::to_string(css).unwrap();
        format!("document.querySelectorAll({css}).length")
    };
    assert_eq!(
        browser.eval(&count("svg#node-timeline rect.run")).await,
        runs
    );
    assert_eq!(
        browser
            .eval(&count("svg#node-timeline rect.run.failed"))
            .await,
        failed
    );
    assert_eq!(failed, 1);
    assert_eq!(browser.eval(&count("#node-runs tbody tr")).await, runs);
    let marks = browser
        .eval(&count("svg#node-timeline circle.change"))
        .await;
    assert!(changes >= 2, "alive, then reserved: {changes}");
    assert!(
        marks.as_i64().unwrap() >= changes,
        "{marks} marks for {changes} changes"
    );
    browser.screenshot("node-timeline").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
