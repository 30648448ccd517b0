//! The REST API under `/api/v2` (API.md "Resources").
//!
//! One module per resource, each with a `router()` declaring its full paths; they are merged
//! in [`router`], behind the bearer-token check. Handlers parse the request with the
//! extractors of [`super::extract`], call `db::*` inside a transaction when they write, and
//! return JSON or an [`ApiError`]. To add a resource: write `api/<resource>.rs` with
//! `pub fn router() -> Router<AppState>`, and merge it below.

mod anneal;
mod catalog;
mod deployments;
mod events;
mod node_roles;
mod nodes;
mod runs;

use std::collections::HashMap;

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, AppState, auth};
use crate::db::{self, noderoles::NodeRole};

/// Every `/api/v2` route, each requiring a bearer token.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(nodes::router())
        .merge(deployments::router())
        .merge(node_roles::router())
        .merge(runs::router())
        .merge(anneal::router())
        .merge(catalog::router())
        .merge(events::router())
        .route_layer(middleware::from_fn_with_state(state, auth::require_token))
}

/// A noderole as the API shows it: its fields plus `reason` (null when ACTIVE, else why it
/// is not running, from [`db::anneal::reasons`]).
#[derive(Debug, Clone, Serialize)]
pub struct WithReason<T> {
    #[serde(flatten)]
    pub noderole: T,
    pub reason: Option<Value>,
}

/// Attaches reasons to a page of noderoles with one query.
pub async fn with_reasons(
    state: &AppState,
    noderoles: Vec<NodeRole>,
) -> Result<Vec<WithReason<NodeRole>>, ApiError> {
    let ids: Vec<i64> = noderoles.iter().map(|nr| nr.id).collect();
    let mut reasons = reasons_of(state, &ids).await?;
    Ok(noderoles
        .into_iter()
        .map(|noderole| WithReason {
            reason: reasons.remove(&noderole.id),
            noderole,
        })
        .collect())
}

/// Attaches the reason of noderole `id` to one noderole representation.
pub async fn with_reason<T>(
    state: &AppState,
    id: i64,
    noderole: T,
) -> Result<WithReason<T>, ApiError> {
    let mut reasons = reasons_of(state, &[id]).await?;
    Ok(WithReason {
        reason: reasons.remove(&id),
        noderole,
    })
}

async fn reasons_of(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, Value>, ApiError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::anneal::reasons(&state.pool, ids, state.run_cap).await?)
}

/// 201 with a `Location` header.
pub fn created(location: String, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
