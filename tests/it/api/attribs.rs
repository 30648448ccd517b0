//! `/api/v2/deployment_roles` and attribs on roles, deployments, noderoles and nodes: each
//! value read through its data layers, set where it belongs, and refusals change nothing.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::app::TestApp;

#[tokio::test]
async fn deployment_roles_are_edited_in_the_proposal_and_committed() {
    let app = TestApp::new().await;
    let web = app.deployment("web").await;
    let made = app
        .post("/api/v2/deployment_roles")
        .json(json!({"deployment": "web", "role": "test-slow", "data": {"test": {"delay": 1}}}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let id = made.body["id"].as_i64().unwrap();
    assert_eq!(made.body["deployment"], "web");
    assert_eq!(made.body["deployment_id"], web);
    assert_eq!(made.body["role"], "test-slow");
    assert_eq!(made.body["proposed_data"], json!({"test": {"delay": 1}}));
    assert_eq!(made.body["committed_data"], json!({}));

    let updated = app
        .put(&format!("/api/v2/deployment_roles/{id}"))
        .json(json!({"data": {"test": {"delay": 2}}}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(updated.body["proposed_data"], json!({"test": {"delay": 2}}));

    // listed with filters by name or id
    for query in [
        "deployment=web",
        &format!("deployment={web}"),
        "role=test-slow",
    ] {
        let list = app
            .get(&format!("/api/v2/deployment_roles?{query}"))
            .send()
            .await
            .status(StatusCode::OK);
        assert_eq!(list.body.as_array().unwrap().len(), 1, "{query}");
    }
    let none = app
        .get("/api/v2/deployment_roles?role=test-fails")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(none.body, json!([]));

    // committing makes it current, and the snapshot holds it
    let commit = app
        .put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let shown = app
        .get(&format!("/api/v2/deployment_roles/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(shown.body["committed_data"], json!({"test": {"delay": 2}}));
    let seq = commit.body["snapshot"]["seq"].as_i64().unwrap();
    let snapshot = app
        .get(&format!("/api/v2/deployments/web/snapshots/{seq}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(
        snapshot.body["content"]["roles"]["test-slow"]["data"],
        json!({"test": {"delay": 2}}),
        "{}",
        snapshot.body
    );

    // committed: an edit waits for the next commit, as bindings do
    app.put(&format!("/api/v2/deployment_roles/{id}"))
        .json(json!({"data": {"test": {"delay": 3}}}))
        .send()
        .await
        .status(StatusCode::OK);
    let pending = app
        .get(&format!("/api/v2/deployment_roles/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(pending.body["proposed_data"], json!({"test": {"delay": 3}}));
    assert_eq!(
        pending.body["committed_data"],
        json!({"test": {"delay": 2}})
    );
}

#[tokio::test]
async fn deployment_role_requests_that_cannot_be_done_change_nothing() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    app.post("/api/v2/deployment_roles")
        .json(json!({"deployment": "web", "role": "test-slow"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let cases = [
        (
            app.post("/api/v2/deployment_roles")
                .json(json!({"deployment": "web", "role": "test-slow"})),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            app.post("/api/v2/deployment_roles")
                .json(json!({"deployment": "nope", "role": "test-slow"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.post("/api/v2/deployment_roles")
                .json(json!({"deployment": "web", "role": "no-such-role"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.post("/api/v2/deployment_roles")
                .json(json!({"deployment": "web", "role": "test-fails", "data": [1]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_data",
        ),
        (
            app.post("/api/v2/deployment_roles")
                .json(json!({"deployment": "web"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            app.post("/api/v2/deployment_roles")
                .raw("{", Some("application/json")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            app.put("/api/v2/deployment_roles/999999")
                .json(json!({"data": {}})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/deployment_roles/999999"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/deployment_roles?limit=0"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ];
    for (call, status, code) in cases {
        app.refused(call, status, code).await;
    }
}

#[tokio::test]
async fn attribs_read_through_their_layers() {
    let app = TestApp::new().await;
    let defs = app
        .get("/api/v2/attribs?role=test-slow")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(defs.body.as_array().unwrap().len(), 1);
    assert_eq!(defs.body[0]["name"], "test-slow-delay");
    assert_eq!(defs.body[0]["map"], "test/delay");
    assert_eq!(defs.body[0]["default"], 5);
    assert_eq!(defs.body[0]["barclamp"], "test");
    let all = app
        .get("/api/v2/attribs")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(all.body.as_array().unwrap().len() >= 2);
    let by_id = defs.body[0]["id"].as_i64().unwrap();
    app.get(&format!("/api/v2/attribs/{by_id}"))
        .send()
        .await
        .status(StatusCode::OK);

    // the role: its template
    let role = app
        .get("/api/v2/roles/test-slow/attribs/test-slow-delay")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(role.body["value"], 5);
    let role_all = app
        .get("/api/v2/roles/test-slow/attribs")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(role_all.body.as_array().unwrap().len(), 1);

    // a deployment: setting it adds the role to the proposal; committed value unchanged
    app.deployment("web").await;
    let set = app
        .put("/api/v2/deployments/web/attribs/test-slow-delay")
        .json(json!({"value": 2}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(set.body["value"], 5);
    assert_eq!(set.body["proposed"], 2);
    let listed = app
        .get("/api/v2/deployment_roles?deployment=web")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(
        listed.body[0]["proposed_data"],
        json!({"test": {"delay": 2}})
    );

    // a noderole: its own data over the deployment's
    app.node("n1").await;
    let nr = app.bind("n1", "test-slow", "web").await;
    let path = format!("/api/v2/node_roles/{nr}/attribs/test-slow-delay");
    let before = app.get(&path).send().await.status(StatusCode::OK);
    assert_eq!(before.body["proposed"], 2);
    let set = app
        .put(&path)
        .json(json!({"value": 0.01}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(set.body["proposed"], 0.01);
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let after = app
        .get(&format!("/api/v2/node_roles/{nr}/attribs"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(after.body[0]["attrib"], "test-slow-delay");
    assert_eq!(after.body[0]["value"], 0.01);
    let deployment = app
        .get("/api/v2/deployments/web/attribs")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(deployment.body[0]["value"], 2);

    // committed: the noderole's data is frozen
    app.refused(
        app.put(&path).json(json!({"value": 3})),
        StatusCode::CONFLICT,
        "not_proposed",
    )
    .await;
    let pending = app
        .put("/api/v2/deployments/web/attribs/test-slow-delay")
        .json(json!({"value": 3}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(pending.body["value"], 2);
    assert_eq!(pending.body["proposed"], 3);
}

#[tokio::test]
async fn node_attribs_are_discovered_facts_under_hints() {
    let app = TestApp::new().await;
    let (id, node_token) = app.node("n1").await;
    sqlx::query("UPDATE nodes SET discovery = '{\"test\": {\"delay\": 7}}' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let path = "/api/v2/nodes/n1/attribs/test-slow-delay";
    let found = app.get(path).send().await.status(StatusCode::OK);
    assert_eq!(found.body["value"], 7);
    let hinted = app
        .put(path)
        .json(json!({"value": 1}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(hinted.body["value"], 1);
    let hints: serde_json::Value = sqlx::query_scalar("SELECT hints FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(hints, json!({"test": {"delay": 1}}));
    let all = app
        .get(&format!("/api/v2/nodes/{id}/attribs"))
        .send()
        .await
        .status(StatusCode::OK);
    assert!(
        all.body
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["attrib"] == "test-slow-delay" && a["value"] == 1)
    );
    // the history says who set it
    let history = app
        .get("/api/v2/nodes/n1/events")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(history.body[0]["type"], "node.updated");
    assert!(
        history.body[0]["reason"]
            .as_str()
            .unwrap()
            .contains("test-slow-delay")
    );
    // not the node's own business
    app.refused(
        app.put(path).token(&node_token).json(json!({"value": 2})),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn attrib_requests_that_cannot_be_done_change_nothing() {
    let app = TestApp::new().await;
    app.node("n1").await;
    app.deployment("web").await;
    let nr = app.bind("n1", "test-server", "web").await;
    let cases = [
        (
            app.get("/api/v2/attribs/nope"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/nodes/n9/attribs"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/nodes/n1/attribs/nope"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/roles/nope/attribs"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/deployments/nope/attribs"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        // the attrib belongs to a role the holder does not have
        (
            app.get("/api/v2/deployments/web/attribs/test-slow-delay"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get(&format!("/api/v2/node_roles/{nr}/attribs/test-slow-delay")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.put(&format!("/api/v2/node_roles/{nr}/attribs/test-slow-delay"))
                .json(json!({"value": 1})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.get("/api/v2/node_roles/999999/attribs"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.put("/api/v2/nodes/n1/attribs/test-slow-delay")
                .json(json!({"val": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            app.put("/api/v2/nodes/n1/attribs/test-slow-delay")
                .raw("{\"value\": ", Some("application/json")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        // roles come from barclamps
        (
            app.put("/api/v2/roles/test-slow/attribs/test-slow-delay")
                .json(json!({"value": 1})),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (call, status, code) in cases {
        app.refused(call, status, code).await;
    }
}
