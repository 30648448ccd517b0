//! `/api/v2/barclamps`, `/api/v2/jigs`, `/api/v2/roles`.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::app::TestApp;

#[tokio::test]
async fn roles_read_by_id_or_name_with_filters() {
    let app = TestApp::new().await;
    let roles = app.get("/api/v2/roles").send().await.status(StatusCode::OK);
    // the shipped barclamps: core's 4 roles, demo's 3, provisioner's 3 and test's 9
    assert_eq!(roles.body.as_array().unwrap().len(), 28);
    let client = app
        .get("/api/v2/roles/test-client")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(client.body["jig"], "test");
    assert_eq!(client.body["barclamp"], "test");
    assert_eq!(client.body["flags"], json!(["implicit"]));
    assert_eq!(
        client.body["requires"],
        json!(["test-server", "test-library"])
    );
    let id = client.body["id"].as_i64().unwrap();
    let by_id = app
        .get(&format!("/api/v2/roles/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(by_id.body["name"], "test-client");
    let page = app
        .get("/api/v2/roles?jig=test&barclamp=test&limit=2&offset=1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 2);
    assert_eq!(page.body[0]["name"], "test-server");
    let none = app
        .get("/api/v2/roles?jig=script&barclamp=test")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(none.body, json!([]));
    app.refused(
        app.get("/api/v2/roles/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.post("/api/v2/roles").json(json!({"name": "x"})),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn barclamps_read_by_id_or_name() {
    let app = TestApp::new().await;
    let list = app
        .get("/api/v2/barclamps")
        .send()
        .await
        .status(StatusCode::OK);
    // by id: parents first (base's parent is provisioner)
    assert_eq!(list.body[0]["name"], "core");
    assert_eq!(list.body[1]["name"], "provisioner");
    assert_eq!(list.body[2]["name"], "base");
    assert_eq!(list.body[3]["name"], "demo");
    assert_eq!(list.body[4]["name"], "test");
    assert!(list.body[4].get("document").is_none());
    let one = app
        .get("/api/v2/barclamps/test")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(one.body["document"]["barclamp"]["name"], "test");
    let id = one.body["id"].as_i64().unwrap();
    app.get(&format!("/api/v2/barclamps/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    app.refused(
        app.get("/api/v2/barclamps/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn jigs_are_read_and_toggled() {
    let app = TestApp::new().await;
    app.node("n1").await;
    let list = app.get("/api/v2/jigs").send().await.status(StatusCode::OK);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "noop",
            "script",
            "ansible",
            "dnsmasq",
            "bmc",
            "os-install",
            "test"
        ]
    );
    let test = app
        .get("/api/v2/jigs/test")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(test.body["active"], true);

    let reply = app
        .put("/api/v2/jigs/test")
        .json(json!({"active": false, "description": "simulation"}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["active"], false);
    assert_eq!(reply.body["description"], "simulation");
    // roles on an inactive jig cannot be bound
    app.refused(
        app.post("/api/v2/node_roles")
            .json(json!({"node": "n1", "role": "test-admin"})),
        StatusCode::CONFLICT,
        "bind_refused",
    )
    .await;
    let id = test.body["id"].as_i64().unwrap();
    let reply = app
        .patch(&format!("/api/v2/jigs/{id}"))
        .json(json!({"active": true}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["active"], true);
    assert_eq!(reply.body["description"], "simulation");
    app.bind("n1", "test-admin", "system").await;

    app.refused(
        app.put("/api/v2/jigs/test").json(json!({"name": "other"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.refused(
        app.put("/api/v2/jigs/test").json(json!({"active": "no"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.refused(
        app.put("/api/v2/jigs/nope").json(json!({"active": false})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.get("/api/v2/jigs/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
