//! Bearer tokens: admins reach everything, nodes only their own node's `alive` and
//! `bootenv` (as its OS installer), everyone else nothing.

use axum::http::{StatusCode, header};
use serde_json::json;

use crate::support::app::TestApp;

#[tokio::test]
async fn requests_without_a_valid_token_are_401_and_change_nothing() {
    let app = TestApp::new().await;
    app.node("n1").await;
    for path in [
        "/api/v2/nodes",
        "/api/v2/nodes/n1",
        "/api/v2/deployments",
        "/api/v2/node_roles",
        "/api/v2/anneal",
        "/api/v2/runs",
        "/api/v2/roles",
    ] {
        let reply = app
            .refused(
                app.get(path).no_token(),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            )
            .await;
        assert!(
            reply.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        app.refused(
            app.get(path).token("not-a-token"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    app.refused(
        app.post("/api/v2/nodes")
            .no_token()
            .json(json!({"name": "n2"})),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.refused(
        app.put("/api/v2/nodes/n1")
            .token("wrong")
            .json(json!({"alive": true})),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // other schemes are not bearer tokens
    app.refused(
        app.get("/api/v2/nodes")
            .no_token()
            .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4="),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // probes need no token
    app.get("/healthz")
        .no_token()
        .send()
        .await
        .status(StatusCode::OK);
}

#[tokio::test]
async fn revoked_tokens_and_tokens_of_deleted_nodes_stop_working() {
    let app = TestApp::new().await;
    let (_, token) = app.node("n1").await;
    app.get("/api/v2/nodes/n1")
        .token(&token)
        .send()
        .await
        .status(StatusCode::OK);
    app.delete("/api/v2/nodes/n1")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    app.get("/api/v2/nodes/n1")
        .token(&token)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.get("/api/v2/nodes")
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A node token sets its own `alive`; its bootenv only as its installer reports the disk
/// ready during an OS install (tests/it/provisioning/os_install.rs), never otherwise.
#[tokio::test]
async fn a_node_token_reads_its_own_node_and_sets_alive() {
    let app = TestApp::new().await;
    let (id, token) = app.node("n1.example.com").await;
    app.node("n2.example.com").await;

    let me = app
        .get("/api/v2/nodes/n1.example.com")
        .token(&token)
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(me.body["id"], id);
    app.get(&format!("/api/v2/nodes/{id}"))
        .token(&token)
        .send()
        .await
        .status(StatusCode::OK);

    let updated = app
        .put("/api/v2/nodes/n1.example.com")
        .token(&token)
        .json(json!({"alive": true, "bootenv": "sledgehammer"}))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(updated.body["alive"], true);
    assert_eq!(updated.body["bootenv"], "sledgehammer");
    for bootenv in ["local", "rocky-9-install"] {
        let refused = app
            .refused(
                app.put("/api/v2/nodes/n1.example.com")
                    .token(&token)
                    .json(json!({"alive": true, "bootenv": bootenv})),
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
        assert!(refused.message().contains("install"), "{}", refused.body);
    }
    app.patch(&format!("/api/v2/nodes/{id}"))
        .token(&token)
        .json(json!({"alive": false}))
        .send()
        .await
        .status(StatusCode::OK);

    // the history names the node as the one who changed it
    let history = app
        .get("/api/v2/nodes/n1.example.com/events")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(history.body[0]["actor"], "node:n1.example.com");
    assert_eq!(history.body[0]["reason"], "reported by the node");
    assert_eq!(history.body[0]["data"]["changes"]["alive"]["to"], false);
}

#[tokio::test]
async fn a_node_token_is_forbidden_everything_else() {
    let app = TestApp::new().await;
    let (id, token) = app.node("n1").await;
    app.node("n2").await;
    app.deployment("web").await;

    // its own admin-owned fields
    for body in [
        json!({"available": false}),
        json!({"alive": true, "available": false}),
        json!({"description": "mine"}),
        json!({"deployment": "web"}),
        json!({"address": "192.0.2.1"}),
        json!({"bootenv": "local", "reason": "because"}),
    ] {
        let reply = app
            .refused(
                app.put("/api/v2/nodes/n1").token(&token).json(body.clone()),
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
        assert!(reply.message().contains("alive"), "{}", reply.body);
    }
    // other nodes, lists and every other route
    let other = [
        app.get("/api/v2/nodes/n2"),
        app.put("/api/v2/nodes/n2").json(json!({"alive": true})),
        app.get("/api/v2/nodes"),
        app.delete("/api/v2/nodes/n1"),
        app.delete(&format!("/api/v2/nodes/{id}")),
        app.get("/api/v2/nodes/n1/node_roles"),
        app.get("/api/v2/nodes/n1/events"),
        app.put("/api/v2/nodes/n1/commit"),
        app.post("/api/v2/nodes").json(json!({"name": "n3"})),
        app.post("/api/v2/node_roles")
            .json(json!({"node": "n1", "role": "test-admin"})),
        app.get("/api/v2/deployments"),
        app.put("/api/v2/deployments/web/commit"),
        app.get("/api/v2/anneal"),
        app.get("/api/v2/runs"),
        app.get("/api/v2/roles"),
        app.put("/api/v2/jigs/test").json(json!({"active": false})),
    ];
    for call in other {
        app.refused(call.token(&token), StatusCode::FORBIDDEN, "forbidden")
            .await;
    }
}

#[tokio::test]
async fn admin_changes_name_the_admin_token_in_the_audit_trail() {
    let app = TestApp::new().await;
    app.node("n1").await;
    app.put("/api/v2/nodes/n1")
        .json(json!({"available": false, "reason": "disk swap"}))
        .send()
        .await
        .status(StatusCode::OK);
    let history = app
        .get("/api/v2/nodes/n1/events")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(history.body[0]["actor"], "token:admin");
    assert_eq!(history.body[0]["reason"], "disk swap");
    assert_eq!(history.body[0]["data"]["changes"]["available"]["to"], false);
}

#[tokio::test]
async fn a_node_token_is_forbidden_on_every_documented_route_but_its_own_node_and_install() {
    let app = TestApp::new().await;
    let (id, token) = app.node("n1").await;
    let document = serde_json::to_value(crowbar::http::api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        // its own node in every `{node}`, so sub-resources of its own node are covered too
        let concrete = path
            .replace("{node}", &id.to_string())
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            // what a node may do on itself: read and update its node, read its OS install
            let own_node = (path == "/api/v2/nodes/{node}" && method != "delete")
                || (path == "/api/v2/nodes/{node}/install" && method == "get");
            if own_node {
                continue;
            }
            let method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app
                .refused(
                    app.call(method.clone(), &concrete).token(&token),
                    StatusCode::FORBIDDEN,
                    "forbidden",
                )
                .await;
            assert!(reply.message().contains("own node"), "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} operations checked");
}
