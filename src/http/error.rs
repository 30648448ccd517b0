//! The one error type at the HTTP edge, with the stable body
//! `{"error": {"code": "...", "message": "..."}}` (API.md).

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::db;

/// The body of every 4xx and 5xx answer (for the OpenAPI document; [`ApiError`] writes it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `not_found`, `bind_refused`.
    code: String,
    /// What went wrong, for people.
    message: String,
    /// More about it, when there is more to say.
    details: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <token>` with an API or node token",
        )
    }

    /// The database is away for a moment (a failover): 503 with `Retry-After`, so that a
    /// client retrying an idempotent request once gets through. The cause is logged.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "request failed: the database is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable for a moment (a failover?); retry the request",
        )
    }

    /// A failure the client cannot fix: the cause is logged, the client learns nothing internal.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the daemon's log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // a message may quote the request (serde names the field it choked on); a NUL in
        // it is written out, as the document promises no string holds one
        let message = self.message.replace('\0', "\\u0000");
        let mut error = json!({"code": self.code, "message": message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.code == "database_unavailable" {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Database errors map onto the contract: unknown objects 404, conflicts with the current
/// state 409 (with their code and details), invalid requests 422, anything else a logged
/// 500.
impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> Self {
        match e {
            db::Error::NotFound { .. } => ApiError::not_found(e.to_string()),
            db::Error::Conflict {
                code,
                message,
                details,
            } => {
                let error = ApiError::new(StatusCode::CONFLICT, code, message);
                if details.is_null() {
                    error
                } else {
                    error.with_details(details)
                }
            }
            db::Error::Invalid { code, message } => ApiError::unprocessable(code, message),
            // barclamp imports answer through `barclamps::BarclampError`; the same codes
            db::Error::RolesInUse(_) => {
                ApiError::new(StatusCode::CONFLICT, "barclamp_in_use", e.to_string())
            }
            db::Error::Constraint { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            _ if db::error::is_unavailable(&e) => ApiError::unavailable(e),
            db::Error::Connect { .. }
            | db::Error::Unavailable(_)
            | db::Error::Upgrade(_)
            | db::Error::Migrate(_)
            | db::Error::Sql(_) => ApiError::internal(e),
        }
    }
}

/// A safety net for responses made outside handlers (timeouts, layers): a 4xx/5xx without a
/// body gets the error body, with a code named after its status.
pub async fn ensure_error_body(response: Response) -> Response {
    let status = response.status();
    let has_body = response.headers().contains_key(header::CONTENT_TYPE)
        || axum::body::HttpBody::size_hint(response.body()).upper() != Some(0);
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let mut replaced = (
        status,
        Json(json!({"error": {"code": code, "message": reason.to_string()}})),
    )
        .into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

/// A bare driver error (a `begin` or `commit` in a handler) is classified like any database
/// error: a connection lost in a failover is a 503 the client may retry, not a 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        db::Error::Sql(e).into()
    }
}

impl From<crate::hooks::Veto> for ApiError {
    fn from(veto: crate::hooks::Veto) -> Self {
        ApiError::new(StatusCode::CONFLICT, "vetoed", veto.to_string())
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, middleware, routing::get};
    use tower::ServiceExt;

    use super::*;

    async fn call(status: StatusCode) -> (StatusCode, serde_json::Value) {
        let app = Router::new()
            .route("/", get(move || async move { status }))
            .layer(middleware::map_response(ensure_error_body));
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn bare_error_statuses_get_the_error_body() {
        let (status, body) = call(StatusCode::REQUEST_TIMEOUT).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(body["error"]["code"], "request_timeout");
        assert_eq!(body["error"]["message"], "Request Timeout");
        let (_, body) = call(StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["error"]["code"], "service_unavailable");
        // successes and responses with a body are left alone
        let (status, body) = call(StatusCode::NO_CONTENT).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(body, serde_json::Value::Null);
    }

    #[test]
    fn a_connection_lost_mid_request_is_a_503_and_a_driver_bug_a_500() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "expected to read 5 bytes, got 0 bytes at EOF",
        );
        assert_eq!(
            ApiError::from(sqlx::Error::Io(eof)).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(sqlx::Error::PoolTimedOut).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(sqlx::Error::RowNotFound).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn api_errors_keep_their_own_body() {
        let app = Router::new()
            .route(
                "/",
                get(|| async { ApiError::new(StatusCode::CONFLICT, "busy", "it is running") }),
            )
            .layer(middleware::map_response(ensure_error_body));
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "busy");
    }
}
