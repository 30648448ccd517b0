//! A viewer in a real browser: every page reads, but the pages offer no change — no
//! palettes to drag from, no drop targets, no Commit, no Reserve — and a change forced
//! through the page's own session and CSRF token is refused and changes nothing.

use crate::support::{
    browser::Browser,
    ui_site::{USER, UiSite},
    world,
};

#[tokio::test]
async fn a_viewer_sees_the_grid_but_cannot_drag_or_commit() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    world::deployment(&site.pool, "web").await;
    world::update_node(
        &site.pool,
        "n1",
        crowbar::db::nodes::NodeUpdate {
            deployment: Some(crowbar::db::keys::Key::Name("web".into())),
            ..Default::default()
        },
    )
    .await;
    world::bind(&site.pool, "n1", "test-admin", "web").await;
    sqlx::query("UPDATE users SET role = 'viewer' WHERE name = $1")
        .bind(USER)
        .execute(&site.pool)
        .await
        .unwrap();
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    assert_eq!(browser.text("#who-actor").await, format!("user:{USER}"));
    assert_eq!(browser.text("#who-role").await, "viewer");

    browser.goto("/deployments/web").await;
    browser.find("table.grid").await;
    browser.screenshot("viewer-deployment").await;
    for absent in [
        "#commit",
        "#propose",
        "#recall",
        ".palette",
        ".chip",
        ".drop",
        ".unbind",
        "#add-role",
        "#add-node",
    ] {
        assert_eq!(
            browser
                .eval(&format!("document.querySelectorAll('{absent}').length"))
                .await,
            0,
            "a viewer's grid offers {absent}"
        );
    }
    // what it may do, it sees: the grid, the noderole's state, the plan
    assert!(browser.text("table.grid").await.contains("test-admin"));
    browser.find("#read-only").await;
    browser.click("#show-plan").await;
    browser
        .wait_until(
            "the plan",
            "document.querySelector('#plan table, #plan ol, #plan ul, #plan p') !== null",
        )
        .await;

    // a change forced through the page's own session and CSRF token is refused
    let status = browser
        .eval(
            "(() => { const r = new XMLHttpRequest(); \
               r.open('POST', '/deployments/web/commit', false); \
               r.setRequestHeader('X-CSRF-Token', document.body.dataset.csrf); \
               r.send(); return r.status; })()",
        )
        .await;
    assert_eq!(status, 403);
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(snapshots, 0, "the refused commit recorded a snapshot");
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'request.refused' AND actor = $1",
    )
    .bind(format!("user:{USER}"))
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(refused, 1);

    // the nodes page lists without Reserve/Release or the bulk form
    browser.goto("/nodes").await;
    browser.find("table.nodes").await;
    for absent in ["#bulk", "button.toggle", "input[type=checkbox]"] {
        assert_eq!(
            browser
                .eval(&format!("document.querySelectorAll('{absent}').length"))
                .await,
            0,
            "a viewer's nodes page offers {absent}"
        );
    }
    // and the audit page shows the refusal
    browser.goto("/audit?action=request.refused").await;
    browser.find("table.audit").await;
    assert!(
        browser
            .text("table.audit")
            .await
            .contains("/deployments/{name}/commit")
    );
    browser.console_errors().await;
    browser.close().await;
    site.stop().await;
}
