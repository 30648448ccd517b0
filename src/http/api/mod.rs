//! The REST API under `/api/v2` (API.md "Resources").
//!
//! One module per resource, each with a `router()` declaring its full paths; they are merged
//! in [`router`], behind the bearer-token check. Handlers parse the request with the
//! extractors of [`super::extract`], call `db::*` inside a transaction when they write, and
//! return JSON or an [`ApiError`]. To add a resource: write `api/<resource>.rs` with
//! `pub fn router() -> Router<AppState>`, and merge it below.

mod access;
mod anneal;
mod attribs;
mod catalog;
mod conventions;
mod deployment_roles;
mod deployments;
mod events;
mod installs;
mod networks;
mod node_roles;
mod nodes;
mod runs;
mod schemas;
mod tokens;
mod users;

pub use events::{KEEP_ALIVE as EVENT_KEEP_ALIVE, keep_alive_within};

use std::collections::HashMap;

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::{ApiError, AppState, auth, error::ErrorBody};
use crate::db::{
    self,
    explain::Explained,
    noderoles::{NodeRole, NodeRoleFilter},
};

/// Every `/api/v2` route with its OpenAPI operation: the one registry both the router and
/// the document are built from.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(nodes::router())
        .merge(deployments::router())
        .merge(node_roles::router())
        .merge(runs::router())
        .merge(anneal::router())
        .merge(catalog::router())
        .merge(access::router())
        .merge(events::router())
        .merge(tokens::router())
        .merge(attribs::router())
        .merge(deployment_roles::router())
        .merge(users::router())
        .merge(networks::router())
        .merge(installs::router())
}

/// Every `/api/v2` route, each requiring a bearer token.
pub fn router(state: AppState) -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    router.route_layer(middleware::from_fn_with_state(state, auth::require_token))
}

/// The OpenAPI document of every `/api/v2` route (served at `/api/openapi.json`), with the
/// conventions that hold for all of them ([`conventions`]).
pub fn openapi() -> Value {
    conventions::apply(routes().into_openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crowbar",
        description = "Bare-metal provisioning: nodes, roles, noderoles, deployments and the annealer. \
Every `/api/v2` request needs `Authorization: Bearer <token>` (an admin token; node tokens \
may only read their own node and set its `alive` and `bootenv`). Every 4xx and 5xx answer \
has the `ErrorBody`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "nodes", description = "machines, their flags and history"),
        (name = "deployments", description = "the deployment tree, commits, snapshots, plans"),
        (name = "node_roles", description = "roles bound to nodes"),
        (name = "runs", description = "the run queue and convergence"),
        (name = "catalog", description = "barclamps, jigs and roles"),
        (name = "events", description = "the event stream"),
        (name = "tokens", description = "admin API tokens"),
        (name = "attribs", description = "named data of roles, on nodes, deployments and noderoles"),
        (name = "users", description = "people who log in to the web UI with a password"),
        (name = "networks", description = "networks, ranges and the addresses of nodes"),
    )
)]
struct ApiDoc;

/// A noderole as the API shows it: its fields plus `reason` (null when ACTIVE, else why it
/// is not running, from [`db::explain`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithReason<T> {
    #[serde(flatten)]
    pub noderole: T,
    /// Why it is not running: `{code, message, ...}`, or null when ACTIVE.
    pub reason: Option<Value>,
}

impl From<Explained> for WithReason<NodeRole> {
    fn from((noderole, reason): Explained) -> Self {
        WithReason { noderole, reason }
    }
}

/// The page of noderoles `filter` selects, with their reasons.
pub async fn noderole_page(
    state: &AppState,
    filter: &NodeRoleFilter,
) -> Result<Vec<WithReason<NodeRole>>, ApiError> {
    let page = db::explain::page(&state.pool, filter, state.run_cap).await?;
    Ok(page.into_iter().map(WithReason::from).collect())
}

/// Attaches reasons to noderoles (read again with their facts, in one go).
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
    Ok(db::explain::reasons(&state.pool, ids, state.run_cap).await?)
}

/// 201 with a `Location` header.
pub fn created(location: String, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
