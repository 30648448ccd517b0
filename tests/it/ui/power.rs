//! Power from the web UI against sushy-tools' Redfish emulator: the node page's buttons
//! queue an operation whose progress and outcome the page shows as it happens (the
//! operations table, the power fact, the timeline), and the nodes page powers every node a filter
//! matches (those with a BMC) in one action.

use std::time::Duration;

use crate::support::{
    bmc::{PASSWORD, RedfishEmulator, USER},
    browser::Browser,
    ui_site::UiSite,
    world,
};

async fn enroll(site: &UiSite, node: &str, emulator: &RedfishEmulator, i: usize) {
    let enrolled = site
        .api(reqwest::Method::PUT, &format!("/api/v2/nodes/{node}/bmc"))
        .json(&serde_json::json!({
            "driver": "redfish", "address": "127.0.0.1", "port": emulator.port,
            "system": emulator.systems[i].uuid, "username": USER, "password": PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert!(enrolled.status().is_success());
}

#[tokio::test]
async fn power_buttons_and_the_bulk_action_show_their_operations_live() {
    let emulator = RedfishEmulator::start(2).await;
    let site = UiSite::start().await;
    for (i, node) in ["rack1-a", "rack1-b"].into_iter().enumerate() {
        world::node(&site.pool, node, true).await;
        enroll(&site, node, &emulator, i).await;
    }
    world::node(&site.pool, "rack1-nobmc", true).await;
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;

    browser.goto("/nodes/rack1-a").await;
    browser.click("#power-on").await;
    browser
        .wait_until(
            "the operation is shown done and the power on",
            "[...document.querySelectorAll('#node-power-ops [data-state=\"done\"]')] \
               .some(row => row.textContent.includes('confirmed by the BMC')) \
             && document.querySelector('#node-power .power').textContent === 'on'",
        )
        .await;
    // the operation and the power it changed are on the node's timeline
    browser
        .wait_until(
            "the timeline shows the power change",
            "[...document.querySelectorAll('#node-timeline circle.change title')] \
               .some(t => t.textContent.includes('node.power_changed'))",
        )
        .await;
    let timeline = browser
        .eval("document.querySelector('#node-timeline').textContent")
        .await;
    assert!(timeline.as_str().unwrap().contains("on done"), "{timeline}");
    let ops = browser.text("#node-power-ops").await;
    assert!(ops.contains("confirmed by the BMC"), "{ops}");
    assert!(ops.contains("user:"), "who asked: {ops}");

    // every node starting with rack1- that has a BMC: both, none refused for the third
    browser.goto("/nodes?q=rack1-").await;
    browser
        .select("#bulk-matching-action", "power:force-off")
        .await;
    browser.click("#bulk-matching-apply").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let a = site.get_json("/api/v2/nodes/rack1-a").await;
        let b = site.get_json("/api/v2/nodes/rack1-b").await;
        if a["power"] == "off" && b["power"] == "off" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a} {b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser
        .wait_until(
            "the list shows both off",
            "[...document.querySelectorAll('table.nodes .power')].filter(e => e.textContent === 'off').length === 2",
        )
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
