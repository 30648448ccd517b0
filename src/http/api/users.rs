//! `/api/v2/users`: the people who log in to the web UI with a password. Deleting a user or
//! giving it a new password ends its UI sessions.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::{
    db::{self, keys::Key, users::User},
    http::{
        auth::Caller,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, PageQuery},
        state::AppState,
    },
    passwords::PasswordError,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
        .routes(routes!(set_password))
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
    let hash = hash_password(&state, &body.password).await?;
    let mut tx = state.pool.begin().await?;
    let user = db::users::create(&mut tx, &body.name, &hash).await?;
    tx.commit().await?;
    Ok(created(format!("/api/v2/users/{}", user.id), user))
}

/// Deletes a user: it can no longer log in, and its UI sessions end at once.
#[utoipa::path(delete, path = "/api/v2/users/{user}", tag = "users",
    params(("user" = String, Path, description = "the user's id or name")),
    responses((status = 204, description = "deleted; its sessions ended"),
              (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let user = db::users::delete(&mut tx, &Key::parse(&user)).await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, by = %caller.actor(), "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = UserPassword)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// Stored only as an argon2id hash.
    #[schema(schema_with = super::schemas::password)]
    password: String,
}

/// Gives a user a new password (e.g. after a leak, or one the user forgot). The old one
/// stops working and every UI session of the user ends.
#[utoipa::path(put, path = "/api/v2/users/{user}/password", tag = "users",
    params(("user" = String, Path, description = "the user's id or name")),
    request_body = PasswordBody,
    responses((status = 204, description = "changed; the user's sessions ended"),
              (status = 404, body = ErrorBody),
              (status = 422, description = "a password that is too short", body = ErrorBody)))]
async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let key = Key::parse(&user);
    // an unknown user is a 404 before any hashing
    db::users::get(&mut *state.pool.acquire().await?, &key).await?;
    let hash = hash_password(&state, &body.password).await?;
    let mut tx = state.pool.begin().await?;
    let user = db::users::set_password(&mut tx, &key, &hash).await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, by = %caller.actor(), "user password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// The stored form of a new password; a short one is a 422 in the API's words.
async fn hash_password(state: &AppState, password: &str) -> Result<String, ApiError> {
    state.passwords.hash(password).await.map_err(|e| match e {
        PasswordError::TooShort => ApiError::unprocessable("invalid_password", e.to_string()),
        PasswordError::Hash(cause) => ApiError::internal(cause),
    })
}
