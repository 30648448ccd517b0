//! The admin's story in a real headless Chromium: log in, create a deployment, bring nodes
//! in, bind roles by dragging (both ways), read the plan, commit and watch the cells turn
//! ACTIVE through the event stream without a reload; reserve a node and see it; bind a
//! failing role with the keyboard only, see its ERROR and runlog, fix it, retry it.
//! Screenshots of each step land in `target/ui-screenshots/`.

use fantoccini::key::Key;
use serde_json::json;

use crowbar::db;

use crate::support::{
    browser::Browser,
    ui_site::{UiSite, flaky_barclamp},
    world::{self, admin},
};

/// The noderole cell of `role` on `node` in the grid.
fn cell(node: &str, role: &str) -> String {
    format!("#grid-root .nr[data-node=\"{node}\"][data-role=\"{role}\"]")
}

async fn create_deployment(browser: &Browser, name: &str) {
    browser.goto("/deployments").await;
    browser
        .find("#deployment-name")
        .await
        .send_keys(name)
        .await
        .unwrap();
    browser.click("#create-deployment").await;
    browser
        .wait_until(
            "the new deployment's page",
            &format!("location.pathname === '/deployments/{name}'"),
        )
        .await;
}

async fn move_node_in(browser: &Browser, node: &str) {
    browser.select("#add-node", node).await;
    browser.click("#add-node-button").await;
    browser
        .wait_until(
            &format!("{node}'s row"),
            &format!("!!document.querySelector('.drop[data-node=\"{node}\"]')"),
        )
        .await;
}

/// Drags the role's chip from the palette onto the node's row header.
async fn drag_role(browser: &Browser, role: &str, node: &str) {
    browser
        .drag_css(
            &format!("#role-palette .chip[data-value=\"{role}\"]"),
            &format!(".drop[data-node=\"{node}\"]"),
        )
        .await;
}

/// Waits until the element `css` says `state` (its text), e.g. `ACTIVE`.
async fn wait_state(browser: &Browser, css: &str, state: &str) {
    let selector = serde_json::to_string(&format!("{css} .state")).unwrap();
    browser
        .wait_until(
            &format!("{css} to be {state}"),
            &format!("(document.querySelector({selector}) || {{}}).textContent === '{state}'"),
        )
        .await;
}

#[tokio::test]
async fn an_admin_drags_bindings_commits_and_watches_them_converge() {
    let site = UiSite::start().await;
    world::node(&site.pool, "n1", true).await;
    world::node(&site.pool, "n2", true).await;
    let browser = Browser::start(site.url()).await;

    // unauthenticated: sent to the login page, and back after logging in
    browser.goto("/deployments").await;
    browser
        .wait_until("the login page", "location.pathname === '/login'")
        .await;
    browser.screenshot("login").await;
    site.login(&browser).await;

    create_deployment(&browser, "web").await;
    move_node_in(&browser, "n1").await;
    move_node_in(&browser, "n2").await;
    browser.select("#add-role", "test-server").await;
    browser.click("#add-role-button").await;
    browser.find(".drop[data-role=\"test-server\"]").await;

    // drag a node onto a role's column
    browser
        .drag_css(
            "#node-palette .chip[data-value=\"n1\"]",
            ".drop[data-role=\"test-server\"]",
        )
        .await;
    wait_state(&browser, &cell("n1", "test-server"), "PROPOSED").await;

    // drag a role onto a node's row
    drag_role(&browser, "test-client", "n2").await;
    wait_state(&browser, &cell("n2", "test-client"), "PROPOSED").await;
    // the binding created the parents it needs, shown in the grid too
    wait_state(&browser, &cell("n1", "test-admin"), "PROPOSED").await;

    // a binding made by mistake is removed from the proposal with its ×
    drag_role(&browser, "test-destructive", "n1").await;
    wait_state(&browser, &cell("n1", "test-destructive"), "PROPOSED").await;
    browser
        .click("button.unbind[aria-label=\"remove test-destructive from n1\"]")
        .await;
    browser
        .wait_until(
            "the removed binding to go",
            &format!(
                "!document.querySelector({})",
                serde_json::to_string(&cell("n1", "test-destructive")).unwrap()
            ),
        )
        .await;

    // the plan: what runs, in which order
    browser.click("#show-plan").await;
    browser
        .wait_until("the plan", "!!document.querySelector('#plan-result')")
        .await;
    let plan = browser.text("#plan-result").await;
    assert!(plan.contains("Wave 1"), "{plan}");
    for expected in ["test-admin on n1", "test-server on n1", "test-client on n2"] {
        assert!(
            plan.contains(expected),
            "{expected} missing from the plan:\n{plan}"
        );
    }
    let first_wave = browser.text(".waves li:first-child").await;
    assert!(first_wave.contains("test-admin on n1"), "{first_wave}");
    assert!(!first_wave.contains("test-client"), "{first_wave}");
    browser.screenshot("deployment-plan").await;

    // commit, then watch: states change by events, not by reloading
    browser
        .wait_until("the event stream", "window.crowbarLive.connected === true")
        .await;
    browser
        .eval("(window.pageMark = 'before commit', true)")
        .await;
    browser.click("#commit").await;
    for (node, role) in [
        ("n1", "test-admin"),
        ("n1", "test-server"),
        ("n2", "test-library"),
        ("n2", "test-client"),
    ] {
        wait_state(&browser, &cell(node, role), "ACTIVE").await;
    }
    browser
        .wait_until(
            "the deployment ACTIVE",
            "(document.querySelector('#deployment-state') || {}).textContent === 'ACTIVE'",
        )
        .await;
    assert_eq!(
        browser.eval("window.pageMark").await,
        json!("before commit")
    );
    let applied = browser.eval("window.crowbarLive.applied").await;
    assert!(
        applied.as_i64().unwrap() > 0,
        "no event was applied: {applied}"
    );
    browser.screenshot("deployment-active").await;

    // the graph shows the same noderoles, by state, as text
    browser.goto("/deployments/web/graph").await;
    browser.find("svg#graph").await;
    let states = browser
        .eval(
            "[...document.querySelectorAll('svg#graph .gnode text.state')].map(t => t.textContent)",
        )
        .await;
    let states: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        states.len() >= 4 && states.iter().all(|s| *s == "ACTIVE"),
        "{states:?}"
    );
    // live: a retry runs the server again; the graph hears of it without reloading
    browser
        .wait_until("the event stream", "window.crowbarLive.connected === true")
        .await;
    let server: i64 = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE r.name = 'test-server'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    browser.eval("(window.pageMark = 'graph', true)").await;
    let mut tx = site.pool.begin().await.unwrap();
    db::node_roles::retry(&mut tx, server, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    browser
        .wait_until(
            "the graph to hear of the re-run",
            &format!(
                "window.crowbarLive.applied >= 2 && document.querySelector('.gnode[data-nr=\"{server}\"] text.state').textContent === 'ACTIVE'"
            ),
        )
        .await;
    assert_eq!(browser.eval("window.pageMark").await, json!("graph"));
    browser.screenshot("graph").await;

    // nodes: reserve one with its toggle, see another die without reloading
    browser.goto("/nodes").await;
    browser.click("button[aria-label=\"reserve n1\"]").await;
    let condition = |node_id: i64| {
        format!(
            "(document.querySelector('tr[data-node-id=\"{node_id}\"] .condition') || {{}}).textContent"
        )
    };
    let n1_id = id_of_node(&site, "n1").await;
    let n2_id = id_of_node(&site, "n2").await;
    browser
        .wait_until(
            "n1 reserved",
            &format!("{} === 'alive, reserved'", condition(n1_id)),
        )
        .await;
    browser.eval("(window.pageMark = 'nodes', true)").await;
    world::set_alive(&site.pool, "n2", false).await;
    browser
        .wait_until("n2 dead", &format!("{} === 'dead'", condition(n2_id)))
        .await;
    assert_eq!(browser.eval("window.pageMark").await, json!("nodes"));
    let available: bool = sqlx::query_scalar("SELECT available FROM nodes WHERE name = 'n1'")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert!(!available);

    // bulk: reserve both checked nodes at once
    for node in ["n1", "n2"] {
        browser
            .check(&format!("input[name=\"node\"][value=\"{node}\"]"))
            .await;
    }
    browser.select("#bulk-action", "reserve").await;
    browser.click("#bulk-apply").await;
    browser
        .wait_until(
            "n2 dead and reserved",
            &format!("{} === 'dead, reserved'", condition(n2_id)),
        )
        .await;
    assert_eq!(
        browser
            .text(&format!("tr[data-node-id=\"{n1_id}\"] .condition"))
            .await,
        "alive, reserved"
    );
    browser.screenshot("nodes").await;

    browser.goto("/nodes/n1").await;
    // the node page follows its node too
    browser
        .wait_until("the event stream", "window.crowbarLive.connected === true")
        .await;
    world::set_alive(&site.pool, "n1", false).await;
    browser
        .wait_until(
            "n1 dead on its page",
            "document.querySelector('dd[data-node-id] .condition').textContent === 'dead, reserved'",
        )
        .await;
    let history = browser.text("main").await;
    assert!(history.contains("node.updated"), "{history}");
    assert!(history.contains("set in the web UI"), "{history}");
    browser.screenshot("node").await;

    finish(browser, site).await;
}

async fn id_of_node(site: &UiSite, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM nodes WHERE name = $1")
        .bind(name)
        .fetch_one(&site.pool)
        .await
        .unwrap()
}

/// A site barclamp with one role whose runs fail until its template says otherwise:
/// re-importing the barclamp with `fail: false` is the fix, as repairing a role's script is.
#[tokio::test]
async fn the_keyboard_binds_a_failing_role_and_its_error_is_retried_after_the_fix() {
    let site = UiSite::start().await;
    site.import(&flaky_barclamp(true)).await;
    world::node(&site.pool, "n3", true).await;
    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    create_deployment(&browser, "db").await;
    move_node_in(&browser, "n3").await;

    // the keyboard path: pick the role with Enter, drop it on the node's row with Enter
    browser
        .press(
            "#role-palette .chip[data-value=\"site-flaky\"]",
            &Key::Enter.to_string(),
        )
        .await;
    browser
        .wait_until(
            "the role to be picked",
            "document.querySelector('#role-palette .chip[data-value=\"site-flaky\"]').getAttribute('aria-pressed') === 'true'",
        )
        .await;
    let announced = browser.text("#announce").await;
    assert!(announced.contains("Picked role site-flaky"), "{announced}");
    browser
        .press(".drop[data-node=\"n3\"]", &Key::Enter.to_string())
        .await;
    wait_state(&browser, &cell("n3", "site-flaky"), "PROPOSED").await;
    browser
        .wait_until("the event stream", "window.crowbarLive.connected === true")
        .await;
    browser.click("#commit").await;
    wait_state(&browser, &cell("n3", "site-flaky"), "ERROR").await;

    // the annealer page: the error, why, and its runlog
    browser.goto("/annealer").await;
    let item = browser.text(".error-item").await;
    assert!(item.contains("site-flaky on n3"), "{item}");
    let runlog = browser
        .eval("document.querySelector('.error-item .runlog').textContent")
        .await;
    assert!(
        runlog.as_str().unwrap().contains("failed as asked"),
        "{runlog}"
    );
    browser.screenshot("annealer-error").await;

    // the fix: the role's definition no longer fails; then retry from the annealer page,
    // whose lists follow the event stream
    site.import(&flaky_barclamp(false)).await;
    browser
        .click("button.retry[aria-label=\"retry site-flaky on n3\"]")
        .await;
    browser
        .wait_until(
            "no errors left",
            "(document.querySelector('#errors-title') || {}).textContent === 'Errors (0)'",
        )
        .await;
    let id: i64 = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE r.name = 'site-flaky'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    browser.goto(&format!("/node_roles/{id}")).await;
    wait_state(&browser, "#noderole-state", "ACTIVE").await;
    // the state follows the stream; the runlog is read when the page loads
    browser.goto(&format!("/node_roles/{id}")).await;
    let runlog = browser.text("#runlog").await;
    assert!(!runlog.contains("failed as asked"), "{runlog}");
    browser.screenshot("noderole").await;

    // a second snapshot (a role added to the deployment), the difference, and recall
    browser.goto("/deployments/db").await;
    browser.select("#add-role", "test-admin").await;
    browser.click("#add-role-button").await;
    browser.find(".drop[data-role=\"test-admin\"]").await;
    browser.click("#commit").await;
    browser
        .wait_until(
            "the second snapshot",
            "!!document.querySelector('#recall-snapshot option[value=\"2\"]')",
        )
        .await;
    browser.goto("/deployments/db").await;
    browser.select("#diff-from", "1").await;
    browser.select("#diff-to", "2").await;
    browser.click("#show-diff").await;
    browser
        .wait_until("the diff", "!!document.querySelector('#diff-result')")
        .await;
    let diff = browser.text("#diff-result").await;
    assert!(diff.contains("added"), "{diff}");
    assert!(diff.contains("/roles/test-admin"), "{diff}");
    browser.screenshot("snapshot-diff").await;

    browser.select("#recall-snapshot", "1").await;
    browser.click("#recall").await;
    browser
        .wait_until(
            "the recalled proposal",
            "(document.querySelector('#deployment-state') || {}).textContent === 'PROPOSED' \
             && !document.querySelector('.drop[data-role=\"test-admin\"]')",
        )
        .await;

    finish(browser, site).await;
}

/// The end of every story: nothing went wrong in the console; everything stops.
async fn finish(browser: Browser, site: UiSite) {
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
