//! The audit trail's promise, checked on every request of the API tests: a change that
//! answered 2xx left exactly one record, with the caller as actor, the route's action and
//! the object the path names; a failed change left none; a refused one (401, 403) at most
//! its `request.refused` record.

use axum::http::Method;
use crowbar::{domain::policy::Action, http::policy};
use serde_json::Value;

use super::app::{Reply, TestApp};

/// The action of `method` on the concrete `path`: the table's route matching it with the
/// most literal segments.
pub fn action_of(method: &Method, path: &str) -> Option<Action> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    policy::change_routes()
        .filter(|(m, _, _)| *m == method.as_str())
        .filter_map(|(_, route, action)| {
            let pattern: Vec<&str> = route.split('/').collect();
            let matches = pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.starts_with('{') || p == s);
            matches.then(|| {
                (
                    pattern.iter().filter(|p| !p.starts_with('{')).count(),
                    action,
                )
            })
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, action)| action)
}

/// The audit records of one request.
async fn records(app: &TestApp, request_id: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(a) FROM audit a WHERE request_id = $1 ORDER BY id")
        .bind(request_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// Who the audit trail should name for `token`.
async fn actor_of(app: &TestApp, token: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT 'token:' || name FROM api_tokens WHERE token_hash = $1
         UNION ALL SELECT 'node:' || name FROM nodes WHERE token_hash = $1",
    )
    .bind(crowbar::db::keys::token_hash(token))
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// The object kind of a path's resource segment.
fn kind_of(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "nodes" => "node",
        "deployments" => "deployment",
        "node_roles" => "noderole",
        "deployment_roles" => "deployment_role",
        "users" => "user",
        "tokens" => "token",
        "networks" => "network",
        "jigs" => "jig",
        _ => return None,
    })
}

#[track_caller]
fn assert_names(record: &Value, key: &str, what: &str) {
    let by_id = key.parse::<i64>().ok();
    let named = record["object"].as_str();
    let id = record["object_id"].as_i64();
    assert!(
        by_id.is_some_and(|k| Some(k) == id) || named == Some(key),
        "{what}: the record's object is not `{key}`: {record}"
    );
}

pub async fn check(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    request_id: &str,
    reply: &Reply,
) {
    if !path.starts_with("/api/v2/") || *method == Method::GET || *method == Method::HEAD {
        return;
    }
    let what = format!("{method} {path} → {}", reply.status);
    let found = records(app, request_id).await;
    let status = reply.status.as_u16();
    if status == 401 || status == 403 {
        assert!(found.len() <= 1, "{what}: more than one record: {found:?}");
        for record in &found {
            assert_eq!(record["action"], "request.refused", "{what}: {record}");
        }
        return;
    }
    let audited = action_of(method, path).and_then(Action::audit_name);
    if !reply.status.is_success() || audited.is_none() {
        assert!(
            found.is_empty(),
            "{what}: changed nothing, yet recorded {found:?}"
        );
        return;
    }
    assert_eq!(
        found.len(),
        1,
        "{what}: exactly one record, found {found:?}"
    );
    let record = &found[0];
    assert_eq!(record["action"], audited.unwrap(), "{what}: {record}");
    if let Some(token) = token {
        let actor = actor_of(app, token).await;
        assert_eq!(
            record["actor"].as_str(),
            actor.as_deref(),
            "{what}: {record}"
        );
    }
    // the object the path or the answer names
    let segments: Vec<&str> = path.split('?').next().unwrap().split('/').skip(3).collect();
    let kind = segments.first().copied().and_then(kind_of);
    match (kind, segments.get(1)) {
        (Some(kind), Some(key)) if record["kind"] == kind => assert_names(record, key, &what),
        (Some(kind), None) if record["kind"] == kind => {
            let created = reply.body["id"]
                .as_i64()
                .or(reply.body["noderole"]["id"].as_i64())
                .or(reply.body["node"]["id"].as_i64());
            if let Some(created) = created {
                assert_eq!(
                    record["object_id"].as_i64(),
                    Some(created),
                    "{what}: {record}"
                );
            }
        }
        _ => {}
    }
}
