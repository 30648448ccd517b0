//! `/api/v2/deployments`: the deployment tree, propose/commit, snapshots and the graph.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::{Deserialize, Serialize};

use super::created;
use crate::{
    db::{
        self,
        deployments::{Deployment, Graph, Snapshot},
        documents::{self, Applied, Plan},
        keys::Key,
    },
    domain::plan::Document,
    http::{
        ApiError, AppState,
        auth::Caller,
        extract::{ApiJson, ApiPath, ApiQuery, ObjectKey, PageQuery},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/deployments", get(list).post(create))
        .route(
            "/api/v2/deployments/{deployment}",
            get(show).put(update).patch(update).delete(remove),
        )
        .route("/api/v2/deployments/{deployment}/commit", put(commit))
        .route("/api/v2/deployments/{deployment}/propose", put(propose))
        .route(
            "/api/v2/deployments/{deployment}/snapshots",
            get(snapshots).post(apply_document),
        )
        .route(
            "/api/v2/deployments/{deployment}/plan",
            get(plan).post(plan_document),
        )
        .route("/api/v2/deployments/{deployment}/recall", put(recall))
        .route(
            "/api/v2/deployments/{deployment}/snapshots/{seq}",
            get(snapshot),
        )
        .route("/api/v2/deployments/{deployment}/graph", get(graph))
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let page = q.page()?;
    Ok(Json(
        db::deployments::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    description: String,
    parent: Option<ObjectKey>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let parent = body.parent.map(|k| k.0);
    let mut tx = state.pool.begin().await?;
    let deployment = db::deployments::create(
        &mut tx,
        &body.name,
        &body.description,
        parent.as_ref(),
        &caller.actor(),
    )
    .await?;
    tx.commit().await?;
    Ok(created(
        format!("/api/v2/deployments/{}", deployment.id),
        deployment,
    ))
}

async fn show(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Deployment>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::deployments::get(&mut conn, &Key::parse(&deployment)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    description: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Deployment>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let deployment = db::deployments::update(
        &mut tx,
        &Key::parse(&deployment),
        body.description.as_deref(),
        &caller.actor(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(deployment))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    db::deployments::delete(&mut tx, &Key::parse(&deployment), &caller.actor()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a commit did: the deployment after it, the snapshot it recorded (or the latest one,
/// when the desired state was unchanged and nothing was recorded) and the noderoles whose
/// state changed.
#[derive(Debug, Serialize)]
struct Committed {
    deployment: Deployment,
    snapshot: Option<Snapshot>,
    recorded: bool,
    changed: Vec<i64>,
}

async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Committed>, ApiError> {
    let key = Key::parse(&deployment);
    let mut tx = state.pool.begin().await?;
    let outcome = db::deployments::commit(&mut tx, &key, &caller.actor()).await?;
    let deployment = db::deployments::get(&mut tx, &key).await?;
    state.hooks.check_commit(&mut tx, deployment.id).await?;
    tx.commit().await?;
    Ok(Json(Committed {
        deployment,
        snapshot: outcome.snapshot,
        recorded: outcome.recorded,
        changed: outcome.changed,
    }))
}

async fn propose(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Deployment>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let deployment =
        db::deployments::propose(&mut tx, &Key::parse(&deployment), &caller.actor()).await?;
    tx.commit().await?;
    Ok(Json(deployment))
}

async fn snapshots(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    let page = q.page()?;
    let mut conn = state.pool.acquire().await?;
    let id = db::deployments::id_of(&mut conn, &Key::parse(&deployment)).await?;
    drop(conn);
    Ok(Json(
        db::deployments::snapshots(&state.pool, id, page.limit, page.offset).await?,
    ))
}

async fn snapshot(
    State(state): State<AppState>,
    ApiPath((deployment, seq)): ApiPath<(String, i32)>,
) -> Result<Json<Snapshot>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::deployments::snapshot(&mut conn, &Key::parse(&deployment), seq).await?,
    ))
}

async fn graph(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Graph>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::deployments::graph(&mut conn, &Key::parse(&deployment)).await?,
    ))
}

/// POST a desired-state document: 201 when it recorded a new snapshot, 200 otherwise (an
/// identical document, or `commit: false`); 409 `stale_base` when `base` is not the latest.
async fn apply_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(doc): ApiJson<Document>,
) -> Result<Response, ApiError> {
    let key = Key::parse(&deployment);
    let mut tx = state.pool.begin().await?;
    let applied = documents::apply(&mut tx, &key, &doc, &caller.actor()).await?;
    if applied.committed && applied.changed {
        let id = db::deployments::id_of(&mut tx, &key).await?;
        state.hooks.check_commit(&mut tx, id).await?;
    }
    tx.commit().await?;
    let status = if applied.committed && applied.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json::<Applied>(applied)).into_response())
}

/// What committing the current proposal would do; changes nothing.
async fn plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(
        documents::plan(&state.pool, &Key::parse(&deployment), &caller.actor()).await?,
    ))
}

/// What applying a document would do; changes nothing (`base` is not checked).
async fn plan_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(doc): ApiJson<Document>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(
        documents::plan_document(&state.pool, &Key::parse(&deployment), &doc, &caller.actor())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecallBody {
    /// The snapshot sequence number to bring back as the proposal.
    snapshot: i32,
}

/// Makes the proposal equal an older snapshot; commit it to apply.
async fn recall(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(body): ApiJson<RecallBody>,
) -> Result<Json<Applied>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let applied = documents::recall(
        &mut tx,
        &Key::parse(&deployment),
        body.snapshot,
        &caller.actor(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(applied))
}
