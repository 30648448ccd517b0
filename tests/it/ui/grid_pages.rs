//! The deployment grid at fleet size, in a real browser: rows a page at a time, roles
//! ACTIVE on every node folded into one line, and a change made on a later page re-rendering
//! that page.

use std::time::{Duration, Instant};

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// The node names of the grid's rows now.
async fn rows(browser: &Browser) -> Vec<String> {
    let names = browser
        .eval(
            "[...document.querySelectorAll('table.grid tbody th a.label')].map(a => a.textContent)",
        )
        .await;
    serde_json::from_value(names).unwrap()
}

#[tokio::test]
async fn a_large_grid_pages_its_rows_and_folds_roles_active_everywhere() {
    let site = UiSite::start().await;
    world::deployment(&site.pool, "big").await;
    let names: Vec<String> = (0..250).map(|i| format!("n{i:03}")).collect();
    for name in &names {
        world::node(&site.pool, name, true).await;
        world::bind(&site.pool, name, "test-client", "big").await;
    }
    world::commit(&site.pool, "big").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles WHERE state <> 0")
            .fetch_one(&site.pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} noderoles not ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // one more role, proposed on one node: the only column left
    world::bind(&site.pool, "n007", "test-destructive", "big").await;

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/deployments/big").await;
    browser.find("#grid-pages").await;
    assert!(
        browser
            .text("#grid-pages")
            .await
            .starts_with("100 of 250 nodes")
    );
    assert_eq!(rows(&browser).await, names[..100]);
    let columns = browser
        .eval(
            "[...document.querySelectorAll('table.grid thead th .label')].map(s => s.textContent)",
        )
        .await;
    assert_eq!(columns, serde_json::json!(["test-destructive"]));
    let folded = browser.text("#grid-collapsed").await;
    for role in ["test-client", "test-library", "test-server", "test-admin"] {
        assert!(folded.contains(role), "{role} folded: {folded}");
    }
    let size = browser
        .eval("document.documentElement.outerHTML.length")
        .await;
    assert!(size.as_i64().unwrap() < 200_000, "{size}");

    // the next pages, then a change made on page 2 stays on page 2
    browser.click("#grid-next").await;
    browser
        .wait_until("page 2", "location.search.startsWith('?after=')")
        .await;
    assert_eq!(rows(&browser).await, names[100..200]);
    browser.eval("(window.notReloaded = true)").await;
    browser
        .eval("(document.querySelector('#grid-root').dataset.old = 'yes', true)")
        .await;
    browser.click("#propose").await;
    browser
        .wait_until(
            "the grid re-rendered by the proposal",
            "document.querySelector('#grid-root').dataset.old === undefined",
        )
        .await;
    assert_eq!(rows(&browser).await, names[100..200], "still page 2");
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    browser.click("#grid-next").await;
    browser.find("#grid-first").await;
    assert_eq!(rows(&browser).await, names[200..]);
    assert_eq!(
        browser
            .eval("document.querySelector('#grid-next') === null")
            .await,
        true
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
