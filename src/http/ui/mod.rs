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
mod audit;
pub mod csrf;
pub mod deployments;
mod error;
pub mod graph;
mod grid;
mod layout;
mod node_roles;
mod nodes;
mod overview;
pub mod session;
mod setup;
mod snapshots;
pub mod throttle;
mod timeline;
mod view;

use axum::{Router, handler::Handler, http::Method, middleware, routing};

use crate::http::state::AppState;

/// Every page behind a session, with the list of its (method, route) pairs kept beside the
/// router: the policy test walks them.
fn pages() -> Pages {
    Pages::new()
        .merge(overview::router())
        .merge(deployments::router())
        .merge(snapshots::router())
        .merge(graph::router())
        .merge(nodes::router())
        .merge(annealer::router())
        .merge(node_roles::router())
        .merge(setup::router())
        .merge(audit::router())
}

/// Every UI route: the login page and assets in the open, everything else behind a session.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = pages().router.route_layer(middleware::from_fn_with_state(
        state,
        session::require_session,
    ));
    Router::new()
        .merge(session::router())
        .merge(assets::router())
        .merge(pages)
}

/// Every (method, route) of the pages behind a session.
pub fn page_routes() -> Vec<(Method, &'static str)> {
    pages().routes
}

/// Routes being declared, and the list of them.
pub struct Pages {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Pages {
    fn new() -> Pages {
        Pages {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn get<H: Handler<T, AppState>, T: 'static>(
        mut self,
        route: &'static str,
        handler: H,
    ) -> Pages {
        self.router = self.router.route(route, routing::get(handler));
        self.routes.push((Method::GET, route));
        self
    }

    fn post<H: Handler<T, AppState>, T: 'static>(
        mut self,
        route: &'static str,
        handler: H,
    ) -> Pages {
        self.router = self.router.route(route, routing::post(handler));
        self.routes.push((Method::POST, route));
        self
    }

    fn merge(mut self, other: Pages) -> Pages {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }
}
