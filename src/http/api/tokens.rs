//! `/api/v2/tokens`: admin tokens, created and revoked through the API (API.md "Auth"), and
//! `/api/v2/nodes/{node}/token`: a node's own token, rotated.
//!
//! Tokens are shown once, when made; only their sha-256 hashes are stored. Listing shows
//! names and dates, never a token.

use axum::{Json, extract::State, response::Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::{
    db::{self, keys::Key, tokens::TokenInfo},
    http::{
        auth::Caller,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, PageQuery},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, revoke))
        .routes(routes!(rotate_node_token))
}

/// Every admin token (revoked ones too, with `revoked_at`), by id.
#[utoipa::path(get, path = "/api/v2/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, body = Vec<TokenInfo>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::tokens::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = TokenCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// What the audit trail calls changes made with the token, e.g. `ci-pipeline`.
    #[schema(schema_with = super::schemas::token_name)]
    name: String,
}

/// A new token, with the token itself (shown only here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TokenCreated)]
struct Created {
    #[serde(flatten)]
    info: TokenInfo,
    token: String,
}

/// Creates an admin token. Names are unique, revoked tokens' names included.
#[utoipa::path(post, path = "/api/v2/tokens", tag = "tokens", request_body = CreateBody,
    responses((status = 201, description = "the token (shown only here)", body = Created),
              (status = 409, description = "the name is taken", body = ErrorBody),
              (status = 422, description = "not a valid name", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let mut tx = state.pool.begin().await?;
    let (info, token) = db::tokens::create(&mut tx, &body.name).await?;
    tx.commit().await?;
    tracing::info!(token = %info.name, by = %caller.actor(), "admin token created");
    Ok(created(
        format!("/api/v2/tokens/{}", info.id),
        Created { info, token },
    ))
}

#[utoipa::path(get, path = "/api/v2/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "the token's id or name")),
    responses((status = 200, body = TokenInfo), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::tokens::get(&mut conn, &Key::parse(&token)).await?))
}

/// Revokes a token: it stops working at once (revoking twice changes nothing). The last
/// working token cannot be revoked.
#[utoipa::path(delete, path = "/api/v2/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "the token's id or name")),
    responses((status = 200, description = "the revoked token", body = TokenInfo),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the last working token", body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let info = db::tokens::revoke(&mut tx, &Key::parse(&token)).await?;
    tx.commit().await?;
    tracing::info!(token = %info.name, by = %caller.actor(), "admin token revoked");
    Ok(Json(info))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct NodeToken {
    node_id: i64,
    /// The node's new token (shown only here); the old one no longer works.
    token: String,
}

/// Gives a node a new token, e.g. when it is reinstalled or its token leaked. Admins only.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/token", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = NodeToken), (status = 404, body = ErrorBody)))]
async fn rotate_node_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeToken>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let node_id = db::nodes::id_of(&mut tx, &Key::parse(&node)).await?;
    let token =
        db::nodes::rotate_token(&mut tx, node_id, &caller.actor(), "rotated by an admin").await?;
    tx.commit().await?;
    tracing::info!(node_id, by = %caller.actor(), "node token rotated");
    Ok(Json(NodeToken { node_id, token }))
}
