//! The annealer page at fleet size, in a real browser: each list shows its true count and
//! a page of its items, the rest one page at a time through the cursor, and one
//! deployment's lists on their own.

use std::time::{Duration, Instant};

use crate::support::{browser::Browser, ui_site::UiSite, world};

/// The noderole ids the errors list shows now.
async fn errors(browser: &Browser) -> Vec<i64> {
    let ids = browser
        .eval("[...document.querySelectorAll('li.error-item')].map(li => Number(li.dataset.nrRow))")
        .await;
    serde_json::from_value(ids).unwrap()
}

#[tokio::test]
async fn the_annealer_lists_page_through_and_filter_by_deployment() {
    let site = UiSite::start().await;
    for (deployment, count) in [("big", 150), ("small", 10)] {
        world::deployment(&site.pool, deployment).await;
        for i in 0..count {
            let node = format!("{deployment}{i:03}");
            world::node(&site.pool, &node, true).await;
            world::bind(&site.pool, &node, "test-fails", deployment).await;
        }
        world::commit(&site.pool, deployment).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM noderoles WHERE state = -1")
        .fetch_one(&site.pool)
        .await
        .unwrap()
        < 160
    {
        assert!(Instant::now() < deadline, "the failures did not all happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM noderoles WHERE state = -1 ORDER BY id")
        .fetch_all(&site.pool)
        .await
        .unwrap();

    let browser = Browser::start(site.url()).await;
    site.login(&browser).await;
    browser.goto("/annealer").await;
    assert_eq!(browser.text("#errors-title").await, "Errors (160)");
    assert_eq!(errors(&browser).await, all[..100]);
    browser.click("#more-error").await;
    browser
        .wait_until("the next errors", "location.search.includes('list=error')")
        .await;
    assert_eq!(errors(&browser).await, all[100..]);
    assert_eq!(
        browser
            .eval("document.querySelector('#running-title') === null")
            .await,
        true,
        "one list only"
    );
    browser.click("#all-lists").await;
    browser.find("#running-title").await;

    // one deployment's lists
    browser.goto("/annealer?deployment=small").await;
    assert_eq!(browser.text("#errors-title").await, "Errors (10)");
    assert_eq!(errors(&browser).await.len(), 10);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    site.stop().await;
}
