//! `/api/v2/node_roles`: binding, listing, data, retry, propose, commit and deletion.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use crate::support::{app::TestApp, world};

#[tokio::test]
async fn binding_returns_the_noderole_and_the_parents_it_created() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;
    let reply = app
        .post("/api/v2/node_roles")
        .json(json!({"node": "n2", "role": "test-client", "deployment": "web", "data": {"x": 1}}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let nr = &reply.body;
    assert_eq!(nr["node"], "n2");
    assert_eq!(nr["role"], "test-client");
    assert_eq!(nr["deployment"], "web");
    assert_eq!(nr["state"], 4);
    assert_eq!(nr["status"], "proposed");
    assert_eq!(nr["reason"]["code"], "deployment_proposed");
    assert_eq!(nr["cohort"], 2);
    let created: Vec<&str> = nr["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(created, ["test-library"]);
    assert_eq!(nr["created"][0]["reason"]["code"], "deployment_proposed");
    let id = nr["id"].as_i64().unwrap();
    assert_eq!(
        reply.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v2/node_roles/{id}")
    );

    let detail = app
        .get(&format!("/api/v2/node_roles/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(detail.body["data"], json!({"x": 1}));
    assert_eq!(detail.body["wall"], json!({}));
    assert_eq!(detail.body["parents"].as_array().unwrap().len(), 2);
    assert_eq!(detail.body["children"], json!([]));
    assert_eq!(detail.body["reason"]["code"], "deployment_proposed");

    // the node's deployment is the default; roles and nodes may be given by id
    let role_id = sqlx::query_scalar::<_, i64>("SELECT id FROM roles WHERE name = 'test-admin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let n2 = app.get("/api/v2/nodes/n2").send().await.body["id"].clone();
    let reply = app
        .post("/api/v2/node_roles")
        .json(json!({"node": n2, "role": role_id}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(reply.body["deployment"], "system");
    assert_eq!(reply.body["role"], "test-admin");
    assert_eq!(reply.body["created"], json!([]));
}

#[tokio::test]
async fn refused_bindings_leave_no_rows() {
    let app = TestApp::new().await;
    app.node("n1").await;
    app.deployment("web").await;
    app.bind("n1", "test-admin", "web").await;
    let reply = app
        .refused(
            app.post("/api/v2/node_roles")
                .json(json!({"node": "n1", "role": "test-admin", "deployment": "web"})),
            StatusCode::CONFLICT,
            "bind_refused",
        )
        .await;
    assert!(reply.message().contains("already bound"), "{}", reply.body);
    for (body, status, code) in [
        (
            json!({"node": "n1", "role": "nope"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"node": "nope", "role": "test-server"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"node": "n1", "role": "test-server", "deployment": "nope"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"node": "n1", "role": "test-server", "data": [1, 2]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_data",
        ),
        (
            json!({"node": "n1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"node": "n1", "role": "test-server", "state": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        app.refused(app.post("/api/v2/node_roles").json(body), status, code)
            .await;
    }
    // an inactive jig refuses the role and every parent it would have created
    sqlx::query("UPDATE jigs SET active = false WHERE name = 'test'")
        .execute(&app.pool)
        .await
        .unwrap();
    let reply = app
        .refused(
            app.post("/api/v2/node_roles")
                .json(json!({"node": "n1", "role": "test-client", "deployment": "web"})),
            StatusCode::CONFLICT,
            "bind_refused",
        )
        .await;
    assert!(reply.message().contains("inactive"), "{}", reply.body);
}

#[tokio::test]
async fn noderoles_list_with_filters() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;
    app.bind("n2", "test-admin", "system").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let pairs = |reply: crate::support::app::Reply| -> Vec<(String, String)> {
        reply
            .status(StatusCode::OK)
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|nr| {
                (
                    nr["node"].as_str().unwrap().to_string(),
                    nr["role"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let all = pairs(app.get("/api/v2/node_roles").send().await);
    assert_eq!(all.len(), 3);
    let p = |n: &str, r: &str| (n.to_string(), r.to_string());
    assert_eq!(
        pairs(app.get("/api/v2/node_roles?state=todo").send().await),
        [p("n1", "test-admin")]
    );
    assert_eq!(
        pairs(app.get("/api/v2/node_roles?state=3").send().await),
        [p("n1", "test-server")]
    );
    assert_eq!(
        pairs(app.get("/api/v2/node_roles?state=proposed").send().await),
        [p("n2", "test-admin")]
    );
    assert_eq!(
        pairs(
            app.get("/api/v2/node_roles?deployment=web&role=test-server")
                .send()
                .await
        ),
        [p("n1", "test-server")]
    );
    assert_eq!(
        pairs(app.get("/api/v2/node_roles?node=n2").send().await),
        [p("n2", "test-admin")]
    );
    assert_eq!(
        pairs(
            app.get("/api/v2/node_roles?role=test-admin&limit=1&offset=1")
                .send()
                .await
        ),
        [p("n2", "test-admin")]
    );
    let first = app
        .get("/api/v2/node_roles?role=test-admin&limit=1")
        .send()
        .await;
    let after = first.body[0]["id"].as_i64().unwrap();
    assert_eq!(
        pairs(
            app.get(&format!("/api/v2/node_roles?role=test-admin&after={after}"))
                .send()
                .await
        ),
        [p("n2", "test-admin")]
    );
    // every row carries its reason
    let list = app.get("/api/v2/node_roles").send().await;
    for nr in list.body.as_array().unwrap() {
        assert!(nr["reason"]["code"].is_string(), "{nr}");
    }
    let blocked = app.get("/api/v2/node_roles?state=blocked").send().await;
    assert_eq!(blocked.body[0]["reason"]["code"], "waiting_on_parent");
    assert_eq!(blocked.body[0]["reason"]["parent"]["role"], "test-admin");
}

#[tokio::test]
async fn data_changes_only_while_proposed() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    let id = app.bind("n1", "test-admin", "web").await;
    let path = format!("/api/v2/node_roles/{id}");
    let reply = app
        .put(&path)
        .json(json!({"data": {"test": {"delay": 0}}}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["data"], json!({"test": {"delay": 0}}));
    app.refused(
        app.put(&path).json(json!({"data": "text"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_data",
    )
    .await;
    app.refused(
        app.put(&path).json(json!({})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    app.refused(
        app.put(&path).json(json!({"data": {"x": 1}})),
        StatusCode::CONFLICT,
        "not_proposed",
    )
    .await;
    for call in [
        app.get("/api/v2/node_roles/999999"),
        app.get("/api/v2/node_roles/not-an-id"),
        app.put("/api/v2/node_roles/999999")
            .json(json!({"data": {}})),
        app.delete("/api/v2/node_roles/999999"),
        app.put("/api/v2/node_roles/999999/retry"),
        app.put("/api/v2/node_roles/999999/propose"),
        app.put("/api/v2/node_roles/999999/commit"),
    ] {
        app.refused(call, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn retry_needs_active_parents_and_a_committed_noderole() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    let server = app.bind("n1", "test-server", "web").await;
    app.refused(
        app.put(&format!("/api/v2/node_roles/{server}/retry")),
        StatusCode::CONFLICT,
        "not_committed",
    )
    .await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    // its parent (test-admin) has not run yet
    let reply = app
        .refused(
            app.put(&format!("/api/v2/node_roles/{server}/retry")),
            StatusCode::CONFLICT,
            "parent_not_active",
        )
        .await;
    assert!(reply.body["error"]["details"]["parents"].is_array());
    world::drive(&app.pool).await;
    let reply = app
        .put(&format!("/api/v2/node_roles/{server}/retry"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "todo");
    assert_eq!(reply.body["state"], 1);
    assert!(reply.body["reason"].is_object());
    assert_eq!(world::drive(&app.pool).await, 1);
}

#[tokio::test]
async fn a_failed_noderole_is_retried_over_http() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    let fails = app.bind("n1", "test-fails", "web").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    let nr = app
        .get(&format!("/api/v2/node_roles/{fails}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(nr.body["status"], "error");
    assert_eq!(nr.body["state"], -1);
    assert_eq!(nr.body["reason"]["code"], "failed");
    assert_eq!(nr.body["node_error"], true);
    let reply = app
        .put(&format!("/api/v2/node_roles/{fails}/retry"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "todo");
}

#[tokio::test]
async fn single_noderoles_are_proposed_and_committed() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    let server = app.bind("n1", "test-server", "web").await;
    let parent = world::id_of(&app.pool, "n1", "test-admin").await;

    let reply = app
        .put(&format!("/api/v2/node_roles/{parent}/commit"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "todo");
    // the deployment is still proposed: that is why it does not run
    assert_eq!(reply.body["reason"]["code"], "deployment_proposed");
    app.refused(
        app.put(&format!("/api/v2/node_roles/{parent}/commit")),
        StatusCode::CONFLICT,
        "not_proposed",
    )
    .await;
    let reply = app
        .put(&format!("/api/v2/node_roles/{server}/commit"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "blocked");

    let reply = app
        .put(&format!("/api/v2/node_roles/{parent}/propose"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "proposed");
    assert_eq!(reply.body["state"], 4);
    // proposing again is harmless
    app.put(&format!("/api/v2/node_roles/{parent}/propose"))
        .send()
        .await
        .status(StatusCode::OK);

    // a running noderole cannot be proposed
    app.put(&format!("/api/v2/node_roles/{parent}/commit"))
        .send()
        .await
        .status(StatusCode::OK);
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let config = world::queue_config(10);
    crowbar::annealer::pass(&app.pool, &config, None)
        .await
        .unwrap();
    crowbar::runner::claim(&app.pool, "w", None, &config, 10)
        .await
        .unwrap();
    let reply = app
        .refused(
            app.put(&format!("/api/v2/node_roles/{parent}/propose")),
            StatusCode::CONFLICT,
            "busy",
        )
        .await;
    assert_eq!(reply.body["error"]["details"]["busy"], json!([parent]));
    let running = app
        .get(&format!("/api/v2/node_roles/{parent}"))
        .send()
        .await;
    assert_eq!(running.body["status"], "transition");
    assert_eq!(running.body["reason"]["code"], "running");
}

#[tokio::test]
async fn deleting_noderoles_with_children_elsewhere_is_refused() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    let server = app.bind("n1", "test-server", "web").await;
    let client = app.bind("n2", "test-client", "web").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;

    let reply = app
        .refused(
            app.delete(&format!("/api/v2/node_roles/{server}")),
            StatusCode::CONFLICT,
            "has_children",
        )
        .await;
    assert_eq!(reply.body["error"]["details"]["children"][0]["id"], client);
    assert_eq!(reply.body["error"]["details"]["children"][0]["node"], "n2");

    // a leaf goes; a parent whose descendants are on its own node takes them along
    let reply = app
        .delete(&format!("/api/v2/node_roles/{client}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["deleted"], json!([client]));
    let admin = world::id_of(&app.pool, "n1", "test-admin").await;
    let reply = app
        .delete(&format!("/api/v2/node_roles/{admin}"))
        .send()
        .await
        .status(StatusCode::OK);
    let mut expected = vec![admin, server];
    expected.sort_unstable();
    assert_eq!(reply.body["deleted"], json!(expected));
    app.refused(
        app.get(&format!("/api/v2/node_roles/{server}")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let library = world::id_of(&app.pool, "n2", "test-library").await;
    assert_ne!(
        app.get(&format!("/api/v2/node_roles/{library}"))
            .send()
            .await
            .body,
        Value::Null
    );
}
