//! Who is calling (API.md "Auth"), and whether they may (docs/access.md).
//!
//! Every `/api/v2` route sits behind [`require_token`]: `Authorization: Bearer <token>` with
//! an API token (`api_tokens`, with a role) or a node token (`nodes.token_hash`); anything
//! else, an expired token included, is a 401. The route's action ([`super::policy`]) and the
//! caller's role decide the rest: 403 `forbidden` when the role may not. Node tokens reach
//! only `GET`, `PUT` and `PATCH` of `/api/v2/nodes/{own id or name}` (and `GET` of its
//! `/install`), and the node update handler accepts only `alive` and, as an installer's
//! report, `bootenv` from them.
//!
//! Reading requests (`GET`, `HEAD`) are also accepted with a web UI session cookie instead
//! of a token, with the session's role: that is how the UI's pages follow the event stream.
//! Changes always need a token (the UI makes its changes through its own CSRF-checked routes).
//!
//! Refused requests are recorded in the audit trail ([`super::audit::Refusals`]).

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{audit::Acting, error::ApiError, policy, state::AppState};
use crate::{
    db::{self, events::Actor, keys::Key, tokens::Lookup},
    domain::policy::{Action, Role},
};

/// The authenticated caller of an `/api/v2` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person or a program with a role: an API token, or a UI session reading. `user_id`
    /// is the user it acts for (none: the built-in admin token and tokens made with it).
    Member {
        actor: Actor,
        role: Role,
        user_id: Option<i64>,
    },
    /// A node's own token.
    Node { id: i64, name: String },
}

impl Caller {
    /// Who the audit trail names for changes this caller makes.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Member { actor, .. } => actor.clone(),
            Caller::Node { name, .. } => Actor::node(name),
        }
    }

    pub fn is_node(&self) -> bool {
        matches!(self, Caller::Node { .. })
    }

    /// The caller's role; `None` for a node.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Member { role, .. } => Some(*role),
            Caller::Node { .. } => None,
        }
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

/// Why a request is refused before it reaches its handler.
enum Refusal {
    /// No usable credentials (401).
    Unauthenticated(ApiError),
    /// The caller may not take the route's action (403).
    Forbidden(Caller, ApiError),
}

/// Middleware: authenticates the bearer token, decides the route's action for the caller,
/// and hands the [`Caller`] and [`Acting`] to handlers.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = policy::route_of(&request);
    let method = request.method().clone();
    let decided = match authenticate(&state, request.headers(), is_read(&method)).await {
        Err(error) => return error.into_response(),
        Ok(found) => decide(found, &method, &route, request.uri().path()),
    };
    match decided {
        Ok((caller, action)) => {
            let acting = Acting::of(request.extensions(), caller.actor(), caller.role(), action);
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(acting);
            next.run(request).await
        }
        Err(refusal) => {
            let (caller, error) = match *refusal {
                Refusal::Unauthenticated(error) => (None, error),
                Refusal::Forbidden(caller, error) => (Some(caller), error),
            };
            let actor = caller.as_ref().map(Caller::actor);
            state
                .refusals
                .record_request(
                    &state.pool,
                    (request.method(), request.extensions()),
                    &route,
                    actor
                        .as_ref()
                        .map(|a| (a, caller.as_ref().and_then(Caller::role))),
                    error.status,
                )
                .await;
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"crowbar\""),
                );
            }
            response
        }
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// The caller's verdict on `route`: who they are and the action they may take.
fn decide(
    found: Found,
    method: &Method,
    route: &str,
    path: &str,
) -> Result<(Caller, Action), Box<Refusal>> {
    let caller = match found {
        Found::Caller(caller) => caller,
        Found::Expired => {
            return Err(Box::new(Refusal::Unauthenticated(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this token has expired; ask an admin for a new one (`crowbar tokens create`)",
            ))));
        }
        Found::Nobody => return Err(Box::new(Refusal::Unauthenticated(ApiError::unauthorized()))),
    };
    let Some(action) = policy::action_of(method, route) else {
        return Err(Box::new(Refusal::Forbidden(
            caller,
            ApiError::forbidden(format!("no policy allows {method} {route}")),
        )));
    };
    match &caller {
        Caller::Node { id, name } => {
            if !(action.node_may() && node_may(method, path, *id, name)) {
                return Err(Box::new(Refusal::Forbidden(
                    caller,
                    ApiError::forbidden(
                        "a node token may only read its own node and set its own `alive` and `bootenv`",
                    ),
                )));
            }
        }
        Caller::Member { role, .. } => {
            if !action.allows(*role) {
                let least = action.rule().least;
                return Err(Box::new(Refusal::Forbidden(
                    caller.clone(),
                    ApiError::forbidden(format!(
                        "a {role} may not {method} {route}; it needs the {least} role (ask an admin)"
                    )),
                )));
            }
        }
    }
    Ok((caller, action))
}

/// Whether the credentials in `headers` still authenticate a reader (a long request, such
/// as the event stream, asks again now and then): false once the token is revoked or
/// expired or the session has ended. A database failure is not a verdict: true.
pub async fn still_authenticated(state: &AppState, headers: &HeaderMap) -> bool {
    match authenticate(state, headers, true).await {
        Ok(found) => matches!(found, Found::Caller(_)),
        Err(e) => {
            tracing::warn!(error = ?e, "checking a stream's credentials failed; keeping it");
            true
        }
    }
}

/// What the request's credentials turned out to be.
enum Found {
    Caller(Caller),
    Expired,
    Nobody,
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    reading: bool,
) -> Result<Found, ApiError> {
    let Some(token) = bearer(headers) else {
        if !reading {
            return Ok(Found::Nobody);
        }
        return Ok(crate::http::ui::session::caller_of(state, headers)
            .await
            .map_err(|e| e.0)?
            .map_or(Found::Nobody, |session| {
                Found::Caller(Caller::Member {
                    actor: session.actor,
                    role: session.role,
                    user_id: session.user_id,
                })
            }));
    };
    match db::tokens::authenticate(&state.pool, token).await? {
        Lookup::Valid(token) => {
            return Ok(Found::Caller(Caller::Member {
                actor: Actor::token(&token.name),
                role: token.role,
                user_id: token.user_id,
            }));
        }
        Lookup::Expired => return Ok(Found::Expired),
        Lookup::Unknown => {}
    }
    Ok(db::nodes::by_token(&state.pool, token)
        .await?
        .map_or(Found::Nobody, |(id, name)| {
            Found::Caller(Caller::Node { id, name })
        }))
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
