//! `GET /api/openapi.json`: generated from the same registry as the router, so every
//! `/api/v2` route is in it; checked against the router and snapshotted.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::app::TestApp;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let reply = app
        .get("/api/openapi.json")
        .no_token()
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    reply.body
}

/// A concrete path for a templated one: every `{param}` becomes `1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn the_document_describes_every_route_the_router_serves() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v2/"), "{path}");
        for method in METHODS {
            let request = app.call(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                &concrete(path),
            );
            let reply = request.no_token().send().await;
            match item.get(method) {
                // documented: routed, behind the token check
                Some(operation) => {
                    operations += 1;
                    assert_eq!(
                        reply.status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path}: {}",
                        reply.body
                    );
                    assert!(
                        operation["responses"]["401"].is_object()
                            && operation["responses"]["default"].is_object(),
                        "{method} {path} names its error bodies"
                    );
                    assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()));
                }
                // not documented: not served either
                None => assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented"
                ),
            }
        }
    }
    assert!(operations >= 40, "{operations} operations");
    // a sample of the routes API.md promises
    for path in [
        "/api/v2/tokens",
        "/api/v2/nodes/{node}/token",
        "/api/v2/nodes/{node}/redeploy",
        "/api/v2/deployment_roles/{id}",
        "/api/v2/attribs",
        "/api/v2/node_roles/{id}/attribs/{attrib}",
        "/api/v2/nodes",
        "/api/v2/nodes/{node}",
        "/api/v2/nodes/{node}/events",
        "/api/v2/deployments/{deployment}/snapshots",
        "/api/v2/deployments/{deployment}/plan",
        "/api/v2/node_roles/{id}/retry",
        "/api/v2/anneal",
        "/api/v2/events",
        "/api/v2/roles/{role}",
    ] {
        assert!(paths.contains_key(path), "{path} is missing");
    }
    // request bodies are described
    let create = &doc["paths"]["/api/v2/nodes"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NodeCreate"
    );
}

#[tokio::test]
async fn the_document_matches_its_snapshot() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    insta::assert_json_snapshot!("openapi", doc);
}
