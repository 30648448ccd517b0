//! `GET /api/v2/nodes/{node}/install`: where a node's OS install stands. Node tokens may
//! read their own: the installer waits for `installed` (the provisioner's confirmation)
//! before its final reboot.

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, installs::Install, keys::Key},
    http::{
        error::{ApiError, ErrorBody},
        extract::ApiPath,
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/install", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, description = "the node's OS install", body = Install),
              (status = 404, description = "no such node, or it was never installed", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Install>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    let install = db::installs::get(&mut conn, id).await?;
    install
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("node `{node}` has no OS install")))
}
