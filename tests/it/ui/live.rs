//! Every section of an open page follows the event stream, so no page shows two truths at
//! once: after a commit the deployment page's snapshots and audit trail agree with its
//! state badge, and a noderole page's reason and runlog follow its runs, without a reload.
//! With six pages open at once, a commit, a retry, node changes and a script's binding each
//! leave every section of every page agreeing with the API.

use std::time::Duration;

use crowbar::domain::state::NodeRoleState;
use fantoccini::wd::WindowHandle;
use serde_json::{Value, json};

use crate::support::{
    browser::Browser,
    site::wait_for,
    ui_site::{UiSite, flaky_barclamp},
    world,
};

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

/// A role chosen in the grid's form but not yet added survives the grid and the page's other
/// sections reloading together, round after round: each section keeps its own unsent choices
/// (one section's reload must not drop another's).
#[tokio::test]
async fn a_choice_not_yet_sent_survives_every_section_reloading_at_once() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    world::node(&site.pool, "n2", true).await;
    world::deployment(&site.pool, "web").await;
    world::deployment(&site.pool, "other").await;
    world::bind(&site.pool, "n1", "test-admin", "web").await;
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/deployments/web").await;
    let first = browser
        .eval("document.querySelector('#add-role').options[0].value")
        .await;
    assert_ne!(
        first, "test-server",
        "the choice must differ from the default"
    );
    browser.select("#add-role", "test-server").await;

    for round in 0..6 {
        // the grid and the sections following every change (at least two) reload on a node moving
        browser
            .eval("(window.before = [...document.querySelectorAll('[data-live-src]')].filter(el => /\\b(changed|grid)\\b/.test(el.dataset.follows)).map(el => [el.id, el]))")
            .await;
        let to = if round % 2 == 0 { "web" } else { "other" };
        let update = crowbar::db::nodes::NodeUpdate {
            deployment: Some(crowbar::db::keys::Key::from(to)),
            ..Default::default()
        };
        world::update_node(&site.pool, "n2", update).await;
        browser
            .wait_until(
                &format!("round {round}: every section reloaded"),
                "window.before.length >= 2 && window.before.every(([id, el]) => document.getElementById(id) !== el)",
            )
            .await;
        browser
            .wait_until(
                &format!(
                    "round {round}: n2 shown {}",
                    if to == "web" { "in" } else { "out" }
                ),
                &format!(
                    "!!document.querySelector('.drop[data-node=\"n2\"]') === {}",
                    to == "web"
                ),
            )
            .await;
        assert_eq!(
            browser
                .eval("document.querySelector('#add-role').value")
                .await,
            "test-server",
            "round {round}: the unsent choice was lost"
        );
    }
    browser.close().await;
    site.stop().await;
}

/// The windows of [`every_open_page_agrees_with_the_api_after_each_change`].
struct Windows {
    deployment: WindowHandle,
    annealer: WindowHandle,
    nodes: WindowHandle,
    node: WindowHandle,
    noderole: WindowHandle,
    overview: WindowHandle,
}

impl Windows {
    fn all(&self) -> [&WindowHandle; 6] {
        [
            &self.deployment,
            &self.annealer,
            &self.nodes,
            &self.node,
            &self.noderole,
            &self.overview,
        ]
    }
}

/// Waits until the trimmed text of the first element `css` matches is `expected`.
async fn shows(browser: &Browser, css: &str, expected: &str) {
    let (css_js, expected_js) = (json!(css), json!(expected.trim()));
    browser
        .wait_until(
            &format!("`{css}` to show {expected_js}"),
            &format!(
                "((document.querySelector({css_js}) || {{}}).textContent || '').trim() === {expected_js}"
            ),
        )
        .await;
}

fn upper(v: &Value) -> String {
    v.as_str().unwrap().to_uppercase()
}

fn condition_text(node: &Value) -> &'static str {
    match (
        node["alive"].as_bool().unwrap(),
        node["available"].as_bool().unwrap(),
    ) {
        (true, true) => "alive, available",
        (true, false) => "alive, reserved",
        (false, true) => "dead",
        (false, false) => "dead, reserved",
    }
}

/// Every section of every open window agrees with what the API says now, each window
/// reaching it without a reload.
async fn agree(site: &UiSite, browser: &Browser, windows: &Windows, noderole: i64) {
    let anneal = site.get_json("/api/v2/anneal").await;
    let deployment = site.get_json("/api/v2/deployments/web").await;
    let snapshots = site.get_json("/api/v2/deployments/web/snapshots").await;
    let noderoles = site.get_json("/api/v2/node_roles?deployment=web").await;
    let nodes = site.get_json("/api/v2/nodes").await;
    let n3 = site.get_json("/api/v2/nodes/n3").await;
    let plan = site.get_json("/api/v2/deployments/web/plan").await;
    let watched = site
        .get_json(&format!("/api/v2/node_roles/{noderole}"))
        .await;
    let noderoles = noderoles.as_array().unwrap();
    let status = upper(&anneal["status"]);

    // the deployment: state badge, grid bar, every cell, snapshots, plan
    browser.switch_to(&windows.deployment).await;
    shows(browser, "#deployment-state", &upper(&deployment["state"])).await;
    let latest = snapshots[0]["seq"].as_i64().unwrap();
    assert_eq!(deployment["snapshot"].as_i64(), Some(latest));
    browser
        .wait_until(
            "the grid's bar to name the latest snapshot",
            &format!(
                "document.querySelector('#grid-root .bar').textContent.includes('latest snapshot #{latest}')"
            ),
        )
        .await;
    shows(
        browser,
        "#deployment-history table.list:not(.audit) tbody tr td",
        &latest.to_string(),
    )
    .await;
    browser
        .wait_until(
            "the grid to hold every noderole",
            &format!(
                "document.querySelectorAll('#grid-root [data-nr]').length === {}",
                noderoles.len()
            ),
        )
        .await;
    for nr in noderoles {
        shows(
            browser,
            &format!("#grid-root [data-nr=\"{}\"] .state", nr["id"]),
            &upper(&nr["status"]),
        )
        .await;
    }
    let mut expected = Vec::new();
    for (i, wave) in plan["waves"].as_array().unwrap().iter().enumerate() {
        let items: Vec<String> = wave
            .as_array()
            .unwrap()
            .iter()
            .map(|nr| {
                format!(
                    "{} on {}",
                    nr["role"].as_str().unwrap(),
                    nr["node"].as_str().unwrap()
                )
            })
            .collect();
        expected.push(format!("Wave {}: {}", i + 1, items.join(", ")));
    }
    for held in plan["held"].as_array().unwrap() {
        expected.push(format!(
            "{} ({}): {}",
            held["node"].as_str().unwrap(),
            held["reason"].as_str().unwrap(),
            held["message"].as_str().unwrap()
        ));
    }
    if expected.is_empty() && plan["remove"].as_array().unwrap().is_empty() {
        expected.push("Nothing to run".into());
    }
    browser
        .wait_until(
            &format!("the plan to say {expected:?}"),
            &format!(
                "(t => {}.every(line => t.includes(line)))((document.querySelector('#plan-result') || {{}}).textContent || '')",
                json!(expected)
            ),
        )
        .await;

    // the annealer: status and errors
    browser.switch_to(&windows.annealer).await;
    shows(browser, "#anneal-status", &status).await;
    shows(
        browser,
        "#errors-title",
        &format!("Errors ({})", anneal["counts"]["error"]),
    )
    .await;

    // the nodes: each one's condition and state
    browser.switch_to(&windows.nodes).await;
    for node in nodes.as_array().unwrap() {
        let row = format!("tr[data-node-id=\"{}\"]", node["id"]);
        shows(browser, &format!("{row} .condition"), condition_text(node)).await;
        shows(browser, &format!("{row} .badge"), &upper(&node["state"])).await;
    }

    // n3's page: condition, state, each noderole's state and runs
    browser.switch_to(&windows.node).await;
    shows(browser, "#node-live .condition", condition_text(&n3)).await;
    shows(browser, "#node-live dl.facts .badge", &upper(&n3["state"])).await;
    for nr in noderoles.iter().filter(|nr| nr["node"] == "n3") {
        let cell = format!("#node-live [data-nr=\"{}\"]", nr["id"]);
        shows(browser, &format!("{cell} .state"), &upper(&nr["status"])).await;
        browser
            .wait_until(
                "the node page to count the runs",
                &format!(
                    "document.querySelector('{}').closest('tr').children[3].textContent.trim() === '{}'",
                    cell.replace('\'', "\\'"),
                    nr["run_count"]
                ),
            )
            .await;
    }

    // the noderole's page: state and runlog
    browser.switch_to(&windows.noderole).await;
    shows(
        browser,
        "#noderole-state .state",
        &upper(&watched["status"]),
    )
    .await;
    shows(browser, "#runlog", watched["runlog"].as_str().unwrap()).await;

    // the overview: status and counts by state
    browser.switch_to(&windows.overview).await;
    shows(browser, "#overview-charts #anneal-status", &status).await;
    for (state, n) in anneal["counts"].as_object().unwrap() {
        shows(
            browser,
            &format!("#state-counts tr[data-state=\"{state}\"] td:last-child"),
            &n.to_string(),
        )
        .await;
    }
}

#[tokio::test]
async fn every_open_page_agrees_with_the_api_after_each_change() {
    let site = UiSite::start().await;
    site.import(&flaky_barclamp(true)).await;
    world::deployment(&site.pool, "web").await;
    for node in ["n1", "n2", "n3"] {
        world::node(&site.pool, node, true).await;
    }
    world::bind(&site.pool, "n1", "test-client", "web").await;
    world::bind(&site.pool, "n2", "test-client", "web").await;
    let flaky = world::bind(&site.pool, "n3", "site-flaky", "web")
        .await
        .noderole
        .id;

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/deployments/web").await;
    let windows = Windows {
        deployment: browser.window().await,
        annealer: browser.open_window("/annealer").await,
        nodes: browser.open_window("/nodes").await,
        node: browser.open_window("/nodes/n3").await,
        noderole: browser.open_window(&format!("/node_roles/{flaky}")).await,
        overview: browser.open_window("/").await,
    };
    for window in windows.all() {
        browser.switch_to(window).await;
        browser
            .wait_until("the event stream", "window.crowbarLive.connected === true")
            .await;
        browser.eval("(window.notReloaded = true)").await;
    }

    // a commit in the deployment's window, with its plan open
    browser.switch_to(&windows.deployment).await;
    browser.click("#show-plan").await;
    browser.find("#plan-result").await;
    browser.click("#commit").await;
    let pool = &site.pool;
    wait_for(Duration::from_secs(30), "the commit", || async {
        world::state(pool, "n3", "site-flaky").await == NodeRoleState::Error
    })
    .await;
    site.settled().await;
    agree(&site, &browser, &windows, flaky).await;
    browser.switch_to(&windows.annealer).await;
    shows(&browser, "#errors-title", "Errors (1)").await;

    // the fix, and a retry from the annealer's window
    site.import(&flaky_barclamp(false)).await;
    browser
        .click("button.retry[aria-label=\"retry site-flaky on n3\"]")
        .await;
    wait_for(Duration::from_secs(30), "the retry to succeed", || async {
        world::state(pool, "n3", "site-flaky").await == NodeRoleState::Active
    })
    .await;
    site.settled().await;
    agree(&site, &browser, &windows, flaky).await;

    // nodes change: n3 reserved through the API, n2 found dead
    let reserved = site
        .api(reqwest::Method::PUT, "/api/v2/nodes/n3")
        .json(&json!({"available": false}))
        .send()
        .await
        .unwrap();
    assert!(reserved.status().is_success());
    world::set_alive(&site.pool, "n2", false).await;
    agree(&site, &browser, &windows, flaky).await;

    // a script binds a role elsewhere and commits: the grid grows without a reload
    let bound = site
        .api(reqwest::Method::POST, "/api/v2/node_roles")
        .json(&json!({"node": "n1", "role": "test-client-client", "deployment": "web"}))
        .send()
        .await
        .unwrap();
    assert!(bound.status().is_success());
    let committed = site
        .api(reqwest::Method::PUT, "/api/v2/deployments/web/commit")
        .send()
        .await
        .unwrap();
    assert!(committed.status().is_success());
    // n2 is dead: its noderoles wait; n1's new one runs
    wait_for(
        Duration::from_secs(30),
        "the new binding to run",
        || async { world::state(pool, "n1", "test-client-client").await == NodeRoleState::Active },
    )
    .await;
    agree(&site, &browser, &windows, flaky).await;

    for window in windows.all() {
        browser.switch_to(window).await;
        assert_eq!(
            browser.eval("window.notReloaded === true").await,
            true,
            "{window:?} reloaded"
        );
        assert_eq!(browser.console_errors().await, Vec::<String>::new());
    }
    browser.switch_to(&windows.deployment).await;
    browser.screenshot("live-deployment").await;
    browser.close().await;
    site.stop().await;
}
