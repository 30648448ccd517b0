//! The HTTP server under the router (docs/operations.md "The HTTP edge"): it holds at most
//! `--http-max-connections` connections at once, speaks TLS when given a certificate, reads
//! each request head within `--http-header-timeout`, closes connections that move no byte
//! for `--http-idle-timeout`, and on shutdown stops accepting while open connections finish
//! their requests.
//!
//! It is hyper's HTTP/1.1 connection under the router rather than `axum::serve`, which
//! has no timer and so cannot bound how long a client takes to send its headers.

mod idle;
mod tls;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use tls::TlsError;

use crate::units::parse_duration;

/// How the daemon serves HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerSettings {
    /// How long a client may take to send a request's head (request line and headers), and
    /// to finish the TLS handshake; also how long an open connection waits for its next
    /// request.
    #[arg(long, env = "CROWBAR_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_header_timeout: Duration,

    /// A connection that moves no byte either way for this long is closed: a client that
    /// stopped sending its body or reading the answer. Event streams send a keep-alive
    /// comment well within it.
    #[arg(long, env = "CROWBAR_HTTP_IDLE_TIMEOUT", default_value = "2m", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,

    /// Connections served at once; a connection over the cap is closed as soon as it is
    /// accepted.
    #[arg(long, env = "CROWBAR_HTTP_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then
    /// any intermediates). Needs --tls-key.
    #[arg(
        long,
        env = "CROWBAR_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM). Needs --tls-cert.
    #[arg(
        long,
        env = "CROWBAR_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// The URL browsers reach crowbar at, when a proxy in front of it terminates TLS; an
    /// https:// URL makes the session cookie Secure while crowbar itself serves plain HTTP.
    #[arg(long, env = "CROWBAR_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

impl ServerSettings {
    /// Whether browsers reach crowbar over HTTPS, so cookies may say `Secure`.
    pub fn https_to_browsers(&self) -> bool {
        self.tls_cert.is_some()
            || self
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than 0 (e.g. 10s)".into()),
        duration => Ok(duration),
    }
}

/// An http:// or https:// URL with a host; the scheme in lower case.
fn public_url(text: &str) -> Result<String, String> {
    let (scheme, rest) = text.split_once("://").unwrap_or_default();
    let scheme = scheme.to_ascii_lowercase();
    if matches!(scheme.as_str(), "http" | "https") && !rest.is_empty() && !rest.starts_with('/') {
        Ok(format!("{scheme}://{rest}"))
    } else {
        Err(format!(
            "`{text}` is not an http:// or https:// URL (e.g. https://crowbar.example.com)"
        ))
    }
}

/// The server as it runs: the settings, with the TLS files read.
#[derive(Clone)]
pub struct Server {
    header_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Server::new(&ServerSettings::default()).expect("the defaults name no TLS files")
    }
}

impl Server {
    /// Reads the TLS files, if any: a file that cannot be used fails here, at start.
    pub fn new(settings: &ServerSettings) -> Result<Server, TlsError> {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            // clap requires both or neither
            _ => None,
        };
        Ok(Server {
            header_timeout: settings.http_header_timeout,
            idle_timeout: settings.http_idle_timeout,
            max_connections: usize::try_from(settings.http_max_connections).unwrap_or(usize::MAX),
            tls,
        })
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// See [`ServerSettings::http_idle_timeout`].
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Serves `app` on `listener` until `shutdown` is cancelled, then waits until every
    /// open connection has finished its request (the caller bounds that wait).
    pub async fn serve(&self, listener: TcpListener, app: Router, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        // connections closed since the cap was last reached, for the log
        let mut refused: u64 = 0;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            };
            // Over the cap, close at once rather than let the connection wait unanswered:
            // the client (or a balancer in front) learns now and can retry elsewhere.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if refused == 0 {
                    tracing::warn!(
                        max = self.max_connections,
                        "connection cap reached: closing new connections until one ends \
                         (--http-max-connections)"
                    );
                }
                refused += 1;
                crate::telemetry::metrics::connection_refused();
                drop(stream);
                continue;
            };
            if refused > 0 {
                tracing::info!(refused, "below the connection cap again");
                refused = 0;
            }
            let connection = self
                .clone()
                .connection(stream, peer, app.clone(), graceful.watcher());
            tokio::spawn(async move {
                connection.await;
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }

    /// One connection: the TLS handshake if any, then requests until the client or the
    /// server closes it, or it idles.
    async fn connection(self, stream: TcpStream, peer: SocketAddr, app: Router, watcher: Watcher) {
        use tower::ServiceExt;
        let _ = stream.set_nodelay(true);
        let (stream, activity) = idle::Tracked::new(stream);
        // Handlers that count by source (failed logins, discovery) read the TCP peer, as
        // axum's `ConnectInfo`; never a header, which any client can write.
        let app = app.map_request(move |mut request: axum::extract::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        });
        let service = TowerToHyperService::new(app);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let served = async {
            match &self.tls {
                None => {
                    let io = TokioIo::new(stream);
                    watcher.watch(http.serve_connection(io, service)).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(self.header_timeout, acceptor.accept(stream));
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return Ok(());
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return Ok(());
                        }
                    };
                    let io = TokioIo::new(stream);
                    watcher.watch(http.serve_connection(io, service)).await
                }
            }
        };
        tokio::select! {
            result = served => if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            },
            () = activity.idle_for(self.idle_timeout) => {
                tracing::debug!(idle = ?self.idle_timeout, "connection idle; closed");
            }
        }
    }
}

/// An error of `accept`: one connection's (it is gone; go on at once) or the process's, such
/// as no file descriptor left (wait a little, so as not to spin).
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_http_or_https() {
        assert_eq!(
            public_url("HTTPS://Crowbar.example.com/").unwrap(),
            "https://Crowbar.example.com/"
        );
        assert_eq!(
            public_url("http://10.0.0.1:3000").unwrap(),
            "http://10.0.0.1:3000"
        );
        for bad in ["crowbar.example.com", "ftp://x", "https://", "https:///x"] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookies_are_secure_when_browsers_use_https() {
        let mut settings = ServerSettings::default();
        assert!(!settings.https_to_browsers());
        settings.public_url = Some("http://crowbar.example.com".into());
        assert!(!settings.https_to_browsers());
        settings.public_url = Some("https://crowbar.example.com".into());
        assert!(settings.https_to_browsers());
        settings.public_url = None;
        settings.tls_cert = Some("cert.pem".into());
        assert!(settings.https_to_browsers());
    }

    #[test]
    fn timeouts_must_be_more_than_zero() {
        assert!(positive_duration("0s").is_err());
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
    }
}
