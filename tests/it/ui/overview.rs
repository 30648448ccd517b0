//! The overview's charts in a real browser show the numbers the database holds: each
//! deployment's convergence, noderoles by state and runs per minute over the last hour (with the table behind the
//! chart), and the roles and nodes failing most; they follow new runs without a reload.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// The runs the chart's table counts: (succeeded, failed), summed over its minutes.
async fn charted(browser: &Browser) -> (i64, i64) {
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#runs-table tbody tr')].map(tr => \
               [Number(tr.children[1].textContent), Number(tr.children[2].textContent)])",
        )
        .await;
    let rows: Vec<(i64, i64)> = serde_json::from_value(rows).unwrap();
    rows.iter().fold((0, 0), |(s, f), (a, b)| (s + a, f + b))
}

/// The state chart's present minute (its table's last row): state → noderoles.
async fn states_now(browser: &Browser) -> BTreeMap<String, i64> {
    browser
        .eval("document.querySelector('#states-chart + .legend + details').open = true")
        .await;
    let cells = browser
        .eval(
            "Object.fromEntries([...document.querySelectorAll('#states-table tbody tr:last-child td[data-state]')]                .map(td => [td.dataset.state, Number(td.textContent)]))",
        )
        .await;
    let mut cells: BTreeMap<String, i64> = serde_json::from_value(cells).unwrap();
    cells.remove("proposed");
    cells
}

/// Noderoles by state as the API reports them.
async fn api_counts(site: &UiSite) -> BTreeMap<String, i64> {
    crowbar::db::anneal::status(&site.pool, None)
        .await
        .unwrap()
        .counts
}

#[tokio::test]
async fn the_overview_charts_the_fleet_as_the_database_has_it() {
    let site = UiSite::start().await;
    world::deployment(&site.pool, "web").await;
    for i in 0..12 {
        let node = format!("n{i:02}");
        world::node(&site.pool, &node, true).await;
        world::bind(&site.pool, &node, "test-client", "web").await;
    }
    for i in 0..3 {
        let node = format!("f{i:02}");
        world::node(&site.pool, &node, true).await;
        world::bind(&site.pool, &node, "test-fails", "web").await;
    }
    world::commit(&site.pool, "web").await;
    site.settled().await;

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.find("#overview-charts").await;
    let (total, active): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE state = 0) FROM noderoles")
            .fetch_one(&site.pool)
            .await
            .unwrap();
    let row = browser
        .text("#overview-charts tr[data-deployment=\"web\"]")
        .await;
    assert!(
        row.contains(&format!("{active} of {total}")),
        "{row} vs {active} of {total}"
    );
    assert!(row.contains("waits on 3 in error"), "{row}");
    let in_db = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE outcome = 'succeeded'),
                    count(*) FILTER (WHERE outcome IN ('failed', 'timed_out'))
               FROM run_records",
        )
        .fetch_one(&site.pool)
        .await
        .unwrap()
    };
    browser
        .eval("document.querySelector('#overview-charts details').open = true")
        .await;
    assert_eq!(charted(&browser).await, in_db().await);
    assert!(browser.text("#failing-roles").await.contains("test-fails"));
    let bars = browser
        .eval("document.querySelectorAll('#runs-chart rect.ok, #runs-chart rect.failed').length")
        .await;
    assert!(bars.as_i64().unwrap() >= 1, "the chart draws the runs");
    assert_eq!(states_now(&browser).await, api_counts(&site).await);
    let segments = browser
        .eval("document.querySelectorAll('#states-chart rect.seg').length")
        .await;
    assert!(
        segments.as_i64().unwrap() >= 2,
        "ACTIVE and ERROR are drawn"
    );
    // the sweep samples the minute: the chart's history is in the database
    let sampled = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT n FROM noderole_state_samples WHERE at = date_trunc('minute', now()) AND state = -1",
        )
        .fetch_optional(&site.pool)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sampled().await.is_none() {
        assert!(Instant::now() < deadline, "no state sample this minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // the failures are retried: the charts follow without a reload
    browser.eval("(window.notReloaded = true)").await;
    for i in 0..3 {
        world::retry(&site.pool, &format!("f{i:02}"), "test-fails")
            .await
            .unwrap();
    }
    site.settled().await;
    let expected = in_db().await;
    assert_eq!(expected.1, 6, "each failing noderole failed twice");
    browser
        .wait_until(
            "the chart to count the retries",
            &format!(
                "[...document.querySelectorAll('#runs-table tbody tr')].reduce((s, tr) => \
                   s + Number(tr.children[2].textContent), 0) === {}",
                expected.1
            ),
        )
        .await;
    assert_eq!(charted(&browser).await, expected);
    assert_eq!(states_now(&browser).await, api_counts(&site).await);
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    browser.screenshot("overview-charts").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
