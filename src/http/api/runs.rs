//! `/api/v2/runs`: the run queue (queued and executing runs).

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, keys::Key, runs::Run},
    http::{
        error::{ApiError, ErrorBody},
        extract::{ApiPath, ApiQuery, Limit, Offset, Page, PageQuery},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(of_node))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A node's name or id.
    node: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
}

#[utoipa::path(get, path = "/api/v2/runs", tag = "runs", params(ListQuery),
    responses((status = 200, description = "queued and executing runs", body = Vec<Run>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    Ok(Json(
        db::runs::list(&state.pool, q.node.as_deref(), page.limit, page.offset).await?,
    ))
}

/// The runs of one node (at most one, by construction); an unknown node is a 404.
#[utoipa::path(get, path = "/api/v2/runs/{node}", tag = "runs",
    params(("node" = String, Path, description = "the node's id or name"), PageQuery),
    responses((status = 200, body = Vec<Run>), (status = 404, body = ErrorBody)))]
async fn of_node(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let page = q.page();
    let mut conn = state.pool.acquire().await?;
    let id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    drop(conn);
    Ok(Json(
        db::runs::list(&state.pool, Some(&id.to_string()), page.limit, page.offset).await?,
    ))
}
