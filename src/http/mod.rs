//! The HTTP edge: REST API, health probes, and (later) the web UI and events.

pub mod error;
mod health;

use std::time::Duration;

use axum::{Router, http::StatusCode};
use sqlx::PgPool;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer, trace::TraceLayer};

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
}

/// The whole HTTP surface, one router per resource merged here.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(unknown_route)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(TraceLayer::new_for_http())
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
