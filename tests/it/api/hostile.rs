//! Bad input is refused in crowbar's words, over HTTP to a real daemon: a table of hostile
//! requests (malformed addresses and MACs, wrong JSON types, names outside their pattern,
//! NULs, numbers out of range), each answered with a 4xx error body that says what was wrong
//! and carries nothing of PostgreSQL's own text, and each leaving the database as it was.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    app::{ADMIN_TOKEN, TestApp},
    daemon::{Daemon, DaemonOptions},
};

/// Words of PostgreSQL (and of the layers under the API) that must never reach a client.
const FOREIGN: [&str; 12] = [
    "invalid input syntax",
    "violates",
    "sqlstate",
    "syntax error",
    "macaddr",
    "type inet",
    "type cidr",
    "constraint",
    "postgres",
    "sqlx",
    "failed to deserialize",
    "failed to parse",
];

struct Hostile {
    method: Method,
    path: &'static str,
    /// A JSON text (sent as-is, so it can hold what `json!` cannot write).
    body: Option<&'static str>,
    status: u16,
    code: &'static str,
    /// A word the message must have: it names what was wrong.
    names: &'static str,
}

fn case(
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    code: &'static str,
    names: &'static str,
) -> Hostile {
    Hostile {
        method,
        path,
        body,
        status,
        code,
        names,
    }
}

fn hostile_requests() -> Vec<Hostile> {
    use Method as M;
    let post =
        |path, body, status, code, names| case(M::POST, path, Some(body), status, code, names);
    let put = |path, body, status, code, names| case(M::PUT, path, Some(body), status, code, names);
    let get = |path, status, code, names| case(M::GET, path, None, status, code, names);
    vec![
        // addresses and MACs are parsed before they reach SQL
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "address": "not-an-ip"}"#,
            422,
            "invalid_value",
            "address",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "address": "198.51.100.300"}"#,
            422,
            "invalid_value",
            "address",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "address": "198.51.100.7/24"}"#,
            422,
            "invalid_value",
            "address",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "mac": "zz:zz"}"#,
            422,
            "invalid_value",
            "mac",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "mac": "08002b:010203"}"#,
            422,
            "invalid_value",
            "mac",
        ),
        put(
            "/api/v2/nodes/n1",
            r#"{"address": "bogus"}"#,
            422,
            "invalid_value",
            "address",
        ),
        post(
            "/api/v2/networks",
            r#"{"name": "net", "v4prefix": "300.0.0.0/24"}"#,
            422,
            "invalid_prefix",
            "v4prefix",
        ),
        post(
            "/api/v2/networks",
            r#"{"name": "net", "ranges": [{"name": "r", "first": "x", "last": "198.51.100.9"}]}"#,
            422,
            "invalid_address",
            "first",
        ),
        post(
            "/api/v2/networks",
            r#"{"name": "net", "router": {"address": "::g"}}"#,
            422,
            "invalid_address",
            "router",
        ),
        post(
            "/discover",
            r#"{"mac": "52:54:00:00:00"}"#,
            422,
            "invalid_mac",
            "MAC",
        ),
        // names outside their pattern
        post(
            "/api/v2/nodes",
            r#"{"name": "N1 with spaces"}"#,
            422,
            "invalid_name",
            "name",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": ""}"#,
            422,
            "invalid_name",
            "name",
        ),
        post(
            "/api/v2/deployments",
            r#"{"name": "-web"}"#,
            422,
            "invalid_name",
            "name",
        ),
        post(
            "/api/v2/deployments",
            r#"{"name": "web2", "parent": ""}"#,
            422,
            "invalid_body",
            "parent",
        ),
        post(
            "/api/v2/tokens",
            r#"{"name": "two words"}"#,
            422,
            "invalid_name",
            "name",
        ),
        post(
            "/api/v2/networks",
            r#"{"name": "Net"}"#,
            422,
            "invalid_name",
            "name",
        ),
        post(
            "/api/v2/users",
            r#"{"name": "Admin", "password": "long enough"}"#,
            422,
            "invalid_name",
            "name",
        ),
        put(
            "/api/v2/nodes/n1",
            r#"{"bootenv": "nope"}"#,
            422,
            "unknown_bootenv",
            "bootenv",
        ),
        // JSON of the wrong type
        post(
            "/api/v2/nodes",
            r#"{"name": 42}"#,
            422,
            "invalid_body",
            "name",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "admin": "yes"}"#,
            422,
            "invalid_body",
            "admin",
        ),
        post(
            "/api/v2/node_roles",
            r#"{"node": "n1", "role": "test-server", "deployment": "web", "data": [1]}"#,
            422,
            "invalid_data",
            "object",
        ),
        put(
            "/api/v2/node_roles/NR",
            r#"{"data": "text"}"#,
            422,
            "invalid_data",
            "object",
        ),
        put(
            "/api/v2/node_roles/NR",
            r#"{"data": null}"#,
            422,
            "invalid_data",
            "object",
        ),
        post(
            "/api/v2/deployment_roles",
            r#"{"deployment": "web", "role": "test-server", "data": 7}"#,
            422,
            "invalid_data",
            "object",
        ),
        put(
            "/api/v2/deployments/web/recall",
            r#"{"snapshot": 1.5}"#,
            422,
            "invalid_body",
            "snapshot",
        ),
        put(
            "/api/v2/deployments/web/recall",
            r#"{"snapshot": 99999999999}"#,
            422,
            "invalid_body",
            "snapshot",
        ),
        post(
            "/api/v2/deployments/web/snapshots",
            r#"{"base": "latest"}"#,
            422,
            "invalid_body",
            "base",
        ),
        post(
            "/api/v2/networks",
            r#"{"name": "net", "router": {"address": "198.51.100.1", "pref": 1e10}}"#,
            422,
            "invalid_body",
            "pref",
        ),
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "deployment": true}"#,
            422,
            "invalid_body",
            "deployment",
        ),
        post(
            "/api/v2/nodes",
            "{\"name\": ",
            400,
            "malformed_json",
            "JSON",
        ),
        // NULs, which PostgreSQL cannot store
        post(
            "/api/v2/nodes",
            r#"{"name": "n2", "description": "a\u0000b"}"#,
            422,
            "invalid_body",
            "NUL",
        ),
        put(
            "/api/v2/nodes/n1/attribs/test-slow-delay",
            r#"{"value": "\u0000"}"#,
            422,
            "invalid_body",
            "NUL",
        ),
        post(
            "/api/v2/deployments/web/plan",
            r#"{"roles": {"test-\u0000": {}}}"#,
            422,
            "invalid_body",
            "NUL",
        ),
        get("/api/v2/runs?node=n%001", 400, "invalid_query", "NUL"),
        get("/api/v2/nodes/n%001", 400, "invalid_path", "NUL"),
        // query strings and paths out of range
        get("/api/v2/nodes?limit=0", 400, "invalid_query", "limit"),
        get(
            "/api/v2/nodes?limit=99999999999999999999",
            400,
            "invalid_query",
            "limit",
        ),
        get("/api/v2/nodes?offset=-1", 400, "invalid_query", "offset"),
        get(
            "/api/v2/deployments/web/snapshots/x",
            400,
            "invalid_path",
            "parse",
        ),
        get(
            "/api/v2/events?last_event_id=-1",
            400,
            "invalid_last_event_id",
            "event id",
        ),
    ]
}

#[tokio::test]
async fn hostile_inputs_are_refused_in_crowbars_words_and_change_nothing() {
    let daemon = Daemon::start(
        DaemonOptions::default()
            .env("CROWBAR_ADMIN_TOKEN", ADMIN_TOKEN)
            .arg("--probe-interval")
            .arg("0")
            .arg("--run-cap")
            .arg("0"),
    )
    .await;
    let pool = sqlx::PgPool::connect(&daemon.postgres_url())
        .await
        .expect("connect to the daemon's database");
    // the in-process API on the daemon's database: to seed it and to fingerprint it
    let app = TestApp::on(pool, None).await;
    app.node("n1").await;
    app.deployment("web").await;
    let noderole = app.bind("n1", "test-server", "web").await.to_string();

    let client = daemon.client();
    for hostile in hostile_requests() {
        let path = hostile.path.replace("NR", &noderole);
        let what = format!("{} {path} {}", hostile.method, hostile.body.unwrap_or(""));
        let mut request = client
            .request(hostile.method.clone(), format!("{}{path}", daemon.url()))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = hostile.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let before = app.fingerprint().await;
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(
            app.fingerprint().await,
            before,
            "{what} changed the database"
        );
        assert_eq!(status, hostile.status, "{what}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        assert_eq!(body["error"]["code"], hostile.code, "{what}: {text}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(hostile.names),
            "{what}: the message should name `{}`: {text}",
            hostile.names
        );
        let lower = text.to_lowercase();
        for foreign in FOREIGN {
            assert!(!lower.contains(foreign), "{what}: `{foreign}` in {text}");
        }
    }
}
