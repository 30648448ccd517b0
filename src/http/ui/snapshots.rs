//! The difference between two snapshots of a deployment, as JSON Patch operations (RFC
//! 6902) over their desired-state documents: what was added, removed or replaced, where.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use json_patch::PatchOperation;
use serde::Deserialize;
use serde_json::Value;

use super::{Pages, error::UiError};
use crate::{
    db::{self, keys::Key},
    http::state::AppState,
};

pub fn router() -> Pages {
    Pages::new().get("/deployments/{name}/diff", diff)
}

/// One change between two documents.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub kind: &'static str,
    /// Where, as a JSON pointer (`/bindings/1/role`).
    pub path: String,
    /// The new value (empty when removed).
    pub value: String,
}

/// The changes that turn `from` into `to`.
pub fn changes(from: &Value, to: &Value) -> Vec<Change> {
    json_patch::diff(from, to)
        .0
        .into_iter()
        .map(|op| match op {
            PatchOperation::Add(op) => Change {
                kind: "added",
                path: op.path.to_string(),
                value: op.value.to_string(),
            },
            PatchOperation::Remove(op) => Change {
                kind: "removed",
                path: op.path.to_string(),
                value: String::new(),
            },
            PatchOperation::Replace(op) => Change {
                kind: "changed",
                path: op.path.to_string(),
                value: op.value.to_string(),
            },
            other => Change {
                kind: "changed",
                path: String::new(),
                value: serde_json::to_string(&other).unwrap_or_default(),
            },
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    from: i32,
    to: i32,
}

#[derive(Template, WebTemplate)]
#[template(path = "diff.html")]
struct DiffFragment {
    from: i32,
    to: i32,
    changes: Vec<Change>,
}

async fn diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<DiffFragment, UiError> {
    let key = Key::parse(&name);
    let mut conn = state.pool.acquire().await?;
    let from = db::deployments::snapshot(&mut conn, &key, q.from).await?;
    let to = db::deployments::snapshot(&mut conn, &key, q.to).await?;
    Ok(DiffFragment {
        from: q.from,
        to: q.to,
        changes: changes(&from.content, &to.content),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_name_what_moved_where() {
        let from = json!({"roles": {"a": {}}, "bindings": [{"node": "n1", "role": "a"}]});
        let to = json!({"roles": {"a": {"x": 1}, "b": {}}, "bindings": []});
        let changes = changes(&from, &to);
        assert!(changes.contains(&Change {
            kind: "added",
            path: "/roles/b".into(),
            value: "{}".into()
        }));
        assert!(changes.contains(&Change {
            kind: "added",
            path: "/roles/a/x".into(),
            value: "1".into()
        }));
        assert!(
            changes
                .iter()
                .any(|c| c.kind == "removed" && c.path == "/bindings/0")
        );
        assert!(super::changes(&from, &from).is_empty());
    }
}
