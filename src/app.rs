//! The running daemon: HTTP serving and background tasks under one shutdown token.

use std::{future::IntoFuture, net::SocketAddr, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{self, AppState};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// After `shutdown` is cancelled, how long in-flight requests may take to finish before
    /// the server stops waiting for them.
    pub shutdown_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves on `listener` until `shutdown` is cancelled, then drains in-flight requests.
/// Tests bind `127.0.0.1:0` and pass their own token.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(state, listener, shutdown, RunOptions::default()).await
}

/// [`run`] with explicit options. Returns at the latest `shutdown_grace` after `shutdown`
/// is cancelled; requests still running then are abandoned.
pub async fn run_with(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: RunOptions,
) -> anyhow::Result<()> {
    // event streams end and the event hub stops with the server
    let state = AppState {
        shutdown: shutdown.clone(),
        ..state
    };
    state.events.start(shutdown.clone());
    // the peer address is the source the rate limits of the boot-time routes count
    let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(options.shutdown_grace).await;
    };
    tokio::select! {
        result = server => result.context("HTTP server failed"),
        () = grace_over => {
            tracing::warn!(
                grace = ?options.shutdown_grace,
                "requests still running after the shutdown grace; abandoning them"
            );
            Ok(())
        }
    }
}
