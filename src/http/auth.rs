//! Who is calling (API.md "Auth").
//!
//! Every `/api/v2` route sits behind [`require_token`]: `Authorization: Bearer <token>` with
//! an admin token (`api_tokens`) or a node token (`nodes.token_hash`); anything else is a
//! 401. Node tokens are denied by default (403): [`require_token`] lets them through only to
//! `GET`, `PUT` and `PATCH` of `/api/v2/nodes/{own id or name}` (and `GET` of its `/install`), and the node update handler
//! accepts only `alive` and, as an installer's report, `bootenv` from them. New routes are therefore admin-only unless
//! they are added to [`node_may`].
//!
//! Reading requests (`GET`, `HEAD`) are also accepted with a web UI session cookie instead
//! of a token, as an admin: that is how the UI's pages follow the event stream. Changes
//! always need a token (the UI makes its changes through its own CSRF-checked routes).

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{error::ApiError, state::AppState};
use crate::db::{self, events::Actor, keys::Key};

/// The authenticated caller of an `/api/v2` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin token, by its name in `api_tokens`.
    Admin { name: String },
    /// A node's own token.
    Node { id: i64, name: String },
}

impl Caller {
    /// Who the audit trail names for changes this caller makes.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Admin { name } => Actor::admin(name),
            Caller::Node { name, .. } => Actor::node(name),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin { .. })
    }
}

/// The caller [`require_token`] authenticated. Outside authenticated routes it is a 401.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Middleware: authenticates the bearer token, keeps node tokens to their own node, and
/// hands the [`Caller`] to handlers.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    let caller = match authenticate(&state, request.headers(), reading).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return unauthorized(),
        Err(error) => return error.into_response(),
    };
    if let Caller::Node { id, name } = &caller
        && !node_may(request.method(), request.uri().path(), *id, name)
    {
        return ApiError::forbidden(
            "a node token may only read its own node and set its own `alive` and `bootenv`",
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn unauthorized() -> Response {
    let mut response = ApiError::unauthorized().into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"crowbar\""),
    );
    response
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    reading: bool,
) -> Result<Option<Caller>, ApiError> {
    let Some(token) = bearer(headers) else {
        if !reading {
            return Ok(None);
        }
        return Ok(crate::http::ui::session::actor_of(state, headers)
            .await
            .map_err(|e| e.0)?
            .map(|name| Caller::Admin { name }));
    };
    if let Some(name) = db::tokens::admin_by_token(&state.pool, token).await? {
        return Ok(Some(Caller::Admin { name }));
    }
    Ok(db::nodes::by_token(&state.pool, token)
        .await?
        .map(|(id, name)| Caller::Node { id, name }))
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a node token may reach: reading and updating its own node, nothing else.
fn node_may(method: &Method, path: &str, id: i64, name: &str) -> bool {
    if !(method == Method::GET || method == Method::PUT || method == Method::PATCH) {
        return false;
    }
    let Some(rest) = path.strip_prefix("/api/v2/nodes/") else {
        return false;
    };
    // its own node, and (reading only) its own OS install
    let segment = match rest.split_once('/') {
        None => rest,
        Some((segment, "install")) if method == Method::GET => segment,
        Some(_) => return false,
    };
    match Key::parse(segment) {
        Key::Id(own) => own == id,
        Key::Name(own) => own == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn node_tokens_reach_only_their_own_node() {
        let ok = |m: Method, p: &str| node_may(&m, p, 7, "n1.example.com");
        assert!(ok(Method::GET, "/api/v2/nodes/7"));
        assert!(ok(Method::GET, "/api/v2/nodes/n1.example.com"));
        assert!(ok(Method::PUT, "/api/v2/nodes/n1.example.com"));
        assert!(ok(Method::PATCH, "/api/v2/nodes/7"));
        assert!(!ok(Method::DELETE, "/api/v2/nodes/7"));
        assert!(!ok(Method::POST, "/api/v2/nodes/7"));
        assert!(!ok(Method::GET, "/api/v2/nodes/8"));
        assert!(!ok(Method::GET, "/api/v2/nodes/n2.example.com"));
        assert!(!ok(Method::GET, "/api/v2/nodes"));
        assert!(!ok(Method::GET, "/api/v2/nodes/7/node_roles"));
        assert!(ok(Method::GET, "/api/v2/nodes/7/install"));
        assert!(ok(Method::GET, "/api/v2/nodes/n1.example.com/install"));
        assert!(!ok(Method::PUT, "/api/v2/nodes/7/install"));
        assert!(!ok(Method::GET, "/api/v2/nodes/8/install"));
        assert!(!ok(Method::PUT, "/api/v2/nodes/7/commit"));
        assert!(!ok(Method::GET, "/api/v2/deployments/7"));
    }
}
