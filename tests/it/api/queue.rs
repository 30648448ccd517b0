//! `/api/v2/runs` and `/api/v2/anneal`.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{app::TestApp, world};

#[tokio::test]
async fn runs_list_the_queue_per_node() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.bind("n1", "test-server", "web").await;
    app.bind("n2", "test-admin", "web").await;
    let n1_admin = world::id_of(&app.pool, "n1", "test-admin").await;
    let empty = app.get("/api/v2/runs").send().await.status(StatusCode::OK);
    assert_eq!(empty.body, json!([]));
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    crowbar::annealer::pass(&app.pool, &world::queue_config(10), None)
        .await
        .unwrap();

    let runs = app.get("/api/v2/runs").send().await.status(StatusCode::OK);
    let runs = runs.body.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["state"], "queued");
        assert_eq!(run["lane"], "normal");
        assert_eq!(run["role"], "test-admin");
        assert!(run["queued_at"].is_string());
    }
    let of_n1 = app
        .get("/api/v2/runs/n1")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(of_n1.body.as_array().unwrap().len(), 1);
    assert_eq!(of_n1.body[0]["node"], "n1");
    assert_eq!(of_n1.body[0]["node_role"], n1_admin);
    let filtered = app
        .get("/api/v2/runs?node=n2&limit=5")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(filtered.body[0]["node"], "n2");
    app.refused(
        app.get("/api/v2/runs/nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    world::drive(&app.pool).await;
    let done = app.get("/api/v2/runs").send().await.status(StatusCode::OK);
    assert_eq!(done.body, json!([]));
}

#[tokio::test]
async fn anneal_status_is_an_http_status() {
    let app = TestApp::new().await;
    app.alive_node("n1").await;
    app.alive_node("n2").await;
    app.deployment("web").await;
    app.deployment("bad").await;

    // nothing committed: finished
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "finished");
    assert!(reply.body["counts"].is_object());

    app.bind("n1", "test-server", "web").await;
    app.put("/api/v2/deployments/web/commit")
        .send()
        .await
        .status(StatusCode::OK);
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "scheduled");
    assert_eq!(reply.body["counts"]["todo"], 1);
    assert_eq!(reply.body["counts"]["blocked"], 1);

    // a run executing: working
    let config = world::queue_config(10);
    crowbar::annealer::pass(&app.pool, &config, None)
        .await
        .unwrap();
    let claimed = crowbar::runner::claim(&app.pool, "w", None, &config, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "working");
    crowbar::runner::complete(
        &app.pool,
        "w",
        &[crowbar::db::runs::RunResult {
            run_id: claimed[0].id,
            outcome: crowbar::db::runs::Outcome::Succeeded,
            wall: None,
            runlog: String::new(),
        }],
        None,
        None,
    )
    .await
    .unwrap();

    // a dead node's work waits: not finished
    app.put("/api/v2/nodes/n1")
        .json(json!({"alive": false}))
        .send()
        .await
        .status(StatusCode::OK);
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "scheduled");
    app.put("/api/v2/nodes/n1")
        .json(json!({"alive": true}))
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.body["status"], "finished");
    assert_eq!(reply.body["counts"]["active"], 2);

    // a failure anywhere: failed (409), but only in its own deployment
    app.bind("n2", "test-fails", "bad").await;
    app.put("/api/v2/deployments/bad/commit")
        .send()
        .await
        .status(StatusCode::OK);
    world::drive(&app.pool).await;
    let reply = app
        .get("/api/v2/anneal")
        .send()
        .await
        .status(StatusCode::CONFLICT);
    assert_eq!(reply.body["status"], "failed");
    // a 409 like any other: it carries the error body too
    assert_eq!(reply.body["error"]["code"], "failed");
    assert_eq!(reply.body["counts"]["error"], 1);
    let web = app
        .get("/api/v2/anneal?deployment=web")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(web.body["status"], "finished");
    let web_id = app.get("/api/v2/deployments/web").send().await.body["id"].clone();
    app.get(&format!("/api/v2/anneal?deployment={web_id}"))
        .send()
        .await
        .status(StatusCode::OK);
    app.get("/api/v2/anneal?deployment=bad")
        .send()
        .await
        .status(StatusCode::CONFLICT);
    app.refused(
        app.get("/api/v2/anneal?deployment=nope"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
