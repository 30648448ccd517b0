//! The HTTP edge: the REST API (`api`), the web UI (`ui`), the operations both perform
//! (`actions`), the event stream, health probes, boot scripts and discovery for nodes, and
//! the server with its limits.

pub mod actions;
pub mod api;
pub mod audit;
pub mod auth;
mod boot;
mod discover;
pub mod error;
pub mod extract;
mod headers;
mod health;
pub mod policy;
pub mod rate;
pub mod server;
pub mod state;
pub mod ui;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{StatusCode, header},
    middleware,
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer, sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};

pub use error::ApiError;
pub use state::AppState;

/// The whole HTTP surface, one router per resource merged here (and in [`api::router`]).
pub fn router(state: AppState) -> Router {
    crate::telemetry::metrics::install();
    let router = Router::new()
        .merge(health::router())
        .route("/api/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics_text))
        .merge(boot::router(rate::SourceLimit::new(
            "/boot/{mac}",
            state.provisioner.boot_rate,
            state.provisioner.rate_limit_sources,
        )))
        .merge(discover::router(rate::SourceLimit::new(
            "/discover",
            state.provisioner.discover_rate,
            state.provisioner.rate_limit_sources,
        )))
        .merge(api::router(state.clone()))
        .merge(crate::http::ui::router(state.clone()))
        .fallback(unknown_route)
        // after every route is added: it applies to the routes present
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        // outside the timeout: its bare 408 gets the error body too
        .layer(middleware::map_response(error::ensure_error_body))
        .layer(middleware::from_fn(count_request))
        .layer(middleware::from_fn(audit::request_id))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // the matched route, never the raw path (it names nodes)
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!("request", method = %request.method(), route)
            }),
        )
        // bearer tokens and UI session cookies never reach a log
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]));
    // outermost: fallbacks, timeouts and caught panics get them too
    headers::on_every_response(router)
}

/// The OpenAPI document of the `/api/v2` routes (no auth: it holds nothing secret),
/// generated once.
async fn openapi_json() -> impl axum::response::IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_string_pretty(&api::openapi())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}

/// Prometheus text format (no auth, like the health probes: counts and route templates only,
/// never names or data).
async fn metrics_text(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let mut body = crate::telemetry::metrics::render(&state.pool).await?;
    body.push_str(&crate::telemetry::metrics::password_checks(
        state.passwords.running(),
        state.passwords.most_at_once(),
    ));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}

/// Counts every answered request by method, matched route and status.
async fn count_request(request: Request, next: middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    crate::telemetry::metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
