//! The error body for everything that is not a handler's own refusal: unknown routes, wrong
//! methods, bodies and query strings that do not parse, oversized bodies, internal errors.

use axum::http::{StatusCode, header};
use serde_json::json;

use crate::support::app::TestApp;

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::new().await;
    app.get("/api/v2/nope")
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    app.get("/nope")
        .no_token()
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v2/nodes/n1/nope")
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let reply = app
        .refused(
            app.delete("/api/v2/anneal"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    assert!(reply.headers.contains_key(header::ALLOW), "{reply:?}");
    app.refused(
        app.post("/api/v2/nodes/n1").json(json!({"name": "x"})),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    app.refused(
        app.post("/healthz").no_token(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn bodies_that_do_not_parse_get_the_error_body() {
    let app = TestApp::new().await;
    app.node("n1").await;
    // not JSON
    let reply = app
        .refused(
            app.post("/api/v2/nodes")
                .raw("{\"name\": ", Some("application/json")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
    assert!(reply.message().contains("JSON"), "{}", reply.body);
    // JSON of the wrong shape
    for body in [
        json!({"name": 42}),
        json!({"name": "n2", "admin": "yes"}),
        json!({"name": "n2", "color": "blue"}),
        json!({"address": "192.0.2.1"}),
        json!(["n2"]),
    ] {
        app.refused(
            app.post("/api/v2/nodes").json(body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    }
    // an array where an object belongs, even where every field may be left out (serde
    // would fill the struct from it field by field)
    app.deployment("web").await;
    for (path, body) in [
        ("/api/v2/deployments/web/plan", json!([])),
        ("/api/v2/deployments/web/plan", json!([1, []])),
        ("/api/v2/nodes", json!(["n2", false])),
    ] {
        app.refused(
            app.post(path).json(body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    }
    let reply = app
        .refused(
            app.post("/api/v2/deployments/web/plan").json(json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    assert!(reply.message().contains("JSON object"), "{}", reply.body);
    let reply = app
        .refused(
            app.put("/api/v2/nodes/n1").json(json!({"alive": "yes"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    assert!(reply.message().contains("alive"), "{}", reply.body);
    let reply = app
        .refused(
            app.put("/api/v2/nodes/n1").json(json!({"flavour": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    assert!(reply.message().contains("unknown field"), "{}", reply.body);
    // no or the wrong content type
    app.refused(
        app.post("/api/v2/nodes").raw("{\"name\": \"n2\"}", None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .raw("name=n2", Some("application/x-www-form-urlencoded")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // an empty body where one is needed
    app.refused(
        app.post("/api/v2/nodes").raw("", Some("application/json")),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::new().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n1", "description": huge})),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // just under the limit is fine
    let big = "x".repeat(1000 * 1000);
    app.post("/api/v2/nodes")
        .json(json!({"name": "n1", "description": big}))
        .send()
        .await
        .status(StatusCode::CREATED);
}

#[tokio::test]
async fn query_strings_and_paths_that_do_not_parse_are_400() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    for path in [
        "/api/v2/nodes?limit=abc",
        "/api/v2/nodes?limit=0",
        "/api/v2/nodes?limit=1001",
        "/api/v2/nodes?offset=-1",
        "/api/v2/nodes?alive=maybe",
        "/api/v2/nodes?colour=blue",
        "/api/v2/node_roles?state=done",
        "/api/v2/deployments?limit=",
        "/api/v2/anneal?deployment=web&x=1",
    ] {
        app.refused(app.get(path), StatusCode::BAD_REQUEST, "invalid_query")
            .await;
    }
    app.refused(
        app.get("/api/v2/deployments/web/snapshots/first"),
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    // in range
    app.get("/api/v2/nodes?limit=1000&offset=5")
        .send()
        .await
        .status(StatusCode::OK);
}

#[tokio::test]
async fn internal_errors_say_nothing_internal() {
    let app = TestApp::new().await;
    app.pool.close().await;
    let reply = app
        .get("/api/v2/nodes")
        .send()
        .await
        .error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(
        !reply.message().to_lowercase().contains("pool"),
        "{}",
        reply.body
    );
    assert!(reply.body["error"].get("details").is_none());
}
