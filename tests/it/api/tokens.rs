//! `/api/v2/tokens` and `/api/v2/nodes/{node}/token`: tokens made, listed, revoked and
//! rotated through the API; shown once, stored hashed.

use axum::http::{StatusCode, header};
use serde_json::json;

use crate::support::app::{ADMIN_TOKEN, TestApp};

#[tokio::test]
async fn a_created_token_works_until_it_is_revoked() {
    let app = TestApp::new().await;
    let reply = app
        .post("/api/v2/tokens")
        .json(json!({"name": "ci-pipeline"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let token = reply.body["token"].as_str().unwrap().to_string();
    let id = reply.body["id"].as_i64().unwrap();
    assert_eq!(reply.body["name"], "ci-pipeline");
    assert!(reply.body["revoked_at"].is_null());
    assert_eq!(token.len(), 64);
    assert_eq!(
        reply.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v2/tokens/{id}")
    );
    // stored hashed only
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_hash = $1 OR name = $1")
            .bind(&token)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);

    // it is an admin token, and the audit trail names it
    app.post("/api/v2/deployments")
        .token(&token)
        .json(json!({"name": "made-by-ci"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM events WHERE type = 'deployment.created' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, "token:ci-pipeline");

    // listed and shown by id or name, never with the token
    let list = app
        .get("/api/v2/tokens")
        .send()
        .await
        .status(StatusCode::OK);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ci-pipeline"]);
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none() && t.get("token_hash").is_none())
    );
    let page = app
        .get("/api/v2/tokens?limit=1&offset=1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["name"], "ci-pipeline");
    for key in [id.to_string(), "ci-pipeline".to_string()] {
        let shown = app
            .get(&format!("/api/v2/tokens/{key}"))
            .send()
            .await
            .status(StatusCode::OK);
        assert_eq!(shown.body["id"], id);
    }

    // revoked: stops working at once; revoking again changes nothing
    let revoked = app
        .delete("/api/v2/tokens/ci-pipeline")
        .send()
        .await
        .status(StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    app.get("/api/v2/nodes")
        .token(&token)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let again = app
        .delete(&format!("/api/v2/tokens/{id}"))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);
}

#[tokio::test]
async fn token_requests_that_cannot_be_done_change_nothing() {
    let app = TestApp::new().await;
    app.post("/api/v2/tokens")
        .json(json!({"name": "ops"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.refused(
        app.post("/api/v2/tokens").json(json!({"name": "ops"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    for name in ["", "has space", "-dash-first", &"x".repeat(65)] {
        app.refused(
            app.post("/api/v2/tokens").json(json!({"name": name})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        )
        .await;
    }
    app.refused(
        app.post("/api/v2/tokens")
            .json(json!({"name": "x", "admin": true})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    app.refused(
        app.post("/api/v2/tokens")
            .raw("{\"name\":", Some("application/json")),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    app.refused(
        app.get("/api/v2/tokens/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.delete("/api/v2/tokens/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let (_, node_token) = app.node("n1").await;
    for call in [
        app.get("/api/v2/tokens"),
        app.post("/api/v2/tokens").json(json!({"name": "mine"})),
        app.delete("/api/v2/tokens/ops"),
    ] {
        app.refused(call.token(&node_token), StatusCode::FORBIDDEN, "forbidden")
            .await;
    }
}

#[tokio::test]
async fn the_last_working_token_cannot_be_revoked() {
    let app = TestApp::new().await;
    let reply = app
        .refused(
            app.delete("/api/v2/tokens/admin"),
            StatusCode::CONFLICT,
            "last_token",
        )
        .await;
    assert!(reply.message().contains("create another"), "{}", reply.body);

    // with a second one, the first can go, and then the second is the last
    let second = app
        .post("/api/v2/tokens")
        .json(json!({"name": "second"}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete("/api/v2/tokens/admin")
        .token(&second)
        .send()
        .await
        .status(StatusCode::OK);
    app.get("/api/v2/tokens")
        .token(ADMIN_TOKEN)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.refused(
        app.delete("/api/v2/tokens/second").token(&second),
        StatusCode::CONFLICT,
        "last_token",
    )
    .await;
}

#[tokio::test]
async fn rotating_a_node_token_retires_the_old_one() {
    let app = TestApp::new().await;
    let (id, old) = app.node("n1.example.com").await;
    let reply = app
        .put("/api/v2/nodes/n1.example.com/token")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["node_id"], id);
    let new = reply.body["token"].as_str().unwrap();
    assert_ne!(new, old);
    app.get("/api/v2/nodes/n1.example.com")
        .token(&old)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get(&format!("/api/v2/nodes/{id}"))
        .token(new)
        .send()
        .await
        .status(StatusCode::OK);
    // a node cannot rotate its own (or anyone's) token; unknown nodes are 404
    app.refused(
        app.put(&format!("/api/v2/nodes/{id}/token")).token(new),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    app.refused(
        app.put("/api/v2/nodes/n9.example.com/token"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
