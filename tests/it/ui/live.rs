//! Every section of an open page follows the event stream, so no page shows two truths at
//! once: after a commit the deployment page's snapshots and audit trail agree with its
//! state badge, and a noderole page's reason and runlog follow its runs, without a reload.

use crate::support::{browser::Browser, ui_site::UiSite, world};

#[tokio::test]
async fn the_deployment_and_noderole_pages_follow_changes_without_a_reload() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    world::deployment(&site.pool, "web").await;
    let bound = world::bind(&site.pool, "n1", "test-fails", "web").await;
    let id = bound.noderole.id;
    // reserved: nothing runs until the noderole page is open
    world::set_available(&site.pool, "n1", false).await;
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;

    browser.goto("/deployments/web").await;
    assert!(
        browser
            .text("#deployment-history")
            .await
            .contains("No commit yet")
    );
    // a marker that a reload would lose
    browser.eval("(window.notReloaded = true)").await;
    browser.click("#commit").await;
    browser
        .wait_until(
            "the snapshots to show the commit",
            "document.querySelector('#deployment-history table.list:not(.audit) tbody tr') !== null",
        )
        .await;
    let history = browser.text("#deployment-history").await;
    assert!(!history.contains("No commit yet"), "{history}");
    assert!(
        history.contains("deployment.commit"),
        "the audit trail shows it: {history}"
    );
    assert!(history.contains("user:alice"), "{history}");
    assert_eq!(browser.eval("window.notReloaded === true").await, true);

    // the noderole waits for its node, then fails: its reason and runlog arrive while the
    // page is open
    browser.goto(&format!("/node_roles/{id}")).await;
    let waiting = browser.text("#reason").await;
    assert!(waiting.contains("reserved"), "{waiting}");
    assert_eq!(browser.text("#runlog").await, "");
    browser.eval("(window.notReloaded = true)").await;
    world::set_available(&site.pool, "n1", true).await;
    browser
        .wait_until(
            "the noderole to fail",
            "document.querySelector('#noderole-state .state').textContent === 'ERROR'",
        )
        .await;
    browser
        .wait_until(
            "its runlog",
            "document.querySelector('#runlog').textContent.trim().length > 0",
        )
        .await;
    let reason = browser.text("#reason").await;
    assert_ne!(reason, "—");
    assert!(
        browser
            .eval("document.querySelector('#retry') !== null")
            .await
            == true
    );
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    let (runlog, state): (String, i16) =
        sqlx::query_as("SELECT runlog, state FROM noderoles WHERE id = $1")
            .bind(id)
            .fetch_one(&site.pool)
            .await
            .unwrap();
    assert_eq!(state, -1);
    assert_eq!(browser.text("#runlog").await, runlog.trim());
    browser.close().await;
    site.stop().await;
}
