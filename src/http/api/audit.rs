//! `/api/v2/audit`: who changed what, when and from where (docs/access.md "Audit trail"),
//! newest first, paged by cursor.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{
        self,
        audit::{Filter, Record},
    },
    http::{
        error::ApiError,
        extract::{ApiQuery, Limit, Page},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Exactly this actor, e.g. `user:alice`, `token:ci`, `node:n1.example.com`.
    actor: Option<String>,
    /// The kind of object: `node`, `deployment`, `noderole`, `user`, `token`, `route`, ...
    kind: Option<String>,
    /// The object's id or name.
    object: Option<String>,
    /// Exactly this action, e.g. `deployment.commit`, `request.refused`.
    action: Option<String>,
    /// Records at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// The records of one request, by its `X-Request-Id`.
    request_id: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    /// A cursor: the records older than this one (the last id of the previous page).
    after: Option<i64>,
}

/// Audit records matching every filter given, newest first.
#[utoipa::path(get, path = "/api/v2/audit", tag = "audit", params(ListQuery),
    responses((status = 200, description = "audit records, newest first", body = Vec<Record>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Record>>, ApiError> {
    let page = Page::new(q.limit, None);
    let filter = Filter {
        actor: q.actor,
        kind: q.kind,
        object: q.object,
        action: q.action,
        since: q.since,
        until: q.until,
        request_id: q.request_id,
        before: q.after,
    };
    Ok(Json(
        db::audit::list(&state.pool, &filter, page.limit).await?,
    ))
}
