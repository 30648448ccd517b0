//! `/api/v2/node_roles`: binding roles to nodes (SEMANTICS §3), data, retry, propose,
//! commit and deletion of single noderoles.

use axum::{Json, extract::State, response::Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::http::actions::{WithReason, noderole_page, with_reason, with_reasons};
use crate::{
    db::{
        self,
        keys::Key,
        node_roles::{NodeRole, NodeRoleDetail, NodeRoleFilter},
    },
    domain::state::NodeRoleState,
    http::{
        actions::{self, StateChange},
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, Limit, ObjectKey, Offset, Page},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, bind))
        .routes(routes!(show, set_data, remove))
        .routes(routes!(retry))
        .routes(routes!(propose))
        .routes(routes!(commit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A state name (`error`, `todo`, ...) or code (`-1`, `1`, ...).
    #[param(schema_with = super::schemas::noderole_state)]
    state: Option<String>,
    deployment: Option<String>,
    node: Option<String>,
    role: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
    /// A cursor: the noderoles whose ids follow this one (the last id of the previous page).
    after: Option<i64>,
}

/// A state by its name (in any case) or its code (as written by the daemon: `-1`, not `-01`),
/// which is what `schemas::noderole_state` declares.
fn parse_state(text: &str) -> Result<NodeRoleState, ApiError> {
    NodeRoleState::from_name(text)
        .or_else(|| {
            NodeRoleState::ALL
                .into_iter()
                .find(|s| s.code().to_string() == text)
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "unknown state `{text}`: use error, active, todo, transition, blocked, proposed or their codes -1..4"
                ),
            )
        })
}

#[utoipa::path(get, path = "/api/v2/node_roles", tag = "node_roles", params(ListQuery),
    responses((status = 200, body = [WithReason<NodeRole>])))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<WithReason<NodeRole>>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    let filter = NodeRoleFilter {
        state: q.state.as_deref().map(parse_state).transpose()?,
        deployment: q.deployment,
        node: q.node,
        role: q.role,
        node_ids: None,
        window: page.window(q.after),
    };
    Ok(Json(noderole_page(&state, &filter).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BindBody {
    node: ObjectKey,
    role: ObjectKey,
    /// Default: the node's deployment.
    deployment: Option<ObjectKey>,
    #[schema(schema_with = super::schemas::object_or_null)]
    data: Option<Value>,
}

/// The bound noderole and the parents the binding had to create.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Bound {
    #[serde(flatten)]
    noderole: WithReason<NodeRole>,
    created: Vec<WithReason<NodeRole>>,
}

#[utoipa::path(post, path = "/api/v2/node_roles", tag = "node_roles", request_body = BindBody,
    responses((status = 201, description = "the new noderole and the parents the binding created", body = Bound),
              (status = 404, body = ErrorBody), (status = 409, description = "`bind_refused`", body = ErrorBody)))]
async fn bind(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<BindBody>,
) -> Result<Response, ApiError> {
    let deployment = body.deployment.map(|k| k.0);
    let bound = actions::bind(
        &state,
        &acting,
        &body.node.0,
        &body.role.0,
        deployment.as_ref(),
        body.data.as_ref(),
    )
    .await?;
    let id = bound.noderole.id;
    let body = Bound {
        noderole: with_reason(&state, id, bound.noderole).await?,
        created: with_reasons(&state, bound.created).await?,
    };
    Ok(created(format!("/api/v2/node_roles/{id}"), body))
}

/// Applies one state change and answers with the noderole and its reason.
async fn change_state(
    state: &AppState,
    acting: &Acting,
    id: &str,
    change: StateChange,
) -> Result<Json<WithReason<NodeRole>>, ApiError> {
    let id = noderole_id(id)?;
    let noderole = actions::change_noderole(state, acting, id, change).await?;
    Ok(Json(with_reason(state, id, noderole).await?))
}

/// Noderoles have no names: a key that is not a number names nothing.
pub(crate) fn noderole_id(text: &str) -> Result<i64, ApiError> {
    match Key::parse(text) {
        Key::Id(id) => Ok(id),
        Key::Name(_) => Err(ApiError::not_found(format!(
            "noderole `{text}` not found (noderoles are addressed by id, or as /api/v2/nodes/<node>/node_roles/<role>)"
        ))),
    }
}

async fn detail(state: &AppState, id: i64) -> Result<Json<WithReason<NodeRoleDetail>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let detail = db::node_roles::detail(&mut conn, id).await?;
    drop(conn);
    Ok(Json(with_reason(state, id, detail).await?))
}

#[utoipa::path(get, path = "/api/v2/node_roles/{id}", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = WithReason<NodeRoleDetail>), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WithReason<NodeRoleDetail>>, ApiError> {
    detail(&state, noderole_id(&id)?).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DataBody {
    #[schema(schema_with = super::schemas::object)]
    data: Value,
}

/// Replaces the proposed data; only while the noderole (or its deployment) is proposed.
#[utoipa::path(method(put, patch), path = "/api/v2/node_roles/{id}", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    request_body = DataBody,
    responses((status = 200, body = WithReason<NodeRoleDetail>), (status = 409, description = "`not_proposed`", body = ErrorBody)))]
async fn set_data(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DataBody>,
) -> Result<Json<WithReason<NodeRoleDetail>>, ApiError> {
    let id = noderole_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let noderole = db::node_roles::set_data(&mut tx, id, &body.data, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &actions::noderole_object(&noderole),
            serde_json::json!({ "keys": actions::data_keys(&body.data) }),
        )
        .await?;
    tx.commit().await?;
    detail(&state, id).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Deleted {
    /// The noderole and the descendants that went with it.
    deleted: Vec<i64>,
}

#[utoipa::path(delete, path = "/api/v2/node_roles/{id}", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = Deleted), (status = 409, description = "`has_children`, `busy`", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = noderole_id(&id)?;
    let deleted = actions::delete_noderole(&state, &acting, id).await?;
    Ok(Json(Deleted { deleted }))
}

#[utoipa::path(put, path = "/api/v2/node_roles/{id}/retry", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = WithReason<NodeRole>), (status = 409, body = ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WithReason<NodeRole>>, ApiError> {
    change_state(&state, &acting, &id, StateChange::Retry).await
}

#[utoipa::path(put, path = "/api/v2/node_roles/{id}/propose", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = WithReason<NodeRole>), (status = 409, body = ErrorBody)))]
async fn propose(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WithReason<NodeRole>>, ApiError> {
    change_state(&state, &acting, &id, StateChange::Propose).await
}

#[utoipa::path(put, path = "/api/v2/node_roles/{id}/commit", tag = "node_roles", params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = WithReason<NodeRole>), (status = 409, body = ErrorBody)))]
async fn commit(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WithReason<NodeRole>>, ApiError> {
    change_state(&state, &acting, &id, StateChange::Commit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_by_name_or_code() {
        assert_eq!(parse_state("error").unwrap(), NodeRoleState::Error);
        assert_eq!(parse_state("-1").unwrap(), NodeRoleState::Error);
        assert_eq!(parse_state("4").unwrap(), NodeRoleState::Proposed);
        assert_eq!(parse_state("TODO").unwrap(), NodeRoleState::Todo);
        assert!(parse_state("5").is_err());
        assert!(parse_state("+1").is_err());
        assert!(parse_state("01").is_err());
        assert!(parse_state("done").is_err());
    }
}
