//! The nodes page at fleet size, in a real browser: a page at a time through the cursor,
//! filtered by name prefix and condition, sorted by name either way, a bulk action over
//! every node a filter matches (not only the page shown), each change audited, and the list
//! following nodes that come and go without a reload (keeping what the admin checked).

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// Rows of the nodes table now.
async fn rows(browser: &Browser) -> Vec<String> {
    let names = browser
        .eval("Array.from(document.querySelectorAll('table.nodes tbody tr td a[href^=\"/nodes/\"]')).map(a => a.innerText)")
        .await;
    serde_json::from_value(names).unwrap()
}

/// The rows of this page and of every next one, following *Next page* to the end.
async fn every_page(browser: &Browser) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = rows(browser).await;
        assert!(page.len() <= 100);
        seen.extend(page);
        let has_next = browser
            .eval("document.querySelector('#nodes-next') !== null")
            .await;
        if has_next != serde_json::Value::Bool(true) {
            return seen;
        }
        let before = browser.eval("location.search").await;
        browser.click("#nodes-next").await;
        browser
            .wait_until(
                "the next page",
                &format!("location.search !== {before} && document.readyState === 'complete'"),
            )
            .await;
    }
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
    let seen = every_page(&browser).await;
    assert!(seen.iter().all(|n| n.starts_with("rack12-")), "{seen:?}");
    let expected: Vec<String> = (0..260)
        .map(|i| format!("rack12-{i:03}.example.com"))
        .collect();
    assert_eq!(seen, expected, "every matching node once, in order");

    // by name, Z to A, through the name cursor: the Name header turns the order around
    browser.goto("/nodes?q=rack12-&sort=name").await;
    assert_eq!(
        browser
            .eval("document.querySelector('th[aria-sort]').getAttribute('aria-sort')")
            .await,
        "ascending"
    );
    browser.click("#sort-name").await;
    browser
        .wait_until("the order turned", "location.search.includes('sort=-name')")
        .await;
    let backwards = every_page(&browser).await;
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(backwards, reversed, "every matching node once, Z to A");

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

    // nodes come and go while the page is open: the list follows, and a checked box stays
    browser
        .check("input[name=node][value=\"rack13-000.example.com\"]")
        .await;
    browser.eval("(window.notReloaded = true)").await;
    let mut conn = site.pool.acquire().await.unwrap();
    crowbar::db::nodes::create(
        &mut conn,
        &crowbar::db::nodes::NewNode {
            name: "rack13-999.example.com".into(),
            ..Default::default()
        },
        &world::admin(),
    )
    .await
    .unwrap();
    browser
        .wait_until(
            "the new node's row",
            "!!document.querySelector('a[href=\"/nodes/rack13-999.example.com\"]')",
        )
        .await;
    assert!(
        browser
            .text("#node-count")
            .await
            .starts_with("41 nodes match")
    );
    crowbar::db::nodes::delete(
        &mut conn,
        &crowbar::domain::key::Key::parse("rack13-001.example.com"),
        &world::admin(),
    )
    .await
    .unwrap();
    browser
        .wait_until(
            "the deleted node's row gone",
            "!document.querySelector('a[href=\"/nodes/rack13-001.example.com\"]')",
        )
        .await;
    assert!(
        browser
            .text("#node-count")
            .await
            .starts_with("40 nodes match")
    );
    assert_eq!(
        browser
            .eval("document.querySelector('input[name=node][value=\"rack13-000.example.com\"]').checked")
            .await,
        true
    );
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
