//! `/api/v2/tokens`: API tokens, created and revoked through the API (API.md "Auth"), and
//! `/api/v2/nodes/{node}/token`: a node's own token, rotated.
//!
//! Tokens are shown once, when made; only their sha-256 hashes are stored. Listing shows
//! names, roles and dates, never a token. A token belongs to the user who made it and
//! carries at most that user's role.

use axum::{Json, extract::State, response::Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::{
    db::{
        self,
        audit::Object,
        keys::Key,
        tokens::{NewToken, TokenInfo},
    },
    domain::policy::Role,
    http::{
        audit::Acting,
        auth::Caller,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, ObjectKey, PageQuery},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, revoke))
        .routes(routes!(rotate_node_token))
}

/// Every admin token (revoked ones too, with `revoked_at`), by id.
#[utoipa::path(get, path = "/api/v2/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, body = Vec<TokenInfo>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::tokens::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = TokenCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// What the audit trail calls changes made with the token, e.g. `ci-pipeline`.
    #[schema(schema_with = super::schemas::token_name)]
    name: String,
    /// What the token may do: at most its user's role, which is the default.
    role: Option<Role>,
    /// The user it belongs to (name or id); default: the caller's own user (none for the
    /// built-in admin token).
    user: Option<ObjectKey>,
    /// How long it works: days or hours, e.g. `30d`, `12h`; never expires when not given.
    #[schema(example = "30d", pattern = r"^[1-9][0-9]{0,3}[dh]$")]
    expires_in: Option<String>,
}

/// `expires_in`: 1 to 9999 days or hours.
fn expires_in(text: &str) -> Result<std::time::Duration, ApiError> {
    let (number, unit) = if let Some(days) = text.strip_suffix('d') {
        (days, 86_400)
    } else if let Some(hours) = text.strip_suffix('h') {
        (hours, 3_600)
    } else {
        return Err(invalid_expiry(text));
    };
    let count: u64 = number
        .parse()
        .ok()
        .filter(|n| (1..=9999).contains(n) && number.bytes().all(|b| b.is_ascii_digit()))
        .filter(|_| !number.starts_with('0'))
        .ok_or_else(|| invalid_expiry(text))?;
    Ok(std::time::Duration::from_secs(count * unit))
}

fn invalid_expiry(text: &str) -> ApiError {
    ApiError::unprocessable(
        "invalid_body",
        format!("expires_in: `{text}` is not 1 to 9999 days or hours (e.g. 30d, 12h)"),
    )
}

/// A new token, with the token itself (shown only here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TokenCreated)]
struct Created {
    #[serde(flatten)]
    info: TokenInfo,
    token: String,
}

/// Creates an admin token. Names are unique, revoked tokens' names included.
#[utoipa::path(post, path = "/api/v2/tokens", tag = "tokens", request_body = CreateBody,
    responses((status = 201, description = "the token (shown only here)", body = Created),
              (status = 409, description = "the name is taken", body = ErrorBody),
              (status = 422, description = "not a valid name", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let Caller::Member {
        role: own_role,
        user_id,
        ..
    } = caller
    else {
        return Err(ApiError::forbidden("a node token cannot make tokens"));
    };
    // whose it is, and the most it may do
    let (user_id, most, whose) = match &body.user {
        None => (user_id, own_role, "yours".to_string()),
        Some(key) => {
            let user = db::users::get(&mut *state.pool.acquire().await?, &key.0).await?;
            (
                Some(user.id),
                user.role.min(own_role),
                format!("{}'s", user.name),
            )
        }
    };
    let role = body.role.unwrap_or(most);
    if role > most {
        return Err(ApiError::forbidden(format!(
            "a token can do at most what its user can: {whose} is {most}, not {role}"
        )));
    }
    let expires_at = match &body.expires_in {
        None => None,
        Some(text) => Some(chrono::Utc::now() + expires_in(text)?),
    };
    let mut tx = state.pool.begin().await?;
    let (info, token) = db::tokens::create(
        &mut tx,
        &NewToken {
            name: &body.name,
            role,
            user_id,
            expires_at,
        },
    )
    .await?;
    acting
        .record(
            &mut tx,
            &Object::new("token", info.id, &info.name),
            serde_json::json!({ "role": role, "expires_at": expires_at }),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(token = %info.name, %role, by = %acting.actor, "API token created");
    Ok(created(
        format!("/api/v2/tokens/{}", info.id),
        Created { info, token },
    ))
}

#[utoipa::path(get, path = "/api/v2/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "the token's id or name")),
    responses((status = 200, body = TokenInfo), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::tokens::get(&mut conn, &Key::parse(&token)).await?))
}

/// Revokes a token: it stops working at once (revoking twice changes nothing). The last
/// working token cannot be revoked.
#[utoipa::path(delete, path = "/api/v2/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "the token's id or name")),
    responses((status = 200, description = "the revoked token", body = TokenInfo),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the last working token", body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let info = db::tokens::revoke(&mut tx, &Key::parse(&token)).await?;
    acting
        .record(
            &mut tx,
            &Object::new("token", info.id, &info.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(token = %info.name, by = %acting.actor, "API token revoked");
    Ok(Json(info))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct NodeToken {
    node_id: i64,
    /// The node's new token (shown only here); the old one no longer works.
    token: String,
}

/// Gives a node a new token, e.g. when it is reinstalled or its token leaked. Admins only.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/token", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = NodeToken), (status = 404, body = ErrorBody)))]
async fn rotate_node_token(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeToken>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let node = db::nodes::get(&mut tx, &Key::parse(&node)).await?;
    let node_id = node.id;
    let token =
        db::nodes::rotate_token(&mut tx, node_id, &acting.actor, "rotated by an admin").await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", node.id, &node.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(node_id, by = %acting.actor, "node token rotated");
    Ok(Json(NodeToken { node_id, token }))
}

#[cfg(test)]
mod tests {
    use super::expires_in;

    #[test]
    fn expiries_are_days_or_hours() {
        assert_eq!(expires_in("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(expires_in("12h").unwrap().as_secs(), 12 * 3_600);
        assert_eq!(expires_in("9999d").unwrap().as_secs(), 9999 * 86_400);
        for bad in [
            "", "d", "0d", "030d", "10000d", "5m", "1.5d", "-1d", "+1d", "30", "é", "3é",
        ] {
            assert!(expires_in(bad).is_err(), "{bad:?}");
        }
    }
}
