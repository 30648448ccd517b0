//! Liveness and readiness probes (no auth).

use axum::{Router, extract::State, http::StatusCode, routing::get};

use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// 200 while the process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when the database answers and every migration is applied, else 503.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if crate::db::ready(&state.pool).await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database not ready\n")
    }
}
