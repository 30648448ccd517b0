//! `GET /api/v2/events`: the stream over a real socket, resumed with `Last-Event-ID`
//! without loss or repeats, in commit-safe order, filtered, expired, and ended by shutdown.

use std::time::Duration;

use axum::http::StatusCode;
use crowbar::{
    db::{
        self,
        events::{Actor, NewEvent},
    },
    http::AppState,
};
use serde_json::json;

use crate::support::{
    app::TestApp,
    sse::{Served, SseEvent},
};

const WAIT: Duration = Duration::from_secs(10);

async fn served(app: &TestApp) -> Served {
    Served::start(AppState::new(app.pool.clone())).await
}

/// Every numbered event after `after`, as (seq, type), once all recorded ones are numbered
/// (other tests' transactions on the same cluster can hold numbering back a little).
async fn recorded_after(app: &TestApp, after: i64) -> Vec<(i64, String)> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        db::events::sequence_pending(&app.pool, 10_000)
            .await
            .unwrap();
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM events_pending")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events stay unnumbered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query_as(
        "SELECT o.seq, e.type FROM event_order o JOIN events e ON e.id = o.event_id
          WHERE o.seq > $1 ORDER BY o.seq",
    )
    .bind(after)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn ids_and_types(events: &[SseEvent]) -> Vec<(i64, String)> {
    events
        .iter()
        .map(|e| (e.seq(), e.event.clone().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_resumed_stream_delivers_exactly_the_missed_events_in_order() {
    let app = TestApp::new().await;
    let served = served(&app).await;
    let mut stream = served.stream("/api/v2/events", None).await;

    for name in ["n1.example.com", "n2.example.com", "n3.example.com"] {
        app.node(name).await;
    }
    let first = stream.take(2, WAIT).await;
    assert_eq!(first[0].event.as_deref(), Some("node.created"));
    assert_eq!(first[0].data["name"], "n1.example.com");
    assert_eq!(first[0].data["event"]["type"], "node.created");
    assert_eq!(first[0].data["event"]["actor"], "token:admin");
    assert_eq!(first[0].data["event"]["id"], first[0].seq());
    assert_eq!(first[1].data["name"], "n2.example.com");
    assert_eq!(first[1].seq(), first[0].seq() + 1);
    let last_seen = first[1].id.clone().unwrap();
    drop(stream);

    // changes while disconnected
    app.node("n4.example.com").await;
    app.put("/api/v2/nodes/n1.example.com")
        .json(json!({"alive": true, "reason": "racked"}))
        .send()
        .await
        .status(StatusCode::OK);
    app.deployment("web").await;

    let missed = recorded_after(&app, first[1].seq()).await;
    assert_eq!(
        missed.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        [
            "node.created",
            "node.created",
            "node.updated",
            "deployment.created"
        ]
    );
    let mut resumed = served.stream("/api/v2/events", Some(&last_seen)).await;
    let got = resumed.take(missed.len(), WAIT).await;
    assert_eq!(
        ids_and_types(&got),
        missed,
        "exactly the missed events, in order"
    );
    assert_eq!(got[0].data["name"], "n3.example.com");
    assert_eq!(
        got[2].data["changes"]["alive"],
        json!({"from": false, "to": true})
    );
    assert_eq!(got[2].data["event"]["reason"], "racked");
    // none twice: nothing more until something changes
    assert_eq!(resumed.maybe_next(Duration::from_millis(1500)).await, None);
    app.node("n5.example.com").await;
    let next = resumed.next(WAIT).await.unwrap();
    assert_eq!(next.seq(), missed.last().unwrap().0 + 1);
    assert_eq!(next.data["name"], "n5.example.com");

    // the query parameter works like the header, and the header wins over it
    let mut by_query = served
        .stream(&format!("/api/v2/events?last_event_id={last_seen}"), None)
        .await;
    assert_eq!(by_query.next(WAIT).await.unwrap(), got[0]);
    let mut both = served
        .stream(
            "/api/v2/events?last_event_id=0",
            Some(&got[1].id.clone().unwrap()),
        )
        .await;
    assert_eq!(both.next(WAIT).await.unwrap(), got[2]);
    // 0 replays everything kept
    let mut everything = served.stream("/api/v2/events?last_event_id=0", None).await;
    assert_eq!(everything.next(WAIT).await.unwrap().seq(), 1);
}

/// Two transactions commit in the opposite order of their event ids: the stream delivers
/// each as it commits (commit order), without waiting for the other, and never skips the
/// late one; a resume from before both replays both.
#[tokio::test]
async fn events_are_delivered_in_commit_order_never_skipping_a_late_commit() {
    let app = TestApp::new().await;
    let served = served(&app).await;
    let mut stream = served.stream("/api/v2/events", None).await;

    let event = |name: &str| NewEvent {
        kind: "test.event",
        data: json!({ "name": name }),
        ..Default::default()
    };
    let mut older = app.pool.begin().await.unwrap();
    let older_id = db::events::record(&mut older, &Actor::system(), event("older"))
        .await
        .unwrap();
    let mut newer = app.pool.begin().await.unwrap();
    let newer_id = db::events::record(&mut newer, &Actor::system(), event("newer"))
        .await
        .unwrap();
    assert!(older_id < newer_id);
    newer.commit().await.unwrap();
    // the older transaction is still open: the committed event does not wait for it
    let first = stream.next(WAIT).await.unwrap();
    assert_eq!(first.data["name"], "newer");
    older.commit().await.unwrap();
    let second = stream.next(WAIT).await.unwrap();
    assert_eq!(second.data["name"], "older");
    assert_eq!(second.seq(), first.seq() + 1);
    // a stream resumed from before both gets both, in the same order
    let mut resumed = served
        .stream(
            &format!("/api/v2/events?last_event_id={}", first.seq() - 1),
            None,
        )
        .await;
    let again = resumed.take(2, WAIT).await;
    assert_eq!(again[0].data["name"], "newer");
    assert_eq!(again[1].data["name"], "older");
}

#[tokio::test]
async fn filters_narrow_the_stream_by_type_deployment_and_node() {
    let app = TestApp::new().await;
    let served = served(&app).await;
    app.node("n1.example.com").await;
    app.node("n2.example.com").await;
    let mut updates = served
        .stream(
            "/api/v2/events?types=node.updated,deployment.committed",
            None,
        )
        .await;
    app.deployment("web").await;
    app.deployment("web2").await;
    let mut web2 = served.stream("/api/v2/events?deployment=web2", None).await;
    let mut n1 = served
        .stream("/api/v2/events?node=n1.example.com", None)
        .await;
    let mut web_by_name = served.stream("/api/v2/events?deployment=web", None).await;

    for name in ["n1.example.com", "n2.example.com"] {
        app.put(&format!("/api/v2/nodes/{name}"))
            .json(json!({"alive": true}))
            .send()
            .await
            .status(StatusCode::OK);
    }
    app.bind("n1.example.com", "test-server", "web").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);

    let got = updates.take(3, WAIT).await;
    assert_eq!(
        got.iter()
            .map(|e| (e.event.clone().unwrap(), e.data["name"].clone()))
            .collect::<Vec<_>>(),
        [
            ("node.updated".to_string(), json!("n1.example.com")),
            ("node.updated".to_string(), json!("n2.example.com")),
            ("deployment.committed".to_string(), json!(null)),
        ]
    );
    let node_events = n1.take(2, WAIT).await;
    assert_eq!(node_events[0].event.as_deref(), Some("node.updated"));
    assert!(
        node_events
            .iter()
            .all(|e| e.data["event"]["node_id"] == node_events[0].data["event"]["node_id"])
    );
    let web_id = app.get("/api/v2/deployments/web").send().await.body["id"].clone();
    let bound = web_by_name.next(WAIT).await.unwrap();
    assert_eq!(bound.event.as_deref(), Some("node_role.updated"));
    assert_eq!(bound.data["event"]["deployment_id"], web_id);
    assert_eq!(bound.data["event"]["reason"], "bound test-server");
    // nothing happened in web2 since the stream was opened
    assert_eq!(web2.maybe_next(Duration::from_millis(1500)).await, None);
}

#[tokio::test]
async fn streams_refuse_bad_requests_and_node_tokens() {
    let app = TestApp::new().await;
    let served = served(&app).await;
    let (_, node_token) = app.node("n1.example.com").await;
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    };
    check(
        served.open("/api/v2/events", None, None).await,
        401,
        "unauthorized",
    )
    .await;
    check(
        served.open("/api/v2/events", None, Some(&node_token)).await,
        403,
        "forbidden",
    )
    .await;
    check(
        served
            .open(
                "/api/v2/events",
                Some("abc"),
                Some(crate::support::app::ADMIN_TOKEN),
            )
            .await,
        400,
        "invalid_last_event_id",
    )
    .await;
    check(
        served
            .open(
                "/api/v2/events?deployment=nope",
                None,
                Some(crate::support::app::ADMIN_TOKEN),
            )
            .await,
        404,
        "not_found",
    )
    .await;
    check(
        served
            .open(
                "/api/v2/events?typo=1",
                None,
                Some(crate::support::app::ADMIN_TOKEN),
            )
            .await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn old_events_expire_and_a_resume_past_them_is_told() {
    let app = TestApp::new().await;
    for name in ["n1.example.com", "n2.example.com", "n3.example.com"] {
        app.node(name).await;
    }
    let kept = recorded_after(&app, 0).await;
    let last = kept.last().unwrap().0;
    // all but the last two are old
    sqlx::query(
        "UPDATE events SET at = now() - interval '8 days'
          WHERE id IN (SELECT event_id FROM event_order WHERE seq <= $1)",
    )
    .bind(last - 2)
    .execute(&app.pool)
    .await
    .unwrap();
    let deleted = db::events::expire(&app.pool, Duration::from_secs(7 * 86400))
        .await
        .unwrap();
    assert_eq!(deleted as i64, last - 2);
    assert_eq!(
        db::events::first_seq(&app.pool).await.unwrap(),
        Some(last - 1)
    );
    // and so were their numbers and the annealer's notes of them (a node's creation is one)
    for table in ["event_order", "anneal_changes"] {
        let (before, kept): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE seq < $1), count(*) FILTER (WHERE seq >= $1) FROM {table}"
        )))
        .bind(last - 1)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(before, 0, "{table}");
        assert!(kept > 0, "{table}");
    }

    let served = served(&app).await;
    // a client that had seen nothing missed the expired ones
    let mut stream = served.stream("/api/v2/events", Some("0")).await;
    let got = stream.take(3, WAIT).await;
    assert_eq!(got[0].event.as_deref(), Some("events.expired"));
    assert_eq!(got[0].data["last_event_id"], 0);
    assert_eq!(got[0].seq(), last - 2);
    assert_eq!(
        ids_and_types(&got[1..]),
        kept[kept.len() - 2..].to_vec(),
        "then the events that are kept"
    );
    // numbers are never reused, even when every event has expired
    sqlx::query("UPDATE events SET at = now() - interval '8 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    db::events::expire(&app.pool, Duration::from_secs(7 * 86400))
        .await
        .unwrap();
    app.node("n4.example.com").await;
    let next = stream.next(WAIT).await.unwrap();
    assert_eq!(next.seq(), last + 1);
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let app = TestApp::new().await;
    let served = served(&app).await;
    let mut streams = vec![
        served.stream("/api/v2/events", None).await,
        served
            .stream("/api/v2/events?types=node.created", None)
            .await,
    ];
    app.node("n1.example.com").await;
    for stream in &mut streams {
        assert!(stream.next(WAIT).await.is_some());
    }
    served.shutdown.cancel();
    for stream in &mut streams {
        assert_eq!(stream.next(WAIT).await, None, "the stream ended");
    }
    // and the server stopped well within its grace (10 s), not by abandoning the streams
    let stopped = tokio::time::timeout(Duration::from_secs(5), served.server)
        .await
        .expect("the server stops once its streams ended");
    stopped.unwrap().unwrap();
}
