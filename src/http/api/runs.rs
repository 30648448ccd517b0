//! `/api/v2/runs`: the run queue (queued and executing runs).

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;

use crate::{
    db::{self, keys::Key, runs::Run},
    http::{
        ApiError, AppState,
        extract::{ApiPath, ApiQuery, Page, PageQuery},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/runs", get(list))
        .route("/api/v2/runs/{node}", get(of_node))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A node's name or id.
    node: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let page = Page::new(q.limit, q.offset)?;
    Ok(Json(
        db::runs::list(&state.pool, q.node.as_deref(), page.limit, page.offset).await?,
    ))
}

/// The runs of one node (at most one, by construction); an unknown node is a 404.
async fn of_node(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let page = q.page()?;
    let mut conn = state.pool.acquire().await?;
    let id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    drop(conn);
    Ok(Json(
        db::runs::list(&state.pool, Some(&id.to_string()), page.limit, page.offset).await?,
    ))
}
