//! A whole deployment driven over HTTP only (plus the annealer): nodes report alive with
//! their own tokens, an admin binds and commits, the annealer converges, `/anneal` says so.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{app::TestApp, world};

#[tokio::test]
async fn a_deployment_converges_over_http() {
    let app = TestApp::new().await;
    let mut tokens = Vec::new();
    for name in ["n1.example.com", "n2.example.com", "n3.example.com"] {
        let reply = app
            .post("/api/v2/nodes")
            .json(json!({ "name": name }))
            .send()
            .await
            .status(StatusCode::CREATED);
        tokens.push((name, reply.body["token"].as_str().unwrap().to_string()));
    }
    // each node reports itself alive with its own token
    for (name, token) in &tokens {
        app.put(&format!("/api/v2/nodes/{name}"))
            .token(token)
            .json(json!({"alive": true}))
            .send()
            .await
            .status(StatusCode::OK);
    }
    app.post("/api/v2/deployments")
        .json(json!({"name": "web", "description": "the web tier"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    for (node, role) in [
        ("n1.example.com", "test-server"),
        ("n2.example.com", "test-client"),
        ("n3.example.com", "test-client-client"),
    ] {
        app.post("/api/v2/node_roles")
            .json(json!({"node": node, "role": role, "deployment": "web"}))
            .send()
            .await
            .status(StatusCode::CREATED);
    }
    // nothing runs while the deployment is proposed
    assert_eq!(world::drive(&app.pool).await, 0);
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "finished");

    let commit = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(commit.body["snapshot"]["seq"], 1);
    let reply = app
        .get("/api/v2/anneal?deployment=web")
        .send()
        .await
        .status(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "scheduled");

    let ran = world::drive(&app.pool).await;
    assert_eq!(ran, 7);
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "finished");
    assert_eq!(reply.body["counts"]["active"], 7);

    let deployment = app
        .get("/api/v2/deployments/web")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(deployment.body["state"], "active");
    let client = app
        .get("/api/v2/nodes/n2.example.com/node_roles/test-client")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(client.body["status"], "active");
    assert_eq!(client.body["run_count"], 1);
    assert_eq!(client.body["reason"], serde_json::Value::Null);
    assert_eq!(
        client.body["wall"],
        json!({"test": {"ran": true, "node": "n2.example.com", "role": "test-client"}})
    );
    let nodes = app.get("/api/v2/nodes").send().await.status(StatusCode::OK);
    assert!(
        nodes
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "active" && n["alive"] == true)
    );
}
