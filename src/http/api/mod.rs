//! The REST API under `/api/v2` (API.md "Resources").
//!
//! One module per resource, each with a `router()` declaring its full paths; they are merged
//! in [`router`], behind the bearer-token check. Handlers parse the request with the
//! extractors of [`super::extract`], make the changes the web UI makes too through
//! [`super::actions`] and the rest through `db::*` inside a transaction, and return JSON or
//! an [`super::error::ApiError`]. To add a resource: write `api/<resource>.rs` with
//! `pub fn router() -> Router<AppState>`, and merge it below.

mod access;
mod anneal;
mod attribs;
mod audit;
mod bmcs;
mod catalog;
mod conventions;
mod deployment_roles;
mod deployments;
mod events;
mod installs;
mod networks;
mod node_roles;
mod nodes;
mod power;
mod respond;
mod runs;
mod schemas;
mod tokens;
mod users;

use axum::{Router, middleware};
use serde_json::Value;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::{auth, error::ErrorBody, state::AppState};

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
        .merge(bmcs::router())
        .merge(power::router())
        .merge(events::router())
        .merge(tokens::router())
        .merge(attribs::router())
        .merge(deployment_roles::router())
        .merge(users::router())
        .merge(networks::router())
        .merge(installs::router())
        .merge(audit::router())
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
Every `/api/v2` request needs `Authorization: Bearer <token>` (an API token with a role: \
viewer, operator or admin; node tokens may only read their own node and set its `alive` and \
`bootenv`). A role without the right gets 403 `forbidden`. Every 4xx and 5xx answer \
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
        (name = "tokens", description = "API tokens, each with a role"),
        (name = "audit", description = "who changed what, when and from where"),
        (name = "attribs", description = "named data of roles, on nodes, deployments and noderoles"),
        (name = "users", description = "people who log in to the web UI with a password"),
        (name = "networks", description = "networks, ranges and the addresses of nodes"),
    )
)]
struct ApiDoc;
