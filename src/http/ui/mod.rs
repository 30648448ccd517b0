//! The web UI: server-rendered pages (askama templates under `templates/`) with htmx and
//! SortableJS, vendored under `assets/` and embedded in the binary. Pages call the same
//! `db` functions and [`crate::http::actions`] the REST API calls; the page script follows
//! the REST event stream (`/api/v2/events`, authenticated by the session cookie) to change
//! states on screen without reloading.
//!
//! Every page but `/login` (and the static assets) needs a session; state-changing requests
//! also need the session's CSRF token (see [`csrf`]).

mod annealer;
mod assets;
mod csrf;
mod deployments;
mod error;
mod graph;
mod grid;
mod layout;
mod node_roles;
mod nodes;
mod overview;
pub mod session;
mod setup;
mod snapshots;
pub mod throttle;
mod view;

use axum::{Router, middleware};

use crate::http::state::AppState;

/// Every UI route: the login page and assets in the open, everything else behind a session.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .merge(overview::router())
        .merge(deployments::router())
        .merge(snapshots::router())
        .merge(graph::router())
        .merge(nodes::router())
        .merge(annealer::router())
        .merge(node_roles::router())
        .merge(setup::router())
        .route_layer(middleware::from_fn_with_state(
            state,
            session::require_session,
        ));
    Router::new()
        .merge(session::router())
        .merge(assets::router())
        .merge(pages)
}
