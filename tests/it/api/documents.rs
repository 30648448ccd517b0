//! Desired-state documents, plans and recall over HTTP.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{app::TestApp, world};

async fn app_with_nodes() -> TestApp {
    let app = TestApp::new().await;
    for n in ["n1", "n2"] {
        app.alive_node(n).await;
    }
    app.deployment("web").await;
    app
}

fn document(base: serde_json::Value) -> serde_json::Value {
    json!({
        "base": base,
        "roles": {"test-server": {}},
        "bindings": [{"node": "n1", "role": "test-server"},
                     {"node": "n2", "role": "test-client", "data": {"x": 1}}]
    })
}

#[tokio::test]
async fn documents_commit_snapshots_with_a_fast_forward_check() {
    let app = app_with_nodes().await;
    let reply = app
        .post("/api/v2/deployments/web/snapshots")
        .json(document(json!(null)))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(reply.body["snapshot"], 1);
    assert_eq!(reply.body["committed"], true);
    assert!(reply.body["content_hash"].as_str().unwrap().len() == 64);
    assert_eq!(reply.body["plan"]["waves"][0][0]["role"], "test-admin");
    world::drive(&app.pool).await;

    // the same document again: 200, nothing recorded
    let again = app
        .post("/api/v2/deployments/web/snapshots")
        .json(document(json!(1)))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(again.body["changed"], false);

    // a stale base: 409 and nothing changes
    let before = app.fingerprint().await;
    let reply = app
        .refused(
            app.post("/api/v2/deployments/web/snapshots")
                .json(document(json!(null))),
            StatusCode::CONFLICT,
            "stale_base",
        )
        .await;
    assert_eq!(reply.body["error"]["details"]["latest"], 1);
    assert_eq!(app.fingerprint().await, before);

    // unknown fields and bad data are 422 with the error body, and change nothing
    app.refused(
        app.post("/api/v2/deployments/web/snapshots")
            .json(json!({"base": 1, "bindings": [], "surprise": true})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.refused(
        app.post("/api/v2/deployments/web/snapshots").json(json!({
            "base": 1,
            "bindings": [{"node": "n1", "role": "test-server", "data": [1]}]
        })),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_document",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);

    let list = app
        .get("/api/v2/deployments/web/snapshots")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn plans_are_read_only_and_recall_proposes_old_snapshots() {
    let app = app_with_nodes().await;
    app.post("/api/v2/deployments/web/snapshots")
        .json(document(json!(null)))
        .send()
        .await
        .status(StatusCode::CREATED);
    let mut second = document(json!(1));
    second["bindings"].as_array_mut().unwrap().pop();
    app.post("/api/v2/deployments/web/snapshots")
        .json(second)
        .send()
        .await
        .status(StatusCode::CREATED);

    let before = app.fingerprint().await;
    let plan = app
        .post("/api/v2/deployments/web/plan")
        .json(document(json!(2)))
        .send()
        .await
        .status(StatusCode::OK);
    assert!(
        plan.body["create"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "test-client")
    );
    let current = app
        .get("/api/v2/deployments/web/plan")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(current.body["create"].as_array().unwrap().is_empty());
    assert_eq!(app.fingerprint().await, before, "plans change nothing");

    let recalled = app
        .put("/api/v2/deployments/web/recall")
        .json(json!({"snapshot": 1}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(recalled.body["committed"], false);
    let web = app
        .get("/api/v2/deployments/web")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(web.body["state"], "proposed");
    let commit = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(commit.body["snapshot"]["seq"], 3);
    let one = app
        .get("/api/v2/deployments/web/snapshots/1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(commit.body["snapshot"]["content"], one.body["content"]);

    app.refused(
        app.put("/api/v2/deployments/web/recall")
            .json(json!({"snapshot": 99})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
