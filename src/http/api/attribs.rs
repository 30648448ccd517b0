//! Attribs (SEMANTICS.md §8): their definitions (`/api/v2/attribs`) and their values on
//! nodes, roles, deployments and noderoles (`/api/v2/<holder>/{id}/attribs[/{attrib}]`).
//! Where each holder keeps the value is described in [`crate::db::attribs`]. Roles come
//! from barclamps, so their attribs are read-only.

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::audit::Object;
use crate::{
    db::{
        self,
        attribs::{AttribDef, AttribValue, Holder},
        keys::Key,
    },
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, Limit, Offset, Page},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(node_values))
        .routes(routes!(node_value, set_node_value))
        .routes(routes!(role_values))
        .routes(routes!(role_value))
        .routes(routes!(deployment_values))
        .routes(routes!(deployment_value, set_deployment_value))
        .routes(routes!(noderole_values))
        .routes(routes!(noderole_value, set_noderole_value))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only the attribs of this role (id or name).
    role: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
}

/// Every attrib the barclamps define, by name.
#[utoipa::path(get, path = "/api/v2/attribs", tag = "attribs", params(ListQuery),
    responses((status = 200, body = Vec<AttribDef>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AttribDef>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    let role = q.role.as_deref().map(Key::parse);
    Ok(Json(
        db::attribs::list(&state.pool, role.as_ref(), page.limit, page.offset).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/attribs/{attrib}", tag = "attribs",
    params(("attrib" = String, Path, description = "the attrib's id or name")),
    responses((status = 200, body = AttribDef), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(attrib): ApiPath<String>,
) -> Result<Json<AttribDef>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::attribs::get(&mut conn, &Key::parse(&attrib)).await?,
    ))
}

/// The body of every attrib PUT.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetBody {
    /// Any JSON value.
    #[schema(schema_with = super::schemas::value)]
    value: Value,
}

async fn values(state: &AppState, holder: Holder) -> Result<Json<Vec<AttribValue>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::attribs::values(&mut conn, &holder).await?))
}

async fn value(
    state: &AppState,
    holder: Holder,
    attrib: &str,
) -> Result<Json<AttribValue>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::attribs::value(&mut conn, &holder, &Key::parse(attrib)).await?,
    ))
}

async fn set(
    state: &AppState,
    acting: &Acting,
    holder: Holder,
    attrib: &str,
    value: Value,
) -> Result<Json<AttribValue>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let set = db::attribs::set(&mut tx, &holder, &Key::parse(attrib), value, &acting.actor).await?;
    let object = holder_object(&mut tx, &holder).await?;
    acting
        .record(
            &mut tx,
            &object,
            serde_json::json!({ "attrib": set.attrib }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(set))
}

/// Every attrib's value on a node: what discovery reported under the admin's hints.
#[utoipa::path(get, path = "/api/v2/nodes/{node}/attribs", tag = "attribs",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Vec<AttribValue>), (status = 404, body = ErrorBody)))]
async fn node_values(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Vec<AttribValue>>, ApiError> {
    values(&state, Holder::Node(Key::parse(&node))).await
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/attribs/{attrib}", tag = "attribs",
    params(("node" = String, Path, description = "the node's id or name"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn node_value(
    State(state): State<AppState>,
    ApiPath((node, attrib)): ApiPath<(String, String)>,
) -> Result<Json<AttribValue>, ApiError> {
    value(&state, Holder::Node(Key::parse(&node)), &attrib).await
}

/// Sets a hint on the node: it overrides what discovery reported, at once.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/attribs/{attrib}", tag = "attribs",
    params(("node" = String, Path, description = "the node's id or name"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    request_body = SetBody,
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn set_node_value(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath((node, attrib)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<Json<AttribValue>, ApiError> {
    set(
        &state,
        &acting,
        Holder::Node(Key::parse(&node)),
        &attrib,
        body.value,
    )
    .await
}

/// A role's attribs with their template values (read-only: roles come from barclamps).
#[utoipa::path(get, path = "/api/v2/roles/{role}/attribs", tag = "attribs",
    params(("role" = String, Path, description = "the role's id or name")),
    responses((status = 200, body = Vec<AttribValue>), (status = 404, body = ErrorBody)))]
async fn role_values(
    State(state): State<AppState>,
    ApiPath(role): ApiPath<String>,
) -> Result<Json<Vec<AttribValue>>, ApiError> {
    values(&state, Holder::Role(Key::parse(&role))).await
}

#[utoipa::path(get, path = "/api/v2/roles/{role}/attribs/{attrib}", tag = "attribs",
    params(("role" = String, Path, description = "the role's id or name"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn role_value(
    State(state): State<AppState>,
    ApiPath((role, attrib)): ApiPath<(String, String)>,
) -> Result<Json<AttribValue>, ApiError> {
    value(&state, Holder::Role(Key::parse(&role)), &attrib).await
}

/// The attribs of the deployment's roles: committed values and the proposal's.
#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/attribs", tag = "attribs",
    params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Vec<AttribValue>), (status = 404, body = ErrorBody)))]
async fn deployment_values(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Vec<AttribValue>>, ApiError> {
    values(&state, Holder::Deployment(Key::parse(&deployment))).await
}

#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/attribs/{attrib}", tag = "attribs",
    params(("deployment" = String, Path, description = "the deployment's id or name"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn deployment_value(
    State(state): State<AppState>,
    ApiPath((deployment, attrib)): ApiPath<(String, String)>,
) -> Result<Json<AttribValue>, ApiError> {
    value(&state, Holder::Deployment(Key::parse(&deployment)), &attrib).await
}

/// Sets the attrib in the deployment's proposal (adding its role to the deployment if it
/// is not there yet); the next commit makes it current.
#[utoipa::path(put, path = "/api/v2/deployments/{deployment}/attribs/{attrib}", tag = "attribs",
    params(("deployment" = String, Path, description = "the deployment's id or name"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    request_body = SetBody,
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn set_deployment_value(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath((deployment, attrib)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<Json<AttribValue>, ApiError> {
    let holder = Holder::Deployment(Key::parse(&deployment));
    set(&state, &acting, holder, &attrib, body.value).await
}

/// The attribs of the noderole's role, through every data layer of §8.
#[utoipa::path(get, path = "/api/v2/node_roles/{id}/attribs", tag = "attribs",
    params(("id" = i64, Path, description = "the noderole's id")),
    responses((status = 200, body = Vec<AttribValue>), (status = 404, body = ErrorBody)))]
async fn noderole_values(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<AttribValue>>, ApiError> {
    values(&state, Holder::NodeRole(id)).await
}

#[utoipa::path(get, path = "/api/v2/node_roles/{id}/attribs/{attrib}", tag = "attribs",
    params(("id" = i64, Path, description = "the noderole's id"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody)))]
async fn noderole_value(
    State(state): State<AppState>,
    ApiPath((id, attrib)): ApiPath<(i64, String)>,
) -> Result<Json<AttribValue>, ApiError> {
    value(&state, Holder::NodeRole(id), &attrib).await
}

/// Sets the attrib in the noderole's proposed data (only while it or its deployment is
/// proposed, as for `PUT /api/v2/node_roles/{id}`).
#[utoipa::path(put, path = "/api/v2/node_roles/{id}/attribs/{attrib}", tag = "attribs",
    params(("id" = i64, Path, description = "the noderole's id"),
           ("attrib" = String, Path, description = "the attrib's id or name")),
    request_body = SetBody,
    responses((status = 200, body = AttribValue), (status = 404, body = ErrorBody),
              (status = 409, description = "not proposed", body = ErrorBody)))]
async fn set_noderole_value(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath((id, attrib)): ApiPath<(i64, String)>,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<Json<AttribValue>, ApiError> {
    set(&state, &acting, Holder::NodeRole(id), &attrib, body.value).await
}

/// What the audit trail names as the object an attrib was set on.
async fn holder_object(conn: &mut sqlx::PgConnection, holder: &Holder) -> Result<Object, ApiError> {
    Ok(match holder {
        Holder::Node(key) => {
            let node = db::nodes::get(conn, key).await?;
            Object::new("node", node.id, node.name)
        }
        Holder::Deployment(key) => {
            let deployment = db::deployments::get(conn, key).await?;
            Object::new("deployment", deployment.id, deployment.name)
        }
        Holder::NodeRole(id) => {
            crate::http::actions::noderole_object(&db::node_roles::get(conn, *id).await?)
        }
        Holder::Role(key) => Object::named("role", key.to_string()),
    })
}
