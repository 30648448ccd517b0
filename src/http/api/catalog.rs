//! `/api/v2/barclamps`, `/api/v2/jigs`, `/api/v2/roles`: the catalog loaded from barclamps.

use axum::{Json, extract::State, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::audit::Object;
use crate::{
    db::{
        self,
        keys::Key,
        roles::{Barclamp, BarclampDetail, Jig, JigUpdate, Role, RoleFilter},
    },
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, Limit, Offset, Page, PageQuery},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(barclamps, import_barclamp))
        .routes(routes!(barclamp))
        .routes(routes!(jigs))
        .routes(routes!(jig, update_jig))
        .routes(routes!(roles))
        .routes(routes!(role))
}

#[utoipa::path(get, path = "/api/v2/barclamps", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Vec<Barclamp>)))]
async fn barclamps(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Barclamp>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::roles::list_barclamps(&state.pool, page.limit, page.offset).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/barclamps/{barclamp}", tag = "catalog", params(("barclamp" = String, Path, description = "the barclamp's id or name")),
    responses((status = 200, body = BarclampDetail), (status = 404, body = ErrorBody)))]
async fn barclamp(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<BarclampDetail>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_barclamp(&mut conn, &Key::parse(&key)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/jigs", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Vec<Jig>)))]
async fn jigs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Jig>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::roles::list_jigs(&state.pool, page.limit, page.offset).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/jigs/{jig}", tag = "catalog", params(("jig" = String, Path, description = "the jig's id or name")),
    responses((status = 200, body = Jig), (status = 404, body = ErrorBody)))]
async fn jig(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Jig>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_jig(&mut conn, &Key::parse(&key)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct JigBody {
    active: Option<bool>,
    description: Option<String>,
}

#[utoipa::path(method(put, patch), path = "/api/v2/jigs/{jig}", tag = "catalog", params(("jig" = String, Path, description = "the jig's id or name")),
    request_body = JigBody, responses((status = 200, body = Jig)))]
async fn update_jig(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<JigBody>,
) -> Result<Json<Jig>, ApiError> {
    let update = JigUpdate {
        active: body.active,
        description: body.description,
    };
    let mut tx = state.pool.begin().await?;
    let jig = db::roles::update_jig(&mut tx, &Key::parse(&key), &update, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("jig", jig.id, &jig.name),
            serde_json::json!({ "active": update.active }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(jig))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RolesQuery {
    /// Barclamp name or id.
    barclamp: Option<String>,
    /// Jig name or id.
    jig: Option<String>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
}

#[utoipa::path(get, path = "/api/v2/roles", tag = "catalog", params(RolesQuery),
    responses((status = 200, body = Vec<Role>)))]
async fn roles(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RolesQuery>,
) -> Result<Json<Vec<Role>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    let filter = RoleFilter {
        barclamp: q.barclamp,
        jig: q.jig,
        limit: page.limit,
        offset: page.offset,
    };
    Ok(Json(db::roles::list_roles(&state.pool, &filter).await?))
}

#[utoipa::path(get, path = "/api/v2/roles/{role}", tag = "catalog", params(("role" = String, Path, description = "the role's id or name")),
    responses((status = 200, body = Role), (status = 404, body = ErrorBody)))]
async fn role(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Role>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_role(&mut conn, &Key::parse(&key)).await?,
    ))
}

/// What importing a barclamp did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Imported {
    barclamp: String,
    source: String,
    /// created | updated | unchanged
    status: String,
    jigs: usize,
    roles: usize,
    attribs: usize,
    removed_jigs: usize,
    removed_roles: usize,
    removed_attribs: usize,
}

/// Imports a barclamp document: the YAML file (`Content-Type: application/yaml`) or the same
/// document as JSON. The same import path as `--barclamp-dir` at start: validated as a whole,
/// applied in one transaction, a no-op when unchanged. 201 when it created or changed
/// something, 200 when unchanged; 422 names the file, the role and the reason of every
/// problem, and changes nothing.
#[utoipa::path(post, path = "/api/v2/barclamps", tag = "catalog",
    request_body(content = String, content_type = "application/yaml", description = "the barclamp document"),
    responses((status = 201, body = Imported), (status = 200, body = Imported),
              (status = 409, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn import_barclamp(
    State(state): State<AppState>,
    acting: Acting,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::StatusCode;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/yaml");
    let accepted = ["yaml", "json", "text/plain"]
        .iter()
        .any(|kind| content_type.contains(kind));
    if !accepted {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the barclamp as application/yaml or application/json",
        ));
    }
    let outcome =
        crate::barclamps::import_document_by(&state.pool, "api", &body, acting.who().as_ref())
            .await
            .map_err(|e| match e {
                crate::barclamps::BarclampError::Invalid(problems) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_barclamp",
                    problems.to_string(),
                )
                .with_details(serde_json::to_value(&problems).unwrap_or_default()),
                crate::barclamps::BarclampError::InUse(_) => {
                    ApiError::new(StatusCode::CONFLICT, "barclamp_in_use", e.to_string())
                }
                crate::barclamps::BarclampError::Conflict(_) => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                other => ApiError::internal(other),
            })?;
    let status = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let code = if status == "unchanged" {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let imported = Imported {
        barclamp: outcome.barclamp,
        source: outcome.source,
        status,
        jigs: outcome.jigs,
        roles: outcome.roles,
        attribs: outcome.attribs,
        removed_jigs: outcome.removed_jigs,
        removed_roles: outcome.removed_roles,
        removed_attribs: outcome.removed_attribs,
    };
    Ok((code, Json(imported)).into_response())
}
