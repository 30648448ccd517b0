//! `GET /api/openapi.json`: generated from the same registry as the router, so every
//! `/api/v2` route is in it; checked against the router and snapshotted.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::{
    app::TestApp,
    daemon::{Daemon, DaemonOptions},
    python,
};

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

/// `openapi-spec-validator` (from the checkout's `.venv/`, see `scripts/python-tools`)
/// accepts the document a real daemon serves as valid OpenAPI 3.1.
#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let daemon = Daemon::start(DaemonOptions::default()).await;
    let response = daemon.get("/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK.as_u16());
    let text = response.text().await.expect("the document");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).expect("write the document");
    let output = tokio::process::Command::new(python::tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .await
        .expect("run openapi-spec-validator");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

/// Each create operation links to the operations that take the id it returns, and the
/// constraints the daemon enforces are declared where clients and fuzzers read them.
#[tokio::test]
async fn creates_link_to_their_objects_and_inputs_declare_their_limits() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let links = &doc["paths"]["/api/v2/nodes"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["get_nodes_node"]["parameters"]["node"],
        "$response.body#/id"
    );
    assert_eq!(
        links["put_nodes_node_commit"]["operationId"],
        "put_nodes_node_commit"
    );
    // a node's install exists only once one was requested: no link promises it
    assert!(links.get("get_nodes_node_install").is_none(), "{links}");
    let links = &doc["paths"]["/api/v2/node_roles"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["put_node_roles_id_retry"]["parameters"]["id"],
        "$response.body#/id"
    );
    // every response is described
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}"
                );
            }
        }
    }
    // lists: limit 1..1000, offset >= 0
    let params = doc["paths"]["/api/v2/nodes"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["schema"]
            .clone()
    };
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 1000);
    assert_eq!(param("offset")["minimum"], 0);
    // names carry their patterns, free text says it holds no NUL
    let node = &doc["components"]["schemas"]["NodeCreate"]["properties"];
    assert_eq!(node["name"]["minLength"], 1);
    assert!(
        node["name"]["pattern"]
            .as_str()
            .unwrap()
            .starts_with("^[a-z0-9]")
    );
    assert_eq!(node["description"]["pattern"], "^[^\\u0000]*$");
    // data is an object, never anything else
    let data = &doc["components"]["schemas"]["DataBody"]["properties"]["data"];
    assert_eq!(data["$ref"], "#/components/schemas/JsonObject");
    assert_eq!(doc["components"]["schemas"]["JsonObject"]["type"], "object");
}
