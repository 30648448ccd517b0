//! Every page renders in a real browser without console errors (with a screenshot of
//! each), and the first-start wizard sets up the admin node and commits the system
//! deployment.

use crate::support::{browser::Browser, ui_site::UiSite, world};

#[tokio::test]
async fn the_wizard_sets_up_and_every_page_renders_cleanly() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;

    // no admin node yet: the overview points to the wizard
    browser.click("#setup-link").await;
    browser
        .wait_until("the wizard", "location.pathname === '/setup'")
        .await;
    browser.screenshot("setup").await;
    // a bad range is refused with its reason and creates nothing
    for (field, value) in [
        ("#node-name", "admin.example.com"),
        ("#node-address", "198.51.100.2"),
        ("#range-first", "198.51.100.200"),
        ("#range-last", "198.51.100.10"),
        ("#router", "198.51.100.1"),
    ] {
        browser.find(field).await.send_keys(value).await.unwrap();
    }
    browser.click("#finish-setup").await;
    browser
        .wait_until("the refusal", "!document.querySelector('#notice').hidden")
        .await;
    let notice = browser.text("#notice").await;
    assert!(
        notice.contains("first address comes after its last"),
        "{notice}"
    );
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE admin")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(admins, 0);
    // fixed: the admin node is created, bound and committed in the system deployment
    let first = browser.find("#range-first").await;
    first.clear().await.unwrap();
    first.send_keys("198.51.100.10").await.unwrap();
    let last = browser.find("#range-last").await;
    last.clear().await.unwrap();
    last.send_keys("198.51.100.200").await.unwrap();
    browser.click("#finish-setup").await;
    browser
        .wait_until(
            "the system deployment",
            "location.pathname === '/deployments/system'",
        )
        .await;
    let (admin, address): (bool, String) =
        sqlx::query_as("SELECT admin, host(address) FROM nodes WHERE name = 'admin.example.com'")
            .fetch_one(&site.pool)
            .await
            .unwrap();
    assert!(admin);
    assert_eq!(address, "198.51.100.2");
    // the admin network is a real network: ranges, router, and an automatic IPv6 prefix
    let mut conn = site.pool.acquire().await.unwrap();
    let network = crowbar::db::networks::get(&mut conn, &crowbar::db::keys::Key::from("admin"))
        .await
        .unwrap();
    let network = serde_json::to_value(network).unwrap();
    assert_eq!(network["deployment"], "system");
    assert_eq!(network["v6prefix"], "auto");
    assert_eq!(network["ranges"][0]["name"], "admin");
    assert_eq!(network["ranges"][0]["first"], "198.51.100.10");
    assert_eq!(network["ranges"][0]["last"], "198.51.100.200");
    assert_eq!(network["router"]["address"], "198.51.100.1");
    let snapshots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM snapshots s JOIN deployments d ON d.id = s.deployment_id WHERE d.system",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(snapshots, 1, "the system deployment was committed");
    browser.goto("/setup").await;
    assert!(browser.text("main").await.contains("has its admin node"));

    // the refused setup's 422 is in the console log on purpose; start afresh
    browser.console_errors().await;
    let noderole: i64 = sqlx::query_scalar("SELECT min(id) FROM noderoles")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    let noderole_page = format!("/node_roles/{noderole}");
    for (path, shot) in [
        ("/", "overview"),
        ("/deployments", "deployments"),
        ("/deployments/system", "deployment-system"),
        ("/deployments/system/graph", "graph-system"),
        ("/nodes", "nodes-list"),
        ("/nodes/admin.example.com", "node-admin"),
        ("/annealer", "annealer"),
        ("/audit", "audit"),
        (noderole_page.as_str(), "noderole-admin"),
    ] {
        browser.goto(path).await;
        browser.find("main h1").await;
        browser.screenshot(shot).await;
        assert_eq!(
            browser.console_errors().await,
            Vec::<String>::new(),
            "console errors on {path}"
        );
    }
    browser.close().await;
    site.stop().await;
}
