//! The HTTP API in-process against a real test database, with typed helpers to call it
//! and to check that a failed request changed nothing.

use std::path::Path;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use crowbar::{http::AppState, secret::Secret};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

use super::{
    audit,
    db::{TestDb, test_db},
    world::load_barclamps,
};

/// The admin token every [`TestApp`] accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub pool: PgPool,
    /// The power control the router's handlers use (its vault sealed the BMC passwords
    /// enrolled through it): a power worker started on it carries out their operations.
    pub power: std::sync::Arc<crowbar::power::node::PowerControl>,
    router: Router,
}

/// A fresh database with the shipped barclamps and [`ADMIN_TOKEN`].
pub async fn admin_db() -> TestDb {
    let db = test_db().await;
    load_barclamps(&db.pool).await;
    crowbar::admin_token::ensure_admin_token(
        &db.pool,
        Path::new("/nonexistent"),
        Some(&Secret::new(ADMIN_TOKEN)),
    )
    .await
    .expect("store the admin token");
    db
}

impl TestApp {
    /// A fresh database with the `test` roles and the admin token, and the router over it.
    pub async fn new() -> TestApp {
        let db = admin_db().await;
        let state = AppState::new(db.pool.clone());
        TestApp {
            power: state.power.clone(),
            router: crowbar::http::router(state),
            pool: db.pool,
        }
    }

    /// Like [`TestApp::new`], with the daemon's state changed by `change` first (settings).
    pub async fn with(change: impl FnOnce(&mut AppState)) -> TestApp {
        let db = admin_db().await;
        let mut state = AppState::new(db.pool.clone());
        change(&mut state);
        TestApp {
            power: state.power.clone(),
            router: crowbar::http::router(state),
            pool: db.pool,
        }
    }

    /// The router over an existing database (barclamps already loaded), with the admin
    /// token and the daemon's SSH public key.
    pub async fn on(pool: PgPool, ssh_public_key: Option<String>) -> TestApp {
        crowbar::admin_token::ensure_admin_token(
            &pool,
            Path::new("/nonexistent"),
            Some(&Secret::new(ADMIN_TOKEN)),
        )
        .await
        .expect("store the admin token");
        let mut state = AppState::new(pool.clone());
        state.ssh_public_key = ssh_public_key;
        TestApp {
            power: state.power.clone(),
            router: crowbar::http::router(state),
            pool,
        }
    }

    /// The router, to serve it on a real listener.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_string(),
            token: Some(ADMIN_TOKEN.to_string()),
            body: None,
            content_type: None,
            headers: HeaderMap::new(),
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }
    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }
    pub fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }
    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Creates a node over the API; returns (id, token).
    pub async fn node(&self, name: &str) -> (i64, String) {
        let reply = self
            .post("/api/v2/nodes")
            .json(json!({ "name": name }))
            .send()
            .await
            .status(StatusCode::CREATED);
        (
            reply.body["id"].as_i64().unwrap(),
            reply.body["token"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a node and marks it alive over the API.
    pub async fn alive_node(&self, name: &str) -> (i64, String) {
        let (id, token) = self.node(name).await;
        self.put(&format!("/api/v2/nodes/{name}"))
            .json(json!({"alive": true}))
            .send()
            .await
            .status(StatusCode::OK);
        (id, token)
    }

    pub async fn deployment(&self, name: &str) -> i64 {
        self.post("/api/v2/deployments")
            .json(json!({ "name": name }))
            .send()
            .await
            .status(StatusCode::CREATED)
            .body["id"]
            .as_i64()
            .unwrap()
    }

    /// Binds over the API; returns the noderole's id.
    pub async fn bind(&self, node: &str, role: &str, deployment: &str) -> i64 {
        self.post("/api/v2/node_roles")
            .json(json!({"node": node, "role": role, "deployment": deployment}))
            .send()
            .await
            .status(StatusCode::CREATED)
            .body["id"]
            .as_i64()
            .unwrap()
    }

    /// Every row of every table a request could change, to compare before and after.
    pub async fn fingerprint(&self) -> Value {
        let mut all = serde_json::Map::new();
        for (table, order) in [
            ("nodes", "id"),
            ("deployments", "id"),
            ("deployment_roles", "id"),
            ("noderoles", "id"),
            ("noderole_edges", "parent_id, child_id"),
            ("snapshots", "id"),
            ("runs", "id"),
            ("run_records", "id"),
            ("events", "id"),
            ("api_tokens", "id"),
            ("jigs", "id"),
            ("roles", "id"),
            ("barclamps", "id"),
            ("networks", "id"),
            ("network_ranges", "id"),
            ("network_allocations", "id"),
        ] {
            let rows: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY {order}), '[]'::jsonb) FROM {table} t"
            )))
            .fetch_one(&self.pool)
            .await
            .unwrap();
            all.insert(table.to_string(), rows);
        }
        Value::Object(all)
    }

    /// Sends `call` and asserts it failed with `status` and `code` and changed nothing.
    pub async fn refused(&self, call: Call<'_>, status: StatusCode, code: &str) -> Reply {
        let before = self.fingerprint().await;
        let reply = call.send().await.error(status, code);
        let after = self.fingerprint().await;
        assert_eq!(before, after, "a refused request changed the database");
        reply
    }
}

/// A request being built.
pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    headers: HeaderMap,
}

impl Call<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }
    pub fn no_token(mut self) -> Self {
        self.token = None;
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self.content_type = Some("application/json".into());
        self
    }
    /// A body sent as-is, with the given content type (or none).
    pub fn raw(mut self, body: &str, content_type: Option<&str>) -> Self {
        self.body = Some(body.to_string());
        self.content_type = content_type.map(str::to_string);
        self
    }
    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        self.headers.insert(name, value.parse().unwrap());
        self
    }

    pub async fn send(self) -> Reply {
        let app = self.app;
        let method = self.method.clone();
        let path = self.path.clone();
        let token = self.token.clone();
        let request_id = match self.headers.get("x-request-id") {
            Some(given) => given.to_str().unwrap().to_string(),
            None => format!("test-{}", &crowbar::db::keys::new_token()[..24]),
        };
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("x-request-id", &request_id);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = &self.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(self.body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        let reply = Reply {
            status,
            headers,
            body,
        };
        audit::check(app, &method, &path, token.as_deref(), &request_id, &reply).await;
        reply
    }
}

/// A response: status, headers and the body as JSON (`null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status; returns self for the body.
    #[track_caller]
    pub fn status(self, status: StatusCode) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error response: the status and the stable body
    /// `{"error": {"code", "message", "details"?}}` with this code.
    #[track_caller]
    pub fn error(self, status: StatusCode, code: &str) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        let body = self
            .body
            .as_object()
            .expect("an error body is a JSON object");
        assert_eq!(body.len(), 1, "only `error` at the top: {}", self.body);
        let error = body["error"].as_object().expect("`error` is an object");
        assert_eq!(error["code"], code, "unexpected code: {}", self.body);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a human message: {}",
            self.body
        );
        assert!(
            error
                .keys()
                .all(|k| ["code", "message", "details"].contains(&k.as_str())),
            "unexpected keys: {}",
            self.body
        );
        self
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}
