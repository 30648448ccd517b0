//! Every page of the UI, as an admin sees it with a deployment converged and a failure in
//! it, passes axe-core's checks (WCAG 2.1 A/AA and best practices: landmarks, labels,
//! names, contrast) with no serious or critical violation; the login page too. A node with
//! a BMC shows it and its power (never its password).

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// The serious and critical violations on the page at `path` (all of them printed).
async fn violations(browser: &Browser, path: &str) -> Vec<String> {
    browser.goto(path).await;
    browser.find("main").await;
    let found = browser.accessibility().await;
    for (impact, what) in &found {
        println!("{path}: {impact}: {what}");
    }
    found
        .into_iter()
        .filter(|(impact, _)| matches!(impact.as_str(), "serious" | "critical" | "error"))
        .map(|(impact, what)| format!("{path}: {impact}: {what}"))
        .collect()
}

#[tokio::test]
async fn every_page_passes_the_accessibility_check() {
    let site = UiSite::start().await;
    world::deployment(&site.pool, "web").await;
    for node in ["n1", "n2"] {
        world::node(&site.pool, node, true).await;
        world::bind(&site.pool, node, "test-client", "web").await;
    }
    world::node(&site.pool, "f1", true).await;
    world::bind(&site.pool, "f1", "test-fails", "web").await;
    world::commit(&site.pool, "web").await;
    site.settled().await;
    let failed = world::id_of(&site.pool, "f1", "test-fails").await;
    // a BMC enrolled (never contacted: pages show what was read, they do not read)
    let enrolled = site
        .api(reqwest::Method::PUT, "/api/v2/nodes/f1/bmc")
        .json(&serde_json::json!({
            "driver": "redfish", "address": "127.0.0.1", "port": 9,
            "username": "crowbar", "password": "never-shown-secret",
        }))
        .send()
        .await
        .unwrap();
    assert!(enrolled.status().is_success());

    let browser = Browser::start(site.url()).await;
    let mut found = violations(&browser, "/login").await;
    site.login(&browser).await;
    for path in [
        "/".to_string(),
        "/deployments".into(),
        "/deployments/web".into(),
        "/deployments/web/graph".into(),
        "/nodes".into(),
        "/nodes/f1".into(),
        format!("/node_roles/{failed}"),
        "/annealer".into(),
        "/audit".into(),
        "/setup".into(),
    ] {
        found.extend(violations(&browser, &path).await);
    }
    assert_eq!(found, Vec::<String>::new());
    // the node page shows the BMC and its power, never its password
    browser.goto("/nodes/f1").await;
    assert!(browser.text("#node-power").await.contains("not read yet"));
    let bmc = browser.text("#node-bmc").await;
    assert!(bmc.contains("redfish at 127.0.0.1:9 as crowbar"), "{bmc}");
    let page = browser.eval("document.documentElement.outerHTML").await;
    assert!(!page.as_str().unwrap().contains("never-shown-secret"));
    browser.goto("/nodes").await;
    assert!(browser.text("table.nodes").await.contains("unknown"));
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
