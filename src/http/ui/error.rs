//! Errors of UI requests: the status and message of the API's error, as a small HTML page
//! (the page script shows the message of a failed action in the page's notice area).

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::http::error::ApiError;

#[derive(Debug)]
pub struct UiError(pub ApiError);

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        UiError(ApiError::new(status, "ui", message))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        UiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError(e.into())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: &'static str,
    code: &'static str,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let ApiError {
            status,
            code,
            message,
            ..
        } = self.0;
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("error"),
            code,
            message,
        };
        (status, page).into_response()
    }
}
