//! The nodes page at fleet size, in a real browser: a page at a time through the cursor,
//! filtered by name prefix and condition, and a bulk action over every node a filter
//! matches (not only the page shown), each change audited.

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// Rows of the nodes table now.
async fn rows(browser: &Browser) -> Vec<String> {
    let names = browser
        .eval("Array.from(document.querySelectorAll('table.nodes tbody tr td a[href^=\"/nodes/\"]')).map(a => a.innerText)")
        .await;
    serde_json::from_value(names).unwrap()
}

#[tokio::test]
async fn the_nodes_page_pages_filters_and_acts_on_a_filtered_set() {
    let site = UiSite::start().await;
    let mut tx = site.pool.begin().await.unwrap();
    for (rack, count) in [("rack12", 260), ("rack13", 40)] {
        for i in 0..count {
            crowbar::db::nodes::create(
                &mut tx,
                &crowbar::db::nodes::NewNode {
                    name: format!("{rack}-{i:03}.example.com"),
                    ..Default::default()
                },
                &world::admin(),
            )
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;

    // filtered by prefix, a page at a time
    browser.goto("/nodes").await;
    browser
        .find("#node-q")
        .await
        .send_keys("rack12-")
        .await
        .unwrap();
    browser.click("#node-filter-apply").await;
    browser
        .wait_until("the filtered list", "location.search.includes('q=rack12-')")
        .await;
    assert!(
        browser
            .text("#node-count")
            .await
            .starts_with("260 nodes match")
    );
    let mut seen = Vec::new();
    loop {
        let page = rows(&browser).await;
        assert!(page.len() <= 100);
        assert!(page.iter().all(|n| n.starts_with("rack12-")), "{page:?}");
        seen.extend(page);
        let has_next = browser
            .eval("document.querySelector('#nodes-next') !== null")
            .await;
        if has_next != serde_json::Value::Bool(true) {
            break;
        }
        browser.click("#nodes-next").await;
        browser.find("#nodes-first").await;
    }
    let expected: Vec<String> = (0..260)
        .map(|i| format!("rack12-{i:03}.example.com"))
        .collect();
    assert_eq!(seen, expected, "every matching node once, in order");

    // reserve all 260 matching nodes, from any page
    browser.select("#bulk-matching-action", "reserve").await;
    browser.click("#bulk-matching-apply").await;
    browser
        .wait_until(
            "the page to show the reserved nodes",
            "document.querySelectorAll('table.nodes tr[data-available=\"false\"]').length > 0",
        )
        .await;
    let (reserved, rack13_reserved): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE name LIKE 'rack12-%' AND NOT available),
                count(*) FILTER (WHERE name LIKE 'rack13-%' AND NOT available)
           FROM nodes",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!((reserved, rack13_reserved), (260, 0));
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'node.update' AND object LIKE 'rack12-%'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(audited, 260, "one audit record per node changed");

    // the condition filter sees them
    browser.goto("/nodes?condition=reserved").await;
    assert!(
        browser
            .text("#node-count")
            .await
            .starts_with("260 nodes match")
    );
    browser.goto("/nodes?q=rack13-&condition=available").await;
    assert!(
        browser
            .text("#node-count")
            .await
            .starts_with("40 nodes match")
    );
    assert_eq!(rows(&browser).await.len(), 40);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
