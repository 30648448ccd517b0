//! The graph of a deployment too large to draw noderole by noderole: a box per role with
//! its noderoles by state (the same numbers as the database, with a table behind the
//! picture), following the anneal without a reload; a role opens into its noderoles.

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// The summary's table: (role, active, all) per row.
async fn summary(browser: &Browser) -> Vec<(String, i64, i64)> {
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#graph-summary table tbody tr')].map(tr => \
               [...tr.children].map(td => td.textContent))",
        )
        .await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    rows.into_iter()
        .map(|cells| {
            let n: Vec<i64> = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
            (cells[0].clone(), n[1], n.iter().sum())
        })
        .collect()
}

#[tokio::test]
async fn a_large_graph_is_summarized_by_role_and_expands_on_demand() {
    let site = UiSite::start().await;
    world::deployment(&site.pool, "big").await;
    // reserved until the page is open, so the summary is seen to follow the anneal
    for i in 0..160 {
        let node = format!("n{i:03}");
        world::node(&site.pool, &node, true).await;
        world::set_available(&site.pool, &node, false).await;
        world::bind(&site.pool, &node, "test-client", "big").await;
    }
    world::commit(&site.pool, "big").await;
    let in_db: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.name, count(*) FROM noderoles nr JOIN roles r ON r.id = nr.role_id
          JOIN deployments d ON d.id = nr.deployment_id WHERE d.name = 'big'
          GROUP BY r.name ORDER BY r.name",
    )
    .fetch_all(&site.pool)
    .await
    .unwrap();
    let total: i64 = in_db.iter().map(|(_, n)| n).sum();
    assert!(total > crowbar::http::ui::graph::DETAIL_MAX, "{total}");

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/deployments/big/graph").await;
    browser.find("svg#graph.summary").await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('svg#graph .gnode').length")
            .await,
        0,
        "no noderole drawn one by one"
    );
    let mut shown: Vec<(String, i64)> = summary(&browser)
        .await
        .into_iter()
        .map(|(role, _, all)| (role, all))
        .collect();
    shown.sort();
    assert_eq!(shown, in_db, "the summary counts what the database holds");
    let size = browser
        .eval("document.documentElement.outerHTML.length")
        .await;
    assert!(size.as_i64().unwrap() < 100_000, "{size}");

    // the anneal runs: the summary follows it to all ACTIVE without a reload
    browser.eval("(window.notReloaded = true)").await;
    for i in 0..160 {
        world::set_available(&site.pool, &format!("n{i:03}"), true).await;
    }
    browser
        .wait_until(
            "every noderole ACTIVE in the summary",
            "[...document.querySelectorAll('#graph-summary table tbody tr')].every(tr => \
               tr.children[3].textContent === String([...tr.children].slice(2).reduce((s, td) => s + Number(td.textContent), 0)))",
        )
        .await;
    assert!(
        summary(&browser)
            .await
            .iter()
            .all(|(_, active, all)| active == all)
    );
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    browser.screenshot("graph-summary").await;

    // a role opens into its noderoles, at most DETAIL_MAX of them
    browser
        .click("svg#graph .grole[data-role=\"test-client\"] a")
        .await;
    browser
        .wait_until(
            "the role's noderoles",
            "location.search === '?role=test-client'",
        )
        .await;
    browser.find("svg#graph .gnode").await;
    let drawn = browser
        .eval("[...document.querySelectorAll('svg#graph .gnode text.role')].filter(t => t.textContent === 'test-client').length")
        .await;
    assert_eq!(drawn, 160);
    assert!(browser.text("#graph-note").await.contains("test-client"));
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
