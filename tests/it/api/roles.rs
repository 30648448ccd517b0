//! Who may do what (docs/access.md): the policy table against every route of both routers
//! for every role, viewers and operators held to their roles, expired and narrowed tokens;
//! and who did what: the audit trail's records, filters, cursor, refusals and retention.

use std::{collections::BTreeSet, num::NonZeroU32, sync::Arc};

use axum::http::{Method, StatusCode, header};
use crowbar::{
    db::users::SessionOwner,
    domain::policy::{Action, Role},
    http::{audit::Refusals, policy, ui},
};
use serde_json::{Value, json};

use crate::support::app::{Call, TestApp};

/// A token with `role` made by the built-in admin token; returns the token.
async fn token(app: &TestApp, name: &str, role: &str) -> String {
    app.post("/api/v2/tokens")
        .json(json!({"name": name, "role": role}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A password user with `role`.
async fn user(app: &TestApp, name: &str, role: &str) {
    app.post("/api/v2/users")
        .json(json!({"name": name, "password": "correct horse battery", "role": role}))
        .send()
        .await
        .status(StatusCode::CREATED);
}

/// A concrete path for a route: every `{placeholder}` a key that names nothing.
fn concrete(route: &str) -> String {
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "424242"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `/api/v2` (method, route) of the OpenAPI document: the registry the router is
/// built from.
fn api_routes() -> Vec<(Method, String)> {
    let document = crowbar::http::api::openapi();
    let mut routes = Vec::new();
    for (route, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            if let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes())
                && method != Method::OPTIONS
            {
                routes.push((method, route.clone()));
            }
        }
    }
    assert!(routes.len() > 80, "the document lists the API: {routes:?}");
    routes
}

#[tokio::test]
async fn every_route_has_a_policy_and_each_role_gets_its_answer() {
    let app = TestApp::new().await;
    let tokens = [
        (Role::Viewer, token(&app, "v", "viewer").await),
        (Role::Operator, token(&app, "o", "operator").await),
        (Role::Admin, token(&app, "a", "admin").await),
    ];
    let mut changes = BTreeSet::new();
    for (method, route) in api_routes() {
        let action = policy::action_of(&method, &route)
            .unwrap_or_else(|| panic!("{method} {route} has no entry in the policy table"));
        if method != Method::GET {
            changes.insert((method.to_string(), route.clone()));
        }
        if route == "/api/v2/events" {
            continue; // an endless stream; its reads are tested in events.rs
        }
        for (role, token) in &tokens {
            let reply = app
                .call(method.clone(), &concrete(&route))
                .token(token)
                .json(json!({}))
                .send()
                .await;
            if action.allows(*role) {
                assert_ne!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{role} may {method} {route}: {}",
                    reply.body
                );
            } else {
                let reply = reply.error(StatusCode::FORBIDDEN, "forbidden");
                assert!(
                    reply.message().contains(&format!("a {role} may not")),
                    "{}",
                    reply.message()
                );
            }
        }
    }
    // and the table lists no API route that does not exist
    let listed: BTreeSet<(String, String)> = policy::change_routes()
        .filter(|(_, route, _)| route.starts_with("/api/"))
        .map(|(m, r, _)| (m.to_string(), r.to_string()))
        .collect();
    assert_eq!(
        listed, changes,
        "the policy table and the API's change routes differ"
    );

    // every page behind a session, for a viewer's and an operator's session; the viewer's
    // changes nothing
    for (role, token) in &tokens[..2] {
        let before = app.fingerprint().await;
        let (cookie, csrf) = session_of(&app, token).await;
        for (method, route) in ui::page_routes() {
            let action = policy::action_of(&method, route)
                .unwrap_or_else(|| panic!("UI {method} {route} has no entry in the policy table"));
            let reply = app
                .call(method.clone(), &concrete(route))
                .no_token()
                .header(header::COOKIE, &format!("crowbar_session={cookie}"))
                .header(header::HeaderName::from_static("x-csrf-token"), &csrf)
                .send()
                .await;
            assert_eq!(
                reply.status == StatusCode::FORBIDDEN,
                !action.allows(*role),
                "{role}: UI {method} {route} answered {}",
                reply.status
            );
        }
        if *role == Role::Viewer {
            assert_eq!(
                before,
                app.fingerprint().await,
                "a viewer's session changed something"
            );
        }
    }
}

/// A UI session opened with `token`: its cookie and its CSRF token.
async fn session_of(app: &TestApp, token: &str) -> (String, String) {
    let caller = match crowbar::db::tokens::authenticate(&app.pool, token)
        .await
        .unwrap()
    {
        crowbar::db::tokens::Lookup::Valid(caller) => caller,
        other => panic!("not a working token: {other:?}"),
    };
    let cookie = crowbar::db::users::open_session(
        &app.pool,
        &SessionOwner::Token {
            id: caller.id,
            name: caller.name,
        },
        std::time::Duration::from_secs(600),
    )
    .await
    .unwrap()
    .unwrap();
    let csrf = ui::csrf::token_for(&cookie);
    (cookie, csrf)
}

/// A node, a deployment with a bound role, and a user: something for every write to touch.
async fn fleet(app: &TestApp) -> i64 {
    app.node("n1.example.com").await;
    app.deployment("web").await;
    let nr = app.bind("n1.example.com", "test-admin", "web").await;
    user(app, "carol", "viewer").await;
    nr
}

/// Writes of every kind, each with what a viewer gets for it.
fn writes(nr: i64) -> Vec<(Method, String, Value)> {
    vec![
        (
            Method::POST,
            "/api/v2/nodes".into(),
            json!({"name": "n9.example.com"}),
        ),
        (
            Method::PUT,
            "/api/v2/nodes/n1.example.com".into(),
            json!({"available": false}),
        ),
        (
            Method::DELETE,
            "/api/v2/nodes/n1.example.com".into(),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v2/deployments".into(),
            json!({"name": "db"}),
        ),
        (
            Method::PUT,
            "/api/v2/deployments/web/commit".into(),
            json!({}),
        ),
        (
            Method::PUT,
            "/api/v2/deployments/web/propose".into(),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v2/node_roles".into(),
            json!({"node": "n1.example.com", "role": "test-client", "deployment": "web"}),
        ),
        (
            Method::DELETE,
            format!("/api/v2/node_roles/{nr}"),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/api/v2/node_roles/{nr}/retry"),
            json!({}),
        ),
        (
            Method::PUT,
            "/api/v2/deployments/web/attribs/test-slow-delay".into(),
            json!({"value": 1}),
        ),
        (
            Method::POST,
            "/api/v2/networks".into(),
            json!({"name": "lab", "v4prefix": "198.51.100.0/24"}),
        ),
        (
            Method::POST,
            "/api/v2/users".into(),
            json!({"name": "dave", "password": "correct horse battery"}),
        ),
        (Method::DELETE, "/api/v2/users/carol".into(), json!({})),
        (
            Method::POST,
            "/api/v2/tokens".into(),
            json!({"name": "more"}),
        ),
        (Method::DELETE, "/api/v2/tokens/admin".into(), json!({})),
        (
            Method::PUT,
            "/api/v2/jigs/script".into(),
            json!({"active": false}),
        ),
    ]
}

fn call<'a>(
    app: &'a TestApp,
    token: &str,
    (method, path, body): &(Method, String, Value),
) -> Call<'a> {
    app.call(method.clone(), path)
        .token(token)
        .json(body.clone())
}

#[tokio::test]
async fn a_viewer_reads_everything_and_every_write_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let nr = fleet(&app).await;
    let viewer = token(&app, "watcher", "viewer").await;
    for list in [
        "/api/v2/nodes",
        "/api/v2/nodes/n1.example.com",
        "/api/v2/deployments",
        "/api/v2/deployments/web/plan",
        "/api/v2/node_roles",
        "/api/v2/runs",
        "/api/v2/anneal",
        "/api/v2/roles",
        "/api/v2/barclamps",
        "/api/v2/users",
        "/api/v2/tokens",
        "/api/v2/audit",
        "/api/v2/networks",
    ] {
        app.get(list)
            .token(&viewer)
            .send()
            .await
            .status(StatusCode::OK);
    }
    for write in writes(nr) {
        let reply = app
            .refused(
                call(&app, &viewer, &write),
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
        assert!(
            reply.message().contains("ask an admin"),
            "{}",
            reply.message()
        );
    }
    let barclamp = app
        .post("/api/v2/barclamps")
        .token(&viewer)
        .raw("barclamp:\n  name: site\n", Some("application/yaml"));
    app.refused(barclamp, StatusCode::FORBIDDEN, "forbidden")
        .await;
}

#[tokio::test]
async fn an_operator_runs_the_fleet_but_cannot_touch_users_tokens_or_barclamps() {
    let app = TestApp::new().await;
    fleet(&app).await;
    let operator = token(&app, "ops", "operator").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v2/users",
            json!({"name": "eve", "password": "correct horse battery"}),
        ),
        (Method::PUT, "/api/v2/users/carol", json!({"role": "admin"})),
        (Method::POST, "/api/v2/tokens", json!({"name": "mine"})),
        (Method::DELETE, "/api/v2/tokens/admin", json!({})),
        (Method::PUT, "/api/v2/jigs/script", json!({"active": false})),
    ] {
        let call = app.call(method, path).token(&operator).json(body);
        app.refused(call, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let barclamp = app
        .post("/api/v2/barclamps")
        .token(&operator)
        .raw("barclamp:\n  name: site\n", Some("application/yaml"));
    app.refused(barclamp, StatusCode::FORBIDDEN, "forbidden")
        .await;
    // but runs the fleet
    app.post("/api/v2/nodes")
        .token(&operator)
        .json(json!({"name": "n2.example.com"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.put("/api/v2/deployments/web/commit")
        .token(&operator)
        .send()
        .await
        .status(StatusCode::OK);
}

#[tokio::test]
async fn an_expired_token_gets_401_and_says_so() {
    let app = TestApp::new().await;
    let reply = app
        .post("/api/v2/tokens")
        .json(json!({"name": "short", "role": "operator", "expires_in": "1h"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let expires = reply.body["expires_at"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let ahead = at.signed_duration_since(chrono::Utc::now());
    assert!(ahead > chrono::Duration::minutes(59) && ahead <= chrono::Duration::hours(1));
    let short = reply.body["token"].as_str().unwrap().to_string();
    app.get("/api/v2/nodes")
        .token(&short)
        .send()
        .await
        .status(StatusCode::OK);
    // an hour later (the clock is the database's)
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let reply = app
        .get("/api/v2/nodes")
        .token(&short)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(reply.message().contains("expired"), "{}", reply.message());
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    // and it cannot open a UI session any more either
    assert!(matches!(
        crowbar::db::tokens::authenticate(&app.pool, &short)
            .await
            .unwrap(),
        crowbar::db::tokens::Lookup::Expired
    ));
    // bad expiries are refused in words
    for bad in ["0d", "30m", "forever", "10000d"] {
        let call = app
            .post("/api/v2/tokens")
            .json(json!({"name": "bad", "expires_in": bad}));
        app.refused(call, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
            .await;
    }
}

#[tokio::test]
async fn a_token_narrower_than_its_user_stays_narrow_and_follows_its_user_down() {
    let app = TestApp::new().await;
    user(&app, "bob", "operator").await;
    // bob's viewer token: bob may operate, the token may not
    let narrow = app
        .post("/api/v2/tokens")
        .json(json!({"name": "bob-ro", "user": "bob", "role": "viewer"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(narrow.body["role"], "viewer");
    assert_eq!(narrow.body["user"], "bob");
    let narrow = narrow.body["token"].as_str().unwrap().to_string();
    let call = app
        .post("/api/v2/deployments")
        .token(&narrow)
        .json(json!({"name": "x"}));
    app.refused(call, StatusCode::FORBIDDEN, "forbidden").await;
    // a token cannot be wider than its user
    let call = app
        .post("/api/v2/tokens")
        .json(json!({"name": "bob-admin", "user": "bob", "role": "admin"}));
    let reply = app.refused(call, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        reply.message().contains("bob's is operator"),
        "{}",
        reply.message()
    );
    // bob's operator token (the default: bob's role) works until bob is demoted
    let full = app
        .post("/api/v2/tokens")
        .json(json!({"name": "bob-ops", "user": "bob"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(full.body["role"], "operator");
    let full = full.body["token"].as_str().unwrap().to_string();
    app.post("/api/v2/deployments")
        .token(&full)
        .json(json!({"name": "y"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    // a token made with bob's token is bob's too, and no wider
    let call = app
        .post("/api/v2/tokens")
        .token(&full)
        .json(json!({"name": "bob-more"}));
    app.refused(call, StatusCode::FORBIDDEN, "forbidden").await;
    app.put("/api/v2/users/bob")
        .json(json!({"role": "viewer"}))
        .send()
        .await
        .status(StatusCode::OK);
    let call = app
        .post("/api/v2/deployments")
        .token(&full)
        .json(json!({"name": "z"}));
    app.refused(call, StatusCode::FORBIDDEN, "forbidden").await;
    // deleting bob revokes his tokens
    app.delete("/api/v2/users/bob")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    app.get("/api/v2/nodes")
        .token(&full)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// The audit records, newest first, as the API lists them with `query`.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    app.get(&format!("/api/v2/audit{query}"))
        .send()
        .await
        .status(StatusCode::OK)
        .body
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn changes_are_audited_with_who_what_and_a_summary_and_never_a_secret() {
    let app = TestApp::new().await;
    fleet(&app).await;
    let commit = app
        .put("/api/v2/deployments/web/commit")
        .header(
            header::HeaderName::from_static("x-request-id"),
            "commit-web-1",
        )
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(commit.headers["x-request-id"], "commit-web-1");
    let records = audit(&app, "?request_id=commit-web-1").await;
    let record = &records[0];
    assert_eq!(record["actor"], "token:admin");
    assert_eq!(record["role"], "admin");
    assert_eq!(record["action"], "deployment.commit");
    assert_eq!(record["kind"], "deployment");
    assert_eq!(record["object"], "web");
    assert_eq!(
        record["summary"]["snapshot"],
        commit.body["snapshot"]["seq"]
    );
    assert_eq!(record["summary"]["noderoles_changed"], 1);

    // a document applied: the snapshot and the plan's counts
    let applied = app
        .post("/api/v2/deployments/web/snapshots")
        .json(json!({"base": 1, "bindings": [
            {"node": "n1.example.com", "role": "test-admin"},
            {"node": "n1.example.com", "role": "test-client"},
        ]}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let record = &audit(&app, "?action=deployment.apply").await[0];
    let created = applied.body["plan"]["create"].as_array().unwrap().len();
    assert!(created > 0);
    assert_eq!(record["summary"]["plan"]["create"], created);
    assert_eq!(record["summary"]["snapshot"], applied.body["snapshot"]);

    // tokens and passwords never reach the trail
    let made = app
        .post("/api/v2/tokens")
        .json(json!({"name": "ci", "role": "operator"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let secret = made.body["token"].as_str().unwrap();
    app.put("/api/v2/users/carol/password")
        .json(json!({"password": "another long secret"}))
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    let everything: String =
        sqlx::query_scalar("SELECT string_agg(to_jsonb(a)::text, ' ') FROM audit a")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!everything.contains(secret), "a token in the audit trail");
    assert!(
        !everything.contains("another long secret"),
        "a password in the audit trail"
    );
    assert!(
        !everything.contains("correct horse battery"),
        "a password in the audit trail"
    );

    // filters: actor, object and action; the cursor pages through, newest first
    let by_ci = audit(&app, "?actor=token:ci").await;
    assert!(by_ci.is_empty());
    let on_web = audit(&app, "?kind=deployment&object=web").await;
    assert!(on_web.iter().all(|r| r["object"] == "web"));
    assert!(on_web.len() >= 2, "{on_web:?}");
    let all = audit(&app, "?limit=1000").await;
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let first = audit(&app, "?limit=2").await;
    let after = first[1]["id"].as_i64().unwrap();
    let next = audit(&app, &format!("?limit=2&after={after}")).await;
    assert_eq!(next[0]["id"].as_i64().unwrap(), ids[2]);
    let since = audit(&app, "?since=2999-01-01T00:00:00Z").await;
    assert!(since.is_empty());
}

#[tokio::test]
async fn a_change_that_rolls_back_leaves_no_record() {
    let app = TestApp::new().await;
    fleet(&app).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // refused by the database halfway (the role is bound already), and a missing object
    let again = app
        .post("/api/v2/node_roles")
        .json(json!({"node": "n1.example.com", "role": "test-admin", "deployment": "web"}));
    app.refused(again, StatusCode::CONFLICT, "bind_refused")
        .await;
    let gone = app.delete("/api/v2/deployments/no-such");
    app.refused(gone, StatusCode::NOT_FOUND, "not_found").await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn refused_requests_are_audited_at_most_so_many_a_minute() {
    let refusals = Arc::new(Refusals::new(NonZeroU32::new(3).unwrap()));
    let app = TestApp::with(|state| state.refusals = refusals.clone()).await;
    let viewer = token(&app, "ro", "viewer").await;
    app.post("/api/v2/nodes")
        .token(&viewer)
        .json(json!({"name": "n1.example.com"}))
        .send()
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    for _ in 0..10 {
        app.get("/api/v2/nodes")
            .token("not-a-token")
            .send()
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let refused = audit(&app, "?action=request.refused&limit=100").await;
    assert_eq!(refused.len(), 3, "the quota: {refused:?}");
    let forbidden = refused.last().unwrap();
    assert_eq!(forbidden["actor"], "token:ro");
    assert_eq!(forbidden["role"], "viewer");
    assert_eq!(forbidden["object"], "/api/v2/nodes");
    assert_eq!(forbidden["summary"]["status"], 403);
    assert_eq!(refused[0]["actor"], "anonymous");
    assert_eq!(refusals.left_out(), 8);
}

#[tokio::test]
async fn old_records_go_in_batches_after_the_retention() {
    let app = TestApp::new().await;
    sqlx::query(
        "INSERT INTO audit (at, actor, action, kind)
         SELECT now() - interval '400 days', 'token:admin', 'node.update', 'node'
           FROM generate_series(1, $1)",
    )
    .bind(crowbar::db::audit::EXPIRE_BATCH * 2 + 5)
    .execute(&app.pool)
    .await
    .unwrap();
    app.post("/api/v2/deployments")
        .json(json!({"name": "kept"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let deleted = crowbar::db::audit::expire(&app.pool, crowbar::events::DEFAULT_AUDIT_RETENTION)
        .await
        .unwrap();
    assert_eq!(deleted, (crowbar::db::audit::EXPIRE_BATCH * 2 + 5) as u64);
    let left = audit(&app, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["object"], "kept");
}

#[test]
fn node_tokens_may_only_read_and_update() {
    for (method, route, action) in policy::change_routes() {
        assert_eq!(
            action.node_may(),
            action == Action::NodeUpdate,
            "{method} {route}"
        );
    }
}
