//! Logging in and out, and the session every other page needs.
//!
//! `/login` takes an admin token or a user name and password and opens a session: a random
//! token in the `crowbar_session` cookie (HttpOnly, SameSite=Strict), stored only as its
//! SHA-256. The login form itself is protected by a double-submit token (a cookie of its
//! own that the form must repeat), so another site cannot log a browser in.
//!
//! Failed logins are backed off per source address and per user name
//! ([`super::throttle`]: 429 with `Retry-After`), and password checks take turns
//! ([`crate::passwords`]).

use std::{net::SocketAddr, time::Duration};

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Extension, Form, Router,
    extract::{ConnectInfo, FromRequestParts, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{csrf, error::UiError, throttle::Attempt};
use crate::{
    db::{
        self,
        audit::{Object, Who},
        events::Actor,
        keys,
        tokens::Lookup,
        users::{SessionCaller, SessionOwner},
    },
    domain::policy::{Action, Role},
    http::{
        audit::{Acting, Refused, RequestId},
        error::ApiError,
        policy,
        state::AppState,
    },
    telemetry::metrics,
};

/// The session cookie.
pub const COOKIE: &str = "crowbar_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "crowbar_login";
/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The logged-in session of a UI request (set by [`require_session`]).
#[derive(Debug, Clone)]
pub struct Session {
    /// Who the audit trail names for changes made in this session.
    pub actor: Actor,
    /// What the session may do (pages hide what it may not).
    pub role: Role,
    /// The token state-changing requests must send in `X-CSRF-Token`.
    pub csrf: String,
    /// Who acts in this request and with which action, for the audit trail.
    pub acting: Acting,
}

impl Session {
    /// Whether the session's role may take `action` (pages show only what it may).
    pub fn may(&self, action: Action) -> bool {
        action.allows(self.role)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| UiError::new(StatusCode::UNAUTHORIZED, "log in first"))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The caller of the request's live session, if it has one.
pub async fn caller_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionCaller>, UiError> {
    match cookie(headers, COOKIE) {
        Some(token) => Ok(db::users::session_caller(&state.pool, token).await?),
        None => Ok(None),
    }
}

/// Middleware of every page: no session → to `/login` (pages) or 401 (actions, with
/// `HX-Redirect` so htmx goes to the login page); a state-changing request without the
/// session's CSRF token, or one the session's role may not make → 403.
pub async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = cookie(request.headers(), COOKIE).map(str::to_string);
    let caller = match caller_of(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let route = policy::route_of(&request);
    let method = request.method().clone();
    let (Some(token), Some(caller)) = (token, caller) else {
        if safe {
            let next = request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string();
            let target = format!("/login?next={}", urlencode(&next));
            return Redirect::to(&target).into_response();
        }
        state
            .refusals
            .record_request(
                &state.pool,
                (request.method(), request.extensions()),
                &route,
                None,
                StatusCode::UNAUTHORIZED,
            )
            .await;
        let mut response =
            UiError::new(StatusCode::UNAUTHORIZED, "your session ended; log in again")
                .into_response();
        response
            .headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/login"));
        return response;
    };
    let decided = if !safe && !csrf::is_valid(request.headers(), &token) {
        Err("this request lacks the page's CSRF token; reload the page and try again".to_string())
    } else {
        match policy::action_of(&method, &route) {
            Some(action) if action.allows(caller.role) => Ok(Acting::of(
                request.extensions(),
                caller.actor.clone(),
                Some(caller.role),
                action,
            )),
            Some(action) => Err(format!(
                "a {} may not do this; it needs the {} role (ask an admin)",
                caller.role,
                action.rule().least
            )),
            None => Err(format!("no policy allows {method} {route}")),
        }
    };
    let acting = match decided {
        Ok(acting) => acting,
        Err(message) => {
            let who = Some((&caller.actor, Some(caller.role)));
            state
                .refusals
                .record_request(
                    &state.pool,
                    (request.method(), request.extensions()),
                    &route,
                    who,
                    StatusCode::FORBIDDEN,
                )
                .await;
            return UiError::new(StatusCode::FORBIDDEN, message).into_response();
        }
    };
    request.extensions_mut().insert(Session {
        actor: caller.actor,
        role: caller.role,
        csrf: csrf::token_for(&token),
        acting,
    });
    next.run(request).await
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Longest `next=` path a login redirects to; longer ones go to `/`.
const MAX_NEXT_LEN: usize = 2048;

/// Where a login sends the browser: only a plain path of this site, else `/`. Browsers
/// drop tabs and newlines from URLs and read `\` as `/`, so `/\t/evil.example` or
/// `/\evil.example` would become `//evil.example`, another site: a path with any control
/// character, whitespace or backslash is refused outright rather than cleaned.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.len() <= MAX_NEXT_LEN
                && path.starts_with('/')
                && !path.starts_with("//")
                && !path
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '\\') =>
        {
            path
        }
        _ => "/",
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    login_csrf: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(Query(q): Query<NextQuery>) -> Response {
    login_form(
        StatusCode::OK,
        local_path(q.next.as_deref()).to_string(),
        None,
    )
}

/// The login page with a fresh double-submit token in its cookie and its form.
fn login_form(status: StatusCode, next: String, error: Option<String>) -> Response {
    let login_csrf = keys::new_token();
    let cookie = format!("{LOGIN_COOKIE}={login_csrf}; Path=/login; HttpOnly; SameSite=Strict");
    let page = LoginPage {
        next,
        login_csrf,
        error,
    };
    let mut response = (status, page).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    login_csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// How a login attempt ended.
enum Verdict {
    /// The token, or the user and password, matched: a session for this owner.
    Owner(SessionOwner),
    /// A wrong token, an unknown user or a wrong password (alike, on purpose).
    Refused,
    /// Too many failures from this source or for this user: refused without checking.
    Locked(Duration),
}

async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    let next = local_path(form.next.as_deref()).to_string();
    if cookie(&headers, LOGIN_COOKIE) != Some(form.login_csrf.as_str()) {
        return Ok(login_form(
            StatusCode::FORBIDDEN,
            next,
            Some("the login form expired; please try again".into()),
        ));
    }
    let token = form.token.trim();
    let user = form.user.trim();
    let attempt = Attempt {
        // the peer of the connection; None only when served without connection info
        source: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        user: (token.is_empty() && !user.is_empty()).then_some(user),
    };
    let verdict = match state.logins.wait(&attempt) {
        Some(wait) => Verdict::Locked(wait),
        None => authenticate(&state, &attempt, &form).await?,
    };
    let refused = || {
        login_form(
            StatusCode::UNAUTHORIZED,
            next.clone(),
            Some("wrong token, or wrong user name or password".into()),
        )
    };
    let owner = match verdict {
        Verdict::Owner(owner) => owner,
        Verdict::Refused => {
            state.logins.failed(&attempt);
            metrics::login("refused");
            tracing::info!("UI login refused");
            // the name claimed, when it could be a user's: never a token or a password
            let claimed = attempt
                .user
                .filter(|u| db::users::valid_name(u))
                .map(Actor::user);
            state
                .refusals
                .record(
                    &state.pool,
                    Refused {
                        actor: claimed.as_ref(),
                        role: None,
                        method: &Method::POST,
                        route: "/login",
                        status: StatusCode::UNAUTHORIZED,
                        source: attempt.source,
                        request_id: request_id.as_ref().map(|Extension(id)| id.0.as_str()),
                    },
                )
                .await;
            return Ok(refused());
        }
        Verdict::Locked(wait) => {
            metrics::login("locked");
            tracing::info!(retry_after = ?wait, "UI login refused: too many failures");
            return Ok(locked(next.clone(), wait));
        }
    };
    let actor = owner.actor();
    // None: the token was revoked or the user deleted since it was checked
    let Some(token) = db::users::open_session(&state.pool, &owner, LIFETIME).await? else {
        tracing::info!(actor = %actor, "UI login refused: its owner went meanwhile");
        return Ok(refused());
    };
    state.logins.succeeded(&attempt);
    metrics::login("ok");
    tracing::info!(actor = %actor, "UI login");
    let who = Who {
        actor: actor.0.clone(),
        role: None,
        source: attempt.source,
        request_id: request_id.map(|Extension(id)| id.0),
        action: "session.login",
    };
    record_session(&state, &who, &owner).await;
    let mut response = Redirect::to(&next).into_response();
    // Secure when browsers come over HTTPS: the cookie then never travels in the clear
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    );
    let expire_login =
        format!("{LOGIN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0");
    for value in [cookie, expire_login] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The login page answering 429, with `Retry-After` in whole seconds (rounded up).
fn locked(next: String, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = login_form(
        StatusCode::TOO_MANY_REQUESTS,
        next,
        Some(format!(
            "too many failed logins; try again in {seconds} seconds"
        )),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// An API token, else a user name and password. An unknown user's password is checked
/// all the same (against a dummy hash), so that it is refused exactly like a wrong one.
async fn authenticate(
    state: &AppState,
    attempt: &Attempt<'_>,
    form: &LoginForm,
) -> Result<Verdict, UiError> {
    let token = form.token.trim();
    if !token.is_empty() {
        return Ok(match db::tokens::authenticate(&state.pool, token).await? {
            Lookup::Valid(token) => Verdict::Owner(SessionOwner::Token {
                id: token.id,
                name: token.name,
            }),
            Lookup::Expired | Lookup::Unknown => Verdict::Refused,
        });
    }
    let Some(user) = attempt.user else {
        return Ok(Verdict::Refused);
    };
    let credentials = db::users::credentials(&state.pool, user).await?;
    let slot = state
        .passwords
        .slot()
        .await
        .map_err(|e| UiError(ApiError::internal(e)))?;
    // failures counted while this waited for its turn count too: a flood of guesses stops
    // being checked once the first ones have failed
    if let Some(wait) = state.logins.wait(attempt) {
        return Ok(Verdict::Locked(wait));
    }
    let (id, phc) = credentials.unzip();
    let matches = state
        .passwords
        .verify(slot, &form.password, phc.as_deref())
        .await;
    Ok(match id {
        Some(id) if matches => Verdict::Owner(SessionOwner::User {
            id,
            name: user.to_string(),
        }),
        _ => Verdict::Refused,
    })
}

async fn logout(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    if let Some(token) = cookie(&headers, COOKIE) {
        let caller = db::users::session_caller(&state.pool, token).await?;
        let closed = db::users::close_session(&state.pool, token).await?;
        if let (Some(caller), Some(owner)) = (caller, closed) {
            let who = Who {
                actor: caller.actor.0,
                role: Some(caller.role.as_str()),
                source: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
                request_id: request_id.map(|Extension(id)| id.0),
                action: "session.logout",
            };
            record_session(&state, &who, &owner).await;
        }
    }
    let mut response = (StatusCode::NO_CONTENT, ()).into_response();
    response
        .headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/login"));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("crowbar_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// Records a login or a logout of `owner`'s session. A failure to record is logged: the
/// session is opened or closed either way.
async fn record_session(state: &AppState, who: &Who, owner: &SessionOwner) {
    let object = match owner {
        SessionOwner::Token { id, name } => Object::new("token", *id, name.clone()),
        SessionOwner::User { id, name } => Object::new("user", *id, name.clone()),
    };
    let result = async {
        let mut conn = state.pool.acquire().await?;
        db::audit::record(&mut conn, who, &object, &serde_json::json!({})).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record a login or logout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; crowbar_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn redirects_stay_on_this_site() {
        for kept in [
            "/",
            "/nodes?x=1",
            "/deployments/web#grid",
            "/nodes/n1.example.com",
        ] {
            assert_eq!(local_path(Some(kept)), kept);
        }
        let long = format!("/{}", "a".repeat(MAX_NEXT_LEN));
        for hostile in [
            "",
            "nodes",
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\\evil.example",
            "\\/evil.example",
            "/nodes\\..\\x",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\u{0}/evil.example",
            "/\u{1b}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "/ /evil.example",
            "/\u{a0}/evil.example",
            "/\u{2028}/evil.example",
            "/\u{3000}/evil.example",
            " /nodes",
            long.as_str(),
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(urlencode("/nodes?a=b&c"), "/nodes%3Fa%3Db%26c");
    }
}
