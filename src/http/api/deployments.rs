//! `/api/v2/deployments`: the deployment tree, propose/commit, snapshots and the graph.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::{
    db::{
        self,
        audit::Object,
        deployments::{Deployment, Graph, Snapshot},
        documents::{self, Applied, Plan},
        keys::Key,
    },
    domain::desired_state::Document,
    http::{
        actions,
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
        .routes(routes!(show, update, remove))
        .routes(routes!(commit))
        .routes(routes!(propose))
        .routes(routes!(snapshots, apply_document))
        .routes(routes!(plan, plan_document))
        .routes(routes!(recall))
        .routes(routes!(snapshot))
        .routes(routes!(graph))
}

#[utoipa::path(get, path = "/api/v2/deployments", tag = "deployments", params(PageQuery),
    responses((status = 200, body = Vec<Deployment>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::deployments::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DeploymentCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schema(schema_with = super::schemas::deployment_name)]
    name: String,
    #[serde(default)]
    description: String,
    parent: Option<ObjectKey>,
}

#[utoipa::path(post, path = "/api/v2/deployments", tag = "deployments", request_body = CreateBody,
    responses((status = 201, description = "a PROPOSED deployment", body = Deployment),
              (status = 409, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let parent = body.parent.map(|k| k.0);
    let deployment = actions::create_deployment(
        &state,
        &acting,
        &body.name,
        &body.description,
        parent.as_ref(),
    )
    .await?;
    Ok(created(
        format!("/api/v2/deployments/{}", deployment.id),
        deployment,
    ))
}

#[utoipa::path(get, path = "/api/v2/deployments/{deployment}", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Deployment>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::deployments::get(&mut conn, &Key::parse(&deployment)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DeploymentUpdate)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    description: Option<String>,
}

#[utoipa::path(method(put, patch), path = "/api/v2/deployments/{deployment}", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    request_body = UpdateBody, responses((status = 200, body = Deployment)))]
async fn update(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Deployment>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let deployment = db::deployments::update(
        &mut tx,
        &Key::parse(&deployment),
        body.description.as_deref(),
        &acting.actor,
    )
    .await?;
    acting
        .record(
            &mut tx,
            &Object::new("deployment", deployment.id, &deployment.name),
            serde_json::json!({ "description": body.description.is_some().then_some("changed") }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(deployment))
}

#[utoipa::path(delete, path = "/api/v2/deployments/{deployment}", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 204, description = "deleted; its nodes move to the parent"),
              (status = 409, description = "`system`, or it has child deployments", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let key = Key::parse(&deployment);
    let gone = db::deployments::get(&mut tx, &key).await?;
    db::deployments::delete(&mut tx, &key, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("deployment", gone.id, &gone.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a commit did: the deployment after it, the snapshot it recorded (or the latest one,
/// when the desired state was unchanged and nothing was recorded) and the noderoles whose
/// state changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Committed {
    deployment: Deployment,
    snapshot: Option<Snapshot>,
    recorded: bool,
    changed: Vec<i64>,
}

#[utoipa::path(put, path = "/api/v2/deployments/{deployment}/commit", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Committed), (status = 409, body = ErrorBody)))]
async fn commit(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Committed>, ApiError> {
    let (deployment, outcome) =
        actions::commit_deployment(&state, &acting, &Key::parse(&deployment)).await?;
    Ok(Json(Committed {
        deployment,
        snapshot: outcome.snapshot,
        recorded: outcome.recorded,
        changed: outcome.changed,
    }))
}

#[utoipa::path(put, path = "/api/v2/deployments/{deployment}/propose", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Deployment), (status = 409, body = ErrorBody)))]
async fn propose(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
) -> Result<Json<Deployment>, ApiError> {
    let deployment = actions::propose_deployment(&state, &acting, &Key::parse(&deployment)).await?;
    Ok(Json(deployment))
}

#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/snapshots", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name"), PageQuery),
    responses((status = 200, description = "newest first", body = Vec<Snapshot>)))]
async fn snapshots(
    State(state): State<AppState>,
    ApiPath(deployment): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    let page = q.page();
    let mut conn = state.pool.acquire().await?;
    let id = db::deployments::id_of(&mut conn, &Key::parse(&deployment)).await?;
    drop(conn);
    Ok(Json(
        db::deployments::snapshots(&state.pool, id, page.limit, page.offset).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/snapshots/{seq}", tag = "deployments",
    params(("deployment" = String, Path, description = "the deployment's id or name"), ("seq" = i32, Path, description = "the snapshot's sequence number")),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)))]
async fn snapshot(
    State(state): State<AppState>,
    ApiPath((deployment, seq)): ApiPath<(String, i32)>,
) -> Result<Json<Snapshot>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::deployments::snapshot(&mut conn, &Key::parse(&deployment), seq).await?,
    ))
}

#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/graph", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Graph)))]
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
#[utoipa::path(post, path = "/api/v2/deployments/{deployment}/snapshots", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    request_body = Document,
    responses((status = 201, description = "a new snapshot was recorded", body = Applied),
              (status = 200, description = "identical to the latest snapshot, or `commit: false`", body = Applied),
              (status = 409, description = "`stale_base`, `bind_refused`, ...", body = ErrorBody)))]
async fn apply_document(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(doc): ApiJson<Document>,
) -> Result<Response, ApiError> {
    let key = Key::parse(&deployment);
    let mut tx = state.pool.begin().await?;
    let applied = documents::apply(&mut tx, &key, &doc, &acting.actor).await?;
    let deployment = db::deployments::get(&mut tx, &key).await?;
    if applied.committed && applied.changed {
        state.hooks.check_commit(&mut tx, deployment.id).await?;
    }
    acting
        .record(
            &mut tx,
            &Object::new("deployment", deployment.id, &deployment.name),
            actions::applied_summary(&applied),
        )
        .await?;
    tx.commit().await?;
    let status = if applied.committed && applied.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json::<Applied>(applied)).into_response())
}

/// What committing the current proposal would do; changes nothing.
#[utoipa::path(get, path = "/api/v2/deployments/{deployment}/plan", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    responses((status = 200, body = Plan)))]
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
#[utoipa::path(post, path = "/api/v2/deployments/{deployment}/plan", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    request_body = Document, responses((status = 200, body = Plan)))]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecallBody {
    /// The snapshot sequence number to bring back as the proposal.
    #[serde(deserialize_with = "crate::domain::number::whole")]
    snapshot: i32,
}

/// Makes the proposal equal an older snapshot; commit it to apply.
#[utoipa::path(put, path = "/api/v2/deployments/{deployment}/recall", tag = "deployments", params(("deployment" = String, Path, description = "the deployment's id or name")),
    request_body = RecallBody, responses((status = 200, body = Applied), (status = 404, body = ErrorBody)))]
async fn recall(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(deployment): ApiPath<String>,
    ApiJson(body): ApiJson<RecallBody>,
) -> Result<Json<Applied>, ApiError> {
    let applied =
        actions::recall_snapshot(&state, &acting, &Key::parse(&deployment), body.snapshot).await?;
    Ok(Json(applied))
}
