//! The running daemon: HTTP serving and background tasks under one shutdown token.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{self, AppState, server::Server};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// After `shutdown` is cancelled, how long in-flight requests may take to finish before
    /// the server stops waiting for them.
    pub shutdown_grace: Duration,
    /// Timeouts, the connection cap and TLS.
    pub server: Server,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            server: Server::default(),
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
        event_keep_alive: http::state::keep_alive_within(options.server.idle_timeout()),
        ..state
    };
    state.events.start(shutdown.clone());
    let app = http::router(state);
    let server = options.server.serve(listener, app, shutdown.clone());
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(options.shutdown_grace).await;
    };
    tokio::select! {
        () = server => Ok(()),
        () = grace_over => {
            tracing::warn!(
                grace = ?options.shutdown_grace,
                "requests still running after the shutdown grace; abandoning them"
            );
            Ok(())
        }
    }
}
