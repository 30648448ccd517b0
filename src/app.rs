//! The running daemon: HTTP serving and background tasks under one shutdown token.

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{self, AppState};

/// Serves on `listener` until `shutdown` is cancelled, then drains in-flight requests.
/// Tests bind `127.0.0.1:0` and pass their own token.
pub async fn run(
    pool: PgPool,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = http::router(AppState::new(pool));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")
}
