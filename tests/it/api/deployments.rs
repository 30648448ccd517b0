//! `/api/v2/deployments`: create, read, update, delete, propose, commit, snapshots, graph.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use crate::support::{app::TestApp, world};

#[tokio::test]
async fn deployments_are_created_proposed_under_system_or_a_parent() {
    let app = TestApp::new().await;
    let reply = app
        .post("/api/v2/deployments")
        .json(json!({"name": "base", "description": "shared services"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let base = &reply.body;
    assert_eq!(base["name"], "base");
    assert_eq!(base["description"], "shared services");
    assert_eq!(base["parent"], "system");
    assert_eq!(base["state"], "proposed");
    assert_eq!(base["system"], false);
    assert_eq!(base["snapshot"], Value::Null);
    let id = base["id"].as_i64().unwrap();
    assert_eq!(
        reply.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v2/deployments/{id}")
    );
    let web = app
        .post("/api/v2/deployments")
        .json(json!({"name": "web", "parent": "base"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(web.body["parent"], "base");
    assert_eq!(web.body["parent_id"], id);
    let by_id = app
        .post("/api/v2/deployments")
        .json(json!({"name": "db", "parent": id}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(by_id.body["parent"], "base");

    let list = app
        .get("/api/v2/deployments")
        .send()
        .await
        .status(StatusCode::OK);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["system", "base", "web", "db"]);
    let page = app
        .get("/api/v2/deployments?limit=1&offset=1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(page.body[0]["name"], "base");
    let system = app
        .get("/api/v2/deployments/system")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(system.body["system"], true);
    assert_eq!(system.body["parent"], Value::Null);
    app.get(&format!("/api/v2/deployments/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
}

#[tokio::test]
async fn bad_deployments_are_refused_and_leave_nothing() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    for name in ["", "-web", "web tier", "wéb"] {
        app.refused(
            app.post("/api/v2/deployments")
                .json(json!({ "name": name })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        )
        .await;
    }
    app.refused(
        app.post("/api/v2/deployments").json(json!({"name": "web"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    app.refused(
        app.post("/api/v2/deployments")
            .json(json!({"name": "db", "parent": "nope"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.post("/api/v2/deployments")
            .json(json!({"name": "db", "state": "committed"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    for call in [
        app.get("/api/v2/deployments/nope"),
        app.put("/api/v2/deployments/nope")
            .json(json!({"description": "x"})),
        app.delete("/api/v2/deployments/nope"),
        app.put("/api/v2/deployments/nope/commit"),
        app.put("/api/v2/deployments/nope/propose"),
        app.get("/api/v2/deployments/nope/snapshots"),
        app.get("/api/v2/deployments/nope/snapshots/1"),
        app.get("/api/v2/deployments/nope/graph"),
        app.get("/api/v2/deployments/web/snapshots/1"),
    ] {
        app.refused(call, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn descriptions_change_with_put() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    let reply = app
        .put("/api/v2/deployments/web")
        .json(json!({"description": "front ends"}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["description"], "front ends");
    app.refused(
        app.put("/api/v2/deployments/web")
            .json(json!({"name": "renamed"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.refused(
        app.put("/api/v2/deployments/web")
            .json(json!({"description": 7})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

#[tokio::test]
async fn commit_records_a_snapshot_and_propose_reopens() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;

    let reply = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["deployment"]["name"], "web");
    assert_eq!(reply.body["deployment"]["state"], "committed");
    assert_eq!(reply.body["deployment"]["snapshot"], 1);
    assert_eq!(reply.body["recorded"], true);
    assert_eq!(reply.body["snapshot"]["seq"], 1);
    assert_eq!(reply.body["snapshot"]["committed_by"], "token:admin");
    assert_eq!(
        reply.body["snapshot"]["content"]["bindings"][0],
        json!({"node": "n1", "role": "test-server", "data": {}})
    );
    assert_eq!(reply.body["changed"].as_array().unwrap().len(), 2);

    // the same desired state again records nothing new
    let again = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(again.body["recorded"], false);
    assert_eq!(again.body["snapshot"]["seq"], 1);

    let proposed = app
        .put("/api/v2/deployments/web/propose")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(proposed.body["state"], "proposed");
    app.bind("n1", "test-library", "web").await;
    let second = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(second.body["snapshot"]["seq"], 2);

    let snapshots = app
        .get("/api/v2/deployments/web/snapshots")
        .send()
        .await
        .status(StatusCode::OK);
    let seqs: Vec<i64> = snapshots
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1]);
    let first = app
        .get("/api/v2/deployments/web/snapshots/1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(
        first.body["content"]["bindings"].as_array().unwrap().len(),
        1
    );
    assert!(first.body["content_hash"].is_string());
    app.refused(
        app.get("/api/v2/deployments/web/snapshots/3"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // the system deployment is always committed
    app.refused(
        app.put("/api/v2/deployments/system/propose"),
        StatusCode::CONFLICT,
        "system_deployment",
    )
    .await;
}

#[tokio::test]
async fn deleting_deployments() {
    let app = TestApp::new().await;
    app.deployment("base").await;
    app.post("/api/v2/deployments")
        .json(json!({"name": "web", "parent": "base"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.post("/api/v2/nodes")
        .json(json!({"name": "n1", "deployment": "web"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.bind("n1", "test-admin", "web").await;

    let reply = app
        .refused(
            app.delete("/api/v2/deployments/base"),
            StatusCode::CONFLICT,
            "has_child_deployments",
        )
        .await;
    assert_eq!(reply.body["error"]["details"]["children"], json!(["web"]));
    app.refused(
        app.delete("/api/v2/deployments/system"),
        StatusCode::CONFLICT,
        "system_deployment",
    )
    .await;

    app.delete("/api/v2/deployments/web")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    // its noderoles went, its nodes moved to the parent
    let node = app
        .get("/api/v2/nodes/n1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(node.body["deployment"], "base");
    let noderoles = app
        .get("/api/v2/node_roles")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(noderoles.body, json!([]));
    app.delete("/api/v2/deployments/base")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_graph_shows_noderoles_and_edges() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    let server = app.bind("n1", "test-server", "web").await;
    let client = app.bind("n2", "test-client", "web").await;
    let graph = app
        .get("/api/v2/deployments/web/graph")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(graph.body["deployment"], "web");
    let node_roles = graph.body["node_roles"].as_array().unwrap();
    assert_eq!(node_roles.len(), 4);
    for nr in node_roles {
        for field in ["id", "node", "role", "state", "status", "cohort"] {
            assert!(nr.get(field).is_some(), "{field} missing in {nr}");
        }
    }
    let edges = graph.body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3);
    assert!(edges.contains(&json!({"parent": server, "child": client})));

    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    let graph = app
        .get("/api/v2/deployments/web/graph")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(
        graph.body["node_roles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|nr| nr["status"] == "active" && nr["state"] == 0)
    );
}
