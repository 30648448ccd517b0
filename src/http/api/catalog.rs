//! `/api/v2/barclamps`, `/api/v2/jigs`, `/api/v2/roles`: the catalog loaded from barclamps.

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;

use crate::{
    db::{
        self,
        keys::Key,
        roles::{Barclamp, BarclampDetail, Jig, JigUpdate, Role, RoleFilter},
    },
    http::{
        ApiError, AppState,
        auth::Caller,
        extract::{ApiJson, ApiPath, ApiQuery, Page, PageQuery},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/barclamps", get(barclamps))
        .route("/api/v2/barclamps/{barclamp}", get(barclamp))
        .route("/api/v2/jigs", get(jigs))
        .route(
            "/api/v2/jigs/{jig}",
            get(jig).put(update_jig).patch(update_jig),
        )
        .route("/api/v2/roles", get(roles))
        .route("/api/v2/roles/{role}", get(role))
}

async fn barclamps(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Barclamp>>, ApiError> {
    let page = q.page()?;
    Ok(Json(
        db::roles::list_barclamps(&state.pool, page.limit, page.offset).await?,
    ))
}

async fn barclamp(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<BarclampDetail>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_barclamp(&mut conn, &Key::parse(&key)).await?,
    ))
}

async fn jigs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Jig>>, ApiError> {
    let page = q.page()?;
    Ok(Json(
        db::roles::list_jigs(&state.pool, page.limit, page.offset).await?,
    ))
}

async fn jig(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Jig>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_jig(&mut conn, &Key::parse(&key)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JigBody {
    active: Option<bool>,
    description: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesQuery {
    /// Barclamp name or id.
    barclamp: Option<String>,
    /// Jig name or id.
    jig: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

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

async fn role(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Role>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::roles::get_role(&mut conn, &Key::parse(&key)).await?,
    ))
}
