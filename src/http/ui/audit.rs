//! `/audit`: who changed what, when and from where, newest first, filtered and paged by
//! cursor; and the per-object history the node and deployment pages show.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{
        self,
        audit::{Filter, Record},
    },
    http::state::AppState,
};

/// Records on one page of `/audit`.
const PAGE: i64 = 100;
/// Records of one object on its page.
pub const OBJECT_HISTORY: i64 = 20;

pub fn router() -> Pages {
    Pages::new().get("/audit", page)
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    kind: Option<String>,
    object: Option<String>,
    action: Option<String>,
    after: Option<i64>,
}

/// A filter field as given: blank means not given.
fn given(field: Option<String>) -> Option<String> {
    field
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    records: Vec<Record>,
    actor: String,
    kind: String,
    object: String,
    action: String,
    /// The query string of the next (older) page, when there may be one.
    older: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Result<AuditPage, UiError> {
    let layout = Layout::new(&state, &session, "audit").await?;
    let filter = Filter {
        actor: given(q.actor),
        kind: given(q.kind),
        object: given(q.object),
        action: given(q.action),
        before: q.after,
        ..Default::default()
    };
    let records = db::audit::list(&state.pool, &filter, PAGE).await?;
    let older = (records.len() as i64 == PAGE)
        .then(|| records.last().map(|r| r.id))
        .flatten()
        .map(|last| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (key, value) in [
                ("actor", &filter.actor),
                ("kind", &filter.kind),
                ("object", &filter.object),
                ("action", &filter.action),
            ] {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
            query.append_pair("after", &last.to_string());
            query.finish()
        });
    Ok(AuditPage {
        layout,
        records,
        actor: filter.actor.unwrap_or_default(),
        kind: filter.kind.unwrap_or_default(),
        object: filter.object.unwrap_or_default(),
        action: filter.action.unwrap_or_default(),
        older,
    })
}

/// The latest audit records of one object, for its page.
pub async fn of_object(state: &AppState, kind: &str, id: i64) -> Result<Vec<Record>, UiError> {
    let filter = Filter {
        kind: Some(kind.to_string()),
        object: Some(id.to_string()),
        ..Default::default()
    };
    Ok(db::audit::list(&state.pool, &filter, OBJECT_HISTORY).await?)
}
