//! Security headers on every response: API answers, UI pages, assets, boot files and errors
//! alike (docs/operations.md "The HTTP edge").
//!
//! The content security policy allows only what the daemon serves itself: the UI's scripts
//! and style sheet are files under `/assets/`, its requests and event stream go to the same
//! origin, and no page has inline script or style (htmx is told not to add its indicator
//! style, see `templates/base.html`). No page may be framed, by the policy and by
//! `X-Frame-Options` for older browsers.

use axum::{
    Router,
    http::{HeaderName, HeaderValue, header},
};
use tower_http::set_header::SetResponseHeaderLayer;

/// The policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; worker-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Every header and its value.
pub const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// `router` with the headers set on each of its responses, replacing any a handler set.
pub fn on_every_response<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    HEADERS.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ))
    })
}
