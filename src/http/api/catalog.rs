//! `/api/v2/barclamps`, `/api/v2/jigs`, `/api/v2/roles`: the catalog loaded from barclamps.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{
        self,
        keys::Key,
        roles::{Barclamp, BarclampDetail, Jig, JigUpdate, Role, RoleFilter},
    },
    http::{
        ApiError, AppState,
        auth::Caller,
        error::ErrorBody,
        extract::{ApiJson, ApiPath, ApiQuery, Page, PageQuery},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(barclamps))
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
    let page = q.page()?;
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
    let page = q.page()?;
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
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<JigBody>,
) -> Result<Json<Jig>, ApiError> {
    let update = JigUpdate {
        active: body.active,
        description: body.description,
    };
    let mut tx = state.pool.begin().await?;
    let jig = db::roles::update_jig(&mut tx, &Key::parse(&key), &update, &caller.actor()).await?;
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
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v2/roles", tag = "catalog", params(RolesQuery),
    responses((status = 200, body = Vec<Role>)))]
async fn roles(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RolesQuery>,
) -> Result<Json<Vec<Role>>, ApiError> {
    let page = Page::new(q.limit, q.offset)?;
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
