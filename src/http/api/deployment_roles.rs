//! `/api/v2/deployment_roles`: a role's data for one deployment, edited in the proposal
//! (SEMANTICS.md §8; see [`crate::db::deployment_roles`]).

use axum::{Json, extract::State, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::db::audit::Object;
use crate::{
    db::{
        self,
        deployment_roles::{DeploymentRole, DeploymentRoleFilter},
    },
    http::{
        actions,
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, Limit, ObjectKey, Offset, Page},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, set_data))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Deployment id or name.
    deployment: Option<String>,
    /// Role id or name.
    role: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
}

#[utoipa::path(get, path = "/api/v2/deployment_roles", tag = "deployments", params(ListQuery),
    responses((status = 200, body = Vec<DeploymentRole>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<DeploymentRole>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    let filter = DeploymentRoleFilter {
        deployment: q.deployment,
        role: q.role,
        window: page.window(None),
    };
    Ok(Json(
        db::deployment_roles::list(&state.pool, &filter).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DeploymentRoleCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// Deployment id or name.
    deployment: ObjectKey,
    /// Role id or name.
    role: ObjectKey,
    /// Its data (a JSON object), layered over the role's template.
    #[schema(schema_with = super::schemas::object_or_null)]
    data: Option<Value>,
}

/// Adds a role to a deployment; like a binding, it takes effect at the next commit.
#[utoipa::path(post, path = "/api/v2/deployment_roles", tag = "deployments",
    request_body = CreateBody,
    responses((status = 201, body = DeploymentRole),
              (status = 404, description = "no such deployment or role", body = ErrorBody),
              (status = 409, description = "the role is in the deployment already", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let data = body.data.unwrap_or_else(|| json!({}));
    let made =
        actions::add_deployment_role(&state, &acting, &body.deployment.0, &body.role.0, &data)
            .await?;
    Ok(created(
        format!("/api/v2/deployment_roles/{}", made.id),
        made,
    ))
}

#[utoipa::path(get, path = "/api/v2/deployment_roles/{id}", tag = "deployments",
    params(("id" = i64, Path, description = "the deployment role's id")),
    responses((status = 200, body = DeploymentRole), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeploymentRole>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::deployment_roles::get(&mut conn, id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DeploymentRoleUpdate)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// The new proposed data (a JSON object); the next commit makes it current.
    #[schema(schema_with = super::schemas::object)]
    data: Value,
}

/// Replaces the proposed data; the next commit of the deployment makes it current.
#[utoipa::path(put, path = "/api/v2/deployment_roles/{id}", tag = "deployments",
    params(("id" = i64, Path, description = "the deployment role's id")),
    request_body = UpdateBody,
    responses((status = 200, body = DeploymentRole), (status = 404, body = ErrorBody)))]
async fn set_data(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<DeploymentRole>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let updated = db::deployment_roles::set_data(&mut tx, id, &body.data, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new(
                "deployment_role",
                updated.id,
                format!("{}@{}", updated.role, updated.deployment),
            ),
            serde_json::json!({ "keys": actions::data_keys(&body.data) }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(updated))
}
