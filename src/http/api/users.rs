//! `/api/v2/users`: the people who log in to the web UI with a password.

use axum::{Json, extract::State, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::created;
use crate::{
    db::{self, users::User},
    http::{
        ApiError, AppState,
        error::ErrorBody,
        extract::{ApiJson, ApiQuery, PageQuery},
    },
    passwords::{self, PasswordError},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

#[utoipa::path(get, path = "/api/v2/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "users by id (never their passwords)", body = Vec<User>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<User>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::users::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = UserCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schema(schema_with = super::schemas::user_name)]
    name: String,
    /// At least 8 characters; stored only as an argon2id hash.
    #[schema(schema_with = super::schemas::password)]
    password: String,
}

#[utoipa::path(post, path = "/api/v2/users", tag = "users", request_body = CreateBody,
    responses((status = 201, body = User),
              (status = 409, description = "the name is taken", body = ErrorBody),
              (status = 422, description = "a bad name, or a password that is too short", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let hash = passwords::hash(&body.password).await.map_err(|e| match e {
        PasswordError::TooShort => ApiError::unprocessable("invalid_password", e.to_string()),
        PasswordError::Hash(cause) => ApiError::internal(cause),
    })?;
    let mut tx = state.pool.begin().await?;
    let user = db::users::create(&mut tx, &body.name, &hash).await?;
    tx.commit().await?;
    Ok(created(format!("/api/v2/users/{}", user.id), user))
}
