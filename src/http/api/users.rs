//! `/api/v2/users`: the people who log in to the web UI with a password, each with a role.
//! Deleting a user or giving it a new password ends its UI sessions; deleting it also
//! revokes its tokens, and a new role applies to its sessions and tokens at once.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::{
    db::{self, audit::Object, keys::Key, users::User},
    domain::policy::Role,
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, PageQuery},
        state::AppState,
    },
    passwords::PasswordError,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, remove))
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
    /// What the user may do; `admin` when not given (as every user could before roles).
    role: Option<Role>,
}

#[utoipa::path(post, path = "/api/v2/users", tag = "users", request_body = CreateBody,
    responses((status = 201, body = User),
              (status = 409, description = "the name is taken", body = ErrorBody),
              (status = 422, description = "a bad name, or a password that is too short", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let hash = hash_password(&state, &body.password).await?;
    let role = body.role.unwrap_or(Role::Admin);
    let mut tx = state.pool.begin().await?;
    let user = db::users::create(&mut tx, &body.name, &hash, role).await?;
    acting
        .record(
            &mut tx,
            &Object::new("user", user.id, &user.name),
            serde_json::json!({ "role": role }),
        )
        .await?;
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
    acting: Acting,
    ApiPath(user): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let user = db::users::delete(&mut tx, &Key::parse(&user)).await?;
    acting
        .record(
            &mut tx,
            &Object::new("user", user.id, &user.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, by = %acting.actor, "user deleted");
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
    acting: Acting,
    ApiPath(user): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let key = Key::parse(&user);
    // an unknown user is a 404 before any hashing
    db::users::get(&mut *state.pool.acquire().await?, &key).await?;
    let hash = hash_password(&state, &body.password).await?;
    let mut tx = state.pool.begin().await?;
    let user = db::users::set_password(&mut tx, &key, &hash).await?;
    acting
        .record(
            &mut tx,
            &Object::new("user", user.id, &user.name),
            serde_json::json!({ "password": "changed" }),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, by = %acting.actor, "user password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = UserUpdate)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// A new role; the user's sessions and tokens follow at once.
    role: Option<Role>,
    /// A new password (the user's sessions end).
    #[schema(schema_with = super::schemas::password)]
    password: Option<String>,
}

/// Changes a user's role and/or password (neither given: changes nothing).
#[utoipa::path(put, path = "/api/v2/users/{user}", tag = "users",
    params(("user" = String, Path, description = "the user's id or name")),
    request_body = UpdateBody,
    responses((status = 200, body = User),
              (status = 404, body = ErrorBody),
              (status = 422, description = "a password that is too short", body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(user): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<User>, ApiError> {
    let key = Key::parse(&user);
    db::users::get(&mut *state.pool.acquire().await?, &key).await?;
    let hash = match &body.password {
        Some(password) => Some(hash_password(&state, password).await?),
        None => None,
    };
    let mut tx = state.pool.begin().await?;
    let mut user = db::users::get(&mut tx, &key).await?;
    if let Some(hash) = &hash {
        user = db::users::set_password(&mut tx, &key, hash).await?;
    }
    let mut summary = serde_json::Map::new();
    if let Some(role) = body.role {
        summary.insert(
            "role".into(),
            serde_json::json!({ "from": user.role, "to": role }),
        );
        user = db::users::set_role(&mut tx, &key, role).await?;
    }
    if hash.is_some() {
        summary.insert("password".into(), "changed".into());
    }
    acting
        .record(
            &mut tx,
            &Object::new("user", user.id, &user.name),
            summary.into(),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(user = %user.name, by = %acting.actor, "user changed");
    Ok(Json(user))
}

/// The stored form of a new password; a short one is a 422 in the API's words.
async fn hash_password(state: &AppState, password: &str) -> Result<String, ApiError> {
    state.passwords.hash(password).await.map_err(|e| match e {
        PasswordError::TooShort => ApiError::unprocessable("invalid_password", e.to_string()),
        PasswordError::Hash(cause) => ApiError::internal(cause),
    })
}
