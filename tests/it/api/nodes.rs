//! `/api/v2/nodes` and its sub-resources.

use axum::http::{StatusCode, header};
use crowbar::domain::state::NodeRoleState;
use serde_json::json;

use crate::support::{app::TestApp, world};

#[tokio::test]
async fn creating_a_node_returns_its_token_once() {
    let app = TestApp::new().await;
    let web = app.deployment("web").await;
    let reply = app
        .post("/api/v2/nodes")
        .json(json!({
            "name": "n1.example.com", "address": "192.0.2.10", "admin": true,
            "description": "rack 1", "deployment": web, "bootenv": "local",
            "mac": "52:54:00:12:34:56"
        }))
        .send()
        .await
        .status(StatusCode::CREATED);
    let node = &reply.body;
    assert_eq!(node["name"], "n1.example.com");
    assert_eq!(node["address"], "192.0.2.10");
    assert_eq!(node["admin"], true);
    assert_eq!(node["alive"], false);
    assert_eq!(node["available"], true);
    assert_eq!(node["bootenv"], "local");
    assert_eq!(node["deployment"], "web");
    assert_eq!(node["deployment_id"], web);
    assert_eq!(node["description"], "rack 1");
    assert_eq!(node["state"], "active");
    assert!(node["created_at"].is_string() && node["updated_at"].is_string());
    let token = node["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(node.get("token_hash").is_none());
    let id = node["id"].as_i64().unwrap();
    assert_eq!(
        reply.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v2/nodes/{id}")
    );

    // shown once: reading the node never shows it
    let shown = app
        .get("/api/v2/nodes/n1.example.com")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(shown.body.get("token").is_none());
    assert_eq!(shown.body["id"], id);
    let by_id = app
        .get(&format!("/api/v2/nodes/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(by_id.body["name"], "n1.example.com");

    // defaults
    let reply = app
        .post("/api/v2/nodes")
        .json(json!({"name": "n2"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(reply.body["deployment"], "system");
    assert_eq!(reply.body["bootenv"], "sledgehammer");
    assert_eq!(reply.body["address"], serde_json::Value::Null);
}

#[tokio::test]
async fn bad_nodes_are_refused_and_leave_nothing() {
    let app = TestApp::new().await;
    app.node("n1").await;
    for name in ["N1", "bad_name", "-n", "", "a..b"] {
        app.refused(
            app.post("/api/v2/nodes").json(json!({ "name": name })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        )
        .await;
    }
    app.refused(
        app.post("/api/v2/nodes").json(json!({"name": "n1"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2", "address": "not-an-ip"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2", "mac": "zz:zz"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2", "bootenv": "two words"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_bootenv",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2", "deployment": "nope"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2", "deployment": true})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

#[tokio::test]
async fn nodes_list_with_filters_and_pages() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    app.alive_node("n1").await;
    app.node("n2").await;
    app.post("/api/v2/nodes")
        .json(json!({"name": "n3", "deployment": "web", "admin": true}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.put("/api/v2/nodes/n2")
        .json(json!({"available": false}))
        .send()
        .await
        .status(StatusCode::OK);
    let names = |reply: crate::support::app::Reply| names_in(&reply.status(StatusCode::OK).body);
    assert_eq!(
        names(app.get("/api/v2/nodes").send().await),
        ["n1", "n2", "n3"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?alive=true").send().await),
        ["n1"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?available=false").send().await),
        ["n2"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?admin=true").send().await),
        ["n3"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?deployment=web").send().await),
        ["n3"]
    );
    assert_eq!(
        names(
            app.get("/api/v2/nodes?deployment=system&alive=false")
                .send()
                .await
        ),
        ["n2"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?limit=2").send().await),
        ["n1", "n2"]
    );
    assert_eq!(
        names(app.get("/api/v2/nodes?limit=2&offset=2").send().await),
        ["n3"]
    );
    // the cursor: the page after the last id seen, filters still applied
    let first = app.get("/api/v2/nodes?limit=2").send().await;
    let last = first.body[1]["id"].as_i64().unwrap();
    assert_eq!(
        names(
            app.get(&format!("/api/v2/nodes?limit=2&after={last}"))
                .send()
                .await
        ),
        ["n3"]
    );
    let n1 = first.body[0]["id"].as_i64().unwrap();
    assert_eq!(
        names(
            app.get(&format!("/api/v2/nodes?deployment=system&after={n1}"))
                .send()
                .await
        ),
        ["n2"]
    );
    assert!(names(app.get("/api/v2/nodes?deployment=nope").send().await).is_empty());
}

#[tokio::test]
async fn unknown_nodes_are_404_everywhere() {
    let app = TestApp::new().await;
    for call in [
        app.get("/api/v2/nodes/nope"),
        app.get("/api/v2/nodes/999"),
        app.put("/api/v2/nodes/nope").json(json!({"alive": true})),
        app.patch("/api/v2/nodes/nope").json(json!({"alive": true})),
        app.delete("/api/v2/nodes/nope"),
        app.get("/api/v2/nodes/nope/node_roles"),
        app.get("/api/v2/nodes/nope/node_roles/test-admin"),
        app.get("/api/v2/nodes/nope/events"),
        app.put("/api/v2/nodes/nope/commit"),
        app.put("/api/v2/nodes/nope/propose"),
    ] {
        app.refused(call, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn updating_a_node_changes_only_what_is_given_and_records_why() {
    let app = TestApp::new().await;
    app.deployment("web").await;
    app.post("/api/v2/nodes")
        .json(json!({"name": "n1", "address": "192.0.2.1"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let reply = app
        .put("/api/v2/nodes/n1")
        .json(json!({
            "alive": true, "available": false, "bootenv": "local", "description": "db",
            "deployment": "web", "reason": "maintenance"
        }))
        .send()
        .await
        .status(StatusCode::OK);
    let node = &reply.body;
    assert_eq!(node["alive"], true);
    assert_eq!(node["available"], false);
    assert_eq!(node["bootenv"], "local");
    assert_eq!(node["description"], "db");
    assert_eq!(node["deployment"], "web");
    assert_eq!(node["address"], "192.0.2.1");

    // PATCH is the same partial update; null clears the address
    let reply = app
        .patch("/api/v2/nodes/n1")
        .json(json!({"address": null}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["address"], serde_json::Value::Null);
    assert_eq!(reply.body["description"], "db");
    let reply = app
        .put("/api/v2/nodes/n1")
        .json(json!({}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["bootenv"], "local");

    let history = app
        .get("/api/v2/nodes/n1/events")
        .send()
        .await
        .status(StatusCode::OK);
    let events = history.body.as_array().unwrap();
    // newest first: the address change, the big update, the creation
    assert_eq!(events.len(), 3, "{}", history.body);
    assert_eq!(events[0]["type"], "node.updated");
    assert_eq!(events[1]["reason"], "maintenance");
    assert_eq!(events[1]["data"]["changes"]["available"]["to"], false);
    assert_eq!(
        events[1]["data"]["changes"]["bootenv"]["from"],
        "sledgehammer"
    );
    assert_eq!(events[2]["type"], "node.created");
    let page = app
        .get("/api/v2/nodes/n1/events?limit=1&offset=1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["reason"], "maintenance");

    // refusals change nothing
    app.refused(
        app.put("/api/v2/nodes/n1")
            .json(json!({"description": "x", "address": "bogus"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    app.refused(
        app.put("/api/v2/nodes/n1")
            .json(json!({"description": "x", "deployment": "nope"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.put("/api/v2/nodes/n1")
            .json(json!({"description": "x", "bootenv": ""})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_bootenv",
    )
    .await;
}

#[tokio::test]
async fn deleting_nodes() {
    let app = TestApp::new().await;
    app.post("/api/v2/nodes")
        .json(json!({"name": "admin1", "admin": true}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.node("n1").await;
    app.bind("n1", "test-admin", "system").await;
    let reply = app
        .delete("/api/v2/nodes/n1")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    assert_eq!(reply.body, serde_json::Value::Null);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    app.refused(
        app.get("/api/v2/nodes/n1"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.delete("/api/v2/nodes/n1"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // never the last admin node
    app.refused(
        app.delete("/api/v2/nodes/admin1"),
        StatusCode::CONFLICT,
        "last_admin_node",
    )
    .await;
}

#[tokio::test]
async fn a_nodes_noderoles_carry_state_status_and_reason() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.deployment("web").await;
    let server = app.bind("n1", "test-server", "web").await;
    let list = app
        .get("/api/v2/nodes/n1/node_roles")
        .send()
        .await
        .status(StatusCode::OK);
    let roles: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|nr| nr["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["test-admin", "test-server"]);
    for nr in list.body.as_array().unwrap() {
        assert_eq!(nr["state"], 4);
        assert_eq!(nr["status"], "proposed");
        assert_eq!(nr["reason"]["code"], "deployment_proposed");
        assert_eq!(nr["node"], "n1");
        assert_eq!(nr["deployment"], "web");
        for field in [
            "node_id",
            "role_id",
            "deployment_id",
            "cohort",
            "run_count",
            "runlog",
            "available",
            "node_error",
            "created_at",
            "updated_at",
        ] {
            assert!(nr.get(field).is_some(), "{field} missing in {nr}");
        }
    }
    let one = app
        .get("/api/v2/nodes/n1/node_roles/test-server")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(one.body["id"], server);
    assert!(one.body["data"].is_object());
    assert_eq!(one.body["parents"].as_array().unwrap().len(), 1);
    app.refused(
        app.get("/api/v2/nodes/n1/node_roles/test-client"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // converged: the reason is null
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    let list = app
        .get("/api/v2/nodes/n1/node_roles?limit=1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["status"], "active");
    assert_eq!(list.body[0]["state"], 0);
    assert_eq!(list.body[0]["reason"], serde_json::Value::Null);
}

#[tokio::test]
async fn committing_and_proposing_a_node() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;
    app.bind("n2", "test-admin", "web").await;
    // the deployment stays proposed; committing n1 commits n1's noderoles only
    let reply = app
        .put("/api/v2/nodes/n1/commit")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["node"]["name"], "n1");
    assert_eq!(reply.body["changed"].as_array().unwrap().len(), 2);
    assert_eq!(reply.body["node"]["state"], "todo");
    assert_eq!(
        world::state(&app.pool, "n2", "test-admin").await,
        crowbar::domain::state::NodeRoleState::Proposed
    );
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;

    let reply = app
        .put("/api/v2/nodes/n1/propose")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["node"]["state"], "proposed");
    assert_eq!(reply.body["changed"].as_array().unwrap().len(), 2);

    // a node that is running something cannot be proposed
    app.put("/api/v2/nodes/n1/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let config = world::queue_config(10);
    crowbar::annealer::pass(&app.pool, &config, None)
        .await
        .unwrap();
    let claimed = crowbar::runner::claim(&app.pool, "w", None, &config, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let reply = app
        .refused(
            app.put("/api/v2/nodes/n1/propose"),
            StatusCode::CONFLICT,
            "busy",
        )
        .await;
    assert_eq!(
        reply.body["error"]["details"]["busy"][0],
        claimed[0].noderole_id
    );
}

#[tokio::test]
async fn redeploying_a_node_runs_everything_on_it_again() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;
    let destructive = app.bind("n1", "test-destructive", "web").await;
    app.bind("n2", "test-client", "web").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    assert!(
        world::states(&app.pool)
            .await
            .iter()
            .all(|s| s.2 == NodeRoleState::Active)
    );
    let first_runs = world::run_history(&app.pool).await.len();

    let reply = app
        .put("/api/v2/nodes/n1/redeploy")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["node"]["name"], "n1");
    let on_n1: Vec<i64> = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN nodes n ON n.id = nr.node_id WHERE n.name = 'n1' ORDER BY nr.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut changed: Vec<i64> = serde_json::from_value(reply.body["changed"].clone()).unwrap();
    changed.sort_unstable();
    assert_eq!(changed, on_n1, "every noderole on n1 and nothing else");
    // n2's client stays ACTIVE meanwhile
    assert_eq!(
        world::state(&app.pool, "n2", "test-client").await,
        NodeRoleState::Active
    );
    world::drive(&app.pool).await;
    assert!(
        world::states(&app.pool)
            .await
            .iter()
            .all(|s| s.2 == NodeRoleState::Active)
    );
    // each ran again, and the destructive role ran its jig again instead of skipping it
    let history = world::run_history(&app.pool).await;
    assert!(history.len() >= first_runs + on_n1.len(), "{history:?}");
    let destructive_outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM run_records WHERE noderole_id = $1 ORDER BY id")
            .bind(destructive)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(destructive_outcomes, ["succeeded", "succeeded"]);
    let node_history = app
        .get("/api/v2/nodes/n1/events")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(
        node_history
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "node.redeployed")
    );
    app.refused(
        app.put("/api/v2/nodes/n9/redeploy"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn nodes_filter_by_name_prefix() {
    let app = TestApp::new().await;
    for name in [
        "rack12-a.example.com",
        "rack12-b.example.com",
        "rack120.example.com",
        "rack13-a.example.com",
    ] {
        app.node(name).await;
    }
    let names = |reply: &crate::support::app::Reply| names_in(&reply.body);
    let reply = app
        .get("/api/v2/nodes?q=rack12-")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(
        names(&reply),
        ["rack12-a.example.com", "rack12-b.example.com"]
    );
    let reply = app
        .get("/api/v2/nodes?q=rack12")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(names(&reply).len(), 3);
    let reply = app
        .get("/api/v2/nodes?q=rack12-&limit=1")
        .send()
        .await
        .status(StatusCode::OK);
    let first = reply.body[0]["id"].as_i64().unwrap();
    let reply = app
        .get(&format!("/api/v2/nodes?q=rack12-&after={first}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(names(&reply), ["rack12-b.example.com"]);
    // what no node name can start with matches nothing
    for q in ["%C3%A9", "rack%25", "a%20b"] {
        let reply = app
            .get(&format!("/api/v2/nodes?q={q}"))
            .send()
            .await
            .status(StatusCode::OK);
        assert_eq!(names(&reply), Vec::<String>::new(), "{q}");
    }
}

#[tokio::test]
async fn nodes_sort_by_name_or_id_either_way_and_page_by_the_matching_cursor() {
    let app = TestApp::new().await;
    // registered out of name order
    for name in [
        "m.example.com",
        "c.example.com",
        "x.example.com",
        "a.example.com",
    ] {
        app.node(name).await;
    }
    let names = |path: String| {
        let app = &app;
        async move {
            let reply = app.get(&path).send().await.status(StatusCode::OK);
            names_in(&reply.body)
        }
    };
    let (m, c, x, a) = (
        "m.example.com",
        "c.example.com",
        "x.example.com",
        "a.example.com",
    );
    assert_eq!(names("/api/v2/nodes".into()).await, [m, c, x, a]);
    assert_eq!(names("/api/v2/nodes?sort=id".into()).await, [m, c, x, a]);
    assert_eq!(names("/api/v2/nodes?sort=-id".into()).await, [a, x, c, m]);
    assert_eq!(names("/api/v2/nodes?sort=name".into()).await, [a, c, m, x]);
    assert_eq!(names("/api/v2/nodes?sort=-name".into()).await, [x, m, c, a]);
    // a page at a time: by name after the last name, newest first after the last id
    assert_eq!(
        names(format!("/api/v2/nodes?sort=name&limit=2&after_name={c}")).await,
        [m, x]
    );
    assert_eq!(
        names(format!("/api/v2/nodes?sort=-name&limit=2&after_name={m}")).await,
        [c, a]
    );
    let newest = app
        .get("/api/v2/nodes?sort=-id&limit=1")
        .send()
        .await
        .status(StatusCode::OK)
        .body[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        names(format!("/api/v2/nodes?sort=-id&after={newest}")).await,
        [x, c, m]
    );
    // each order reads its own cursor only
    assert_eq!(
        names(format!("/api/v2/nodes?sort=name&limit=2&after={newest}")).await,
        [a, c]
    );
    assert_eq!(
        names(format!("/api/v2/nodes?limit=2&after_name={x}")).await,
        [m, c]
    );
    let reply = app.get("/api/v2/nodes?sort=size").send().await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "an unknown order");
}

/// The `name`s of a list of objects.
fn names_in(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}
