//! The event duty: one daemon at a time numbers events and dispatches hooks as soon as it
//! is told of them; another takes the duty over when the holder's session ends, and a
//! daemon without it still numbers events on its poll.

use std::time::{Duration, Instant};

use crowbar::{
    db::{self, events::NewEvent},
    events::{Duty, EventHub, Retention},
};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::db::test_db;

/// Polls `condition` until it holds, or fails naming `what` after `limit`.
async fn within(limit: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sessions holding advisory locks in this test's database (only the duty takes one).
async fn holders(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn one_daemon_holds_the_event_duty_and_another_takes_it_over_when_its_session_ends() {
    let db = test_db().await;
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = Duty::keep(db.pool.clone(), stop_a.clone());
    let b = Duty::keep(db.pool.clone(), stop_b.clone());
    let limit = Duration::from_secs(10);
    within(limit, "one holder", || a.held() || b.held()).await;
    assert!(!(a.held() && b.held()), "two daemons hold the duty");
    assert_eq!(holders(&db.pool).await.len(), 1);

    // the holder's session is killed (its daemon died, its machine went away)
    let (holder, other) = if a.held() { (&a, &b) } else { (&b, &a) };
    let pid = holders(&db.pool).await[0];
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&db.pool)
        .await
        .unwrap();
    within(limit, "the other daemon taking the duty over", || {
        other.held()
    })
    .await;
    within(limit, "the old holder noticing", || !holder.held()).await;
    assert_eq!(holders(&db.pool).await.len(), 1);

    // a daemon that stops hands the duty on too
    let (holder_stops, successor) = if a.held() {
        (&stop_a, &b)
    } else {
        (&stop_b, &a)
    };
    holder_stops.cancel();
    within(limit, "the duty passing on at shutdown", || {
        successor.held()
    })
    .await;
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test]
async fn a_daemon_without_the_duty_still_numbers_events_on_its_poll() {
    let db = test_db().await;
    // another "daemon" holds the duty and never numbers anything
    let stop = CancellationToken::new();
    let elsewhere = Duty::keep(db.pool.clone(), stop.clone());
    within(Duration::from_secs(10), "the duty taken", || {
        elsewhere.held()
    })
    .await;
    let shutdown = CancellationToken::new();
    let mine = Duty::keep(db.pool.clone(), shutdown.clone());
    let hub = EventHub::new(db.pool.clone(), Retention::default(), mine.clone());
    hub.start(shutdown.clone());
    let before = db::events::last_seq(&db.pool).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    db::events::record(
        &mut conn,
        &db::events::Actor::system(),
        NewEvent {
            kind: "test.event",
            data: json!({"name": "numbered by a poll"}),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while db::events::last_seq(&db.pool).await.unwrap() == before {
        assert!(Instant::now() < deadline, "the event was never numbered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !mine.held(),
        "the duty moved: this test no longer shows the poll"
    );
    shutdown.cancel();
    stop.cancel();
}
