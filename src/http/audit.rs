//! The HTTP side of the audit trail: who is acting in a request ([`Acting`], set by the
//! API's and the UI's auth middleware), each request's id ([`request_id`]), and the record
//! of refused requests, rate-limited ([`Refusals`]).

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode, request::Parts},
    middleware::Next,
    response::Response,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::error::ApiError;
use crate::{
    db::{
        self,
        audit::{Object, Who},
        events::Actor,
    },
    domain::policy::{Action, Role},
};

/// The request id header: taken from the client when it is a plain short string, made
/// up otherwise, and sent back on every answer.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Middleware: gives every request a [`RequestId`] and answers with it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(|| db::keys::new_token()[..32].to_string(), str::to_string);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

/// A client's request id is kept when it is 1 to 64 letters, digits, `.`, `_`, `:` or `-`.
fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Who is acting in a request, and which action of the policy table the route takes.
#[derive(Debug, Clone)]
pub struct Acting {
    pub actor: Actor,
    /// `None` for a node's own token.
    pub role: Option<Role>,
    pub action: Action,
    pub source: Option<IpAddr>,
    pub request_id: Option<String>,
}

impl Acting {
    /// Who acts in the request with these `extensions`, with `role`, taking `action`.
    pub fn of(
        extensions: &axum::http::Extensions,
        actor: Actor,
        role: Option<Role>,
        action: Action,
    ) -> Acting {
        Acting {
            actor,
            role,
            action,
            source: source(extensions),
            request_id: extensions.get::<RequestId>().map(|id| id.0.clone()),
        }
    }

    /// Who the audit trail names for this request's change; `None` when the action changes
    /// nothing.
    pub fn who(&self) -> Option<Who> {
        Some(Who {
            actor: self.actor.0.clone(),
            role: self.role.map(Role::as_str),
            source: self.source,
            request_id: self.request_id.clone(),
            action: self.action.audit_name()?,
        })
    }

    /// Records the change this request made to `object`, in the change's transaction.
    /// Every request that changes something calls it once, just before committing.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        object: &Object,
        summary: Value,
    ) -> Result<(), ApiError> {
        if let Some(who) = self.who() {
            db::audit::record(conn, &who, object, &summary).await?;
        }
        Ok(())
    }
}

/// The acting caller, set by the route's auth middleware; outside authenticated routes a 401.
impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Acting>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The TCP peer of the request, when the server knows it (never a header the caller wrote).
pub fn source(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Default of `--audit-refusals-per-minute`.
pub const DEFAULT_REFUSALS_PER_MINUTE: u32 = 60;

/// Refused requests (401, 403) are recorded, but at most so many a minute per daemon: a
/// flood of bad tokens cannot fill the table. Those not recorded are counted, and the next
/// record says how many were left out.
pub struct Refusals {
    limiter: DefaultDirectRateLimiter,
    left_out: AtomicU64,
}

/// One refused request.
pub struct Refused<'a> {
    pub actor: Option<&'a Actor>,
    pub role: Option<Role>,
    pub method: &'a Method,
    pub route: &'a str,
    pub status: StatusCode,
    pub source: Option<IpAddr>,
    pub request_id: Option<&'a str>,
}

impl<'a> Refused<'a> {
    /// The source and request id of a request, from its extensions.
    pub fn of_request(extensions: &'a axum::http::Extensions) -> (Option<IpAddr>, Option<&'a str>) {
        (
            source(extensions),
            extensions.get::<RequestId>().map(|id| id.0.as_str()),
        )
    }
}

impl Refusals {
    pub fn new(per_minute: NonZeroU32) -> Refusals {
        Refusals {
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
            left_out: AtomicU64::new(0),
        }
    }

    /// How many refused requests went unrecorded since the last record.
    pub fn left_out(&self) -> u64 {
        self.left_out.load(Ordering::Relaxed)
    }

    /// Records the refusal of a request (`method` on `route`, as the router matched it,
    /// with the request's `extensions`) with `status`, by `who` when known: an actor and
    /// its role.
    pub async fn record_request(
        &self,
        pool: &PgPool,
        (method, extensions): (&Method, &axum::http::Extensions),
        route: &str,
        who: Option<(&Actor, Option<Role>)>,
        status: StatusCode,
    ) {
        let (source, request_id) = Refused::of_request(extensions);
        let refused = Refused {
            actor: who.map(|(actor, _)| actor),
            role: who.and_then(|(_, role)| role),
            method,
            route,
            status,
            source,
            request_id,
        };
        self.record(pool, refused).await;
    }

    /// Records `refused` unless the minute's quota is used up. Failing to record is logged,
    /// never an error of the request (it is refused either way).
    pub async fn record(&self, pool: &PgPool, refused: Refused<'_>) {
        if self.limiter.check().is_err() {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let left_out = self.left_out.swap(0, Ordering::Relaxed);
        let mut summary = json!({
            "status": refused.status.as_u16(),
            "method": refused.method.as_str(),
        });
        if left_out > 0 {
            summary["not_recorded_before"] = json!(left_out);
        }
        let who = Who {
            actor: refused
                .actor
                .map_or_else(|| "anonymous".to_string(), |a| a.0.clone()),
            role: refused.role.map(Role::as_str),
            source: refused.source,
            request_id: refused.request_id.map(str::to_string),
            action: "request.refused",
        };
        let object = Object::named("route", refused.route);
        let result = async {
            let mut conn = pool.acquire().await?;
            db::audit::record(&mut conn, &who, &object, &summary).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record a refused request");
        }
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(NonZeroU32::new(DEFAULT_REFUSALS_PER_MINUTE).expect("not zero"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_plain() {
        assert!(valid_request_id("abc-123"));
        assert!(valid_request_id("trace:01.2_x"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("<script>"));
        assert!(!valid_request_id(&"a".repeat(65)));
    }
}
