//! Power operations: `POST /api/v2/nodes/{node}/power` asks for one (202: it is queued and
//! carried out by a daemon's power worker, see `docs/power.md`), `POST /api/v2/power_ops`
//! for many nodes at once (named, a deployment's, or all with a BMC), `GET
//! /api/v2/power_ops/{id}` follows one and `GET /api/v2/nodes/{node}/power_ops` lists a
//! node's (waiting, running, then the last finished).

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::schemas;
use crate::{
    db::{self, keys::Key, nodes::NodeFilter, paging::Window, power_ops::PowerOp},
    domain::bmc::PowerOperation,
    http::{
        actions,
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request))
        .routes(routes!(request_many))
        .routes(routes!(show))
        .routes(routes!(of_node))
}

/// What a power operation does.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
enum Action {
    On,
    /// Asks the operating system to shut down.
    Off,
    ForceOff,
    /// Off and on again (on, for a machine that is off).
    Cycle,
    /// Boots from the network once (the next boot device), then cycles.
    PxeOnce,
    /// A machine crowbar has not seen yet: the node takes the MAC its BMC reports, boots
    /// into discovery, and the machine that registers with that MAC becomes this node.
    Discover,
    /// Changes nothing: the credentials, what the BMC tells of the machine, and whether the
    /// account may change its power (queued by every enrolment too).
    Check,
}

impl Action {
    fn name(self) -> &'static str {
        let operation = match self {
            Action::On => PowerOperation::On,
            Action::Off => PowerOperation::Off,
            Action::ForceOff => PowerOperation::ForceOff,
            Action::Cycle => PowerOperation::Cycle,
            Action::PxeOnce => PowerOperation::PxeOnce,
            Action::Discover => PowerOperation::Discover,
            Action::Check => PowerOperation::Check,
        };
        operation.name()
    }
}

/// A power operation to queue.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PowerRequest)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    action: Action,
    /// Cycle a machine whose power state is unknown anyway.
    #[serde(default)]
    force: bool,
}

/// Most nodes one request queues operations for.
const MAX_NODES: i64 = 10_000;

/// Queues a power operation on the node (202): it runs when the node's BMC is free and the
/// cap on BMC operations allows, and is followed at `GET /api/v2/power_ops/{id}`. The same
/// action already waiting is answered instead of queued twice. 409 `no_bmc` when the node
/// has none.
#[utoipa::path(post, path = "/api/v2/nodes/{node}/power", tag = "power", request_body = RequestBody,
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 202, body = PowerOp), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn request(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
    ApiJson(body): ApiJson<RequestBody>,
) -> Result<(StatusCode, Json<PowerOp>), ApiError> {
    let found = {
        let mut conn = state.pool.acquire().await?;
        db::nodes::get(&mut conn, &Key::parse(&node)).await?
    };
    let mut ops =
        actions::request_power(&state, &acting, &[found.id], body.action.name(), body.force)
            .await?;
    Ok((StatusCode::ACCEPTED, Json(ops.remove(0))))
}

/// Power operations for many nodes: exactly one of `nodes`, `deployment` or `all`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PowerRequestMany)]
#[serde(deny_unknown_fields)]
struct ManyBody {
    action: Action,
    #[serde(default)]
    force: bool,
    /// These nodes (ids or names); each must have a BMC.
    #[serde(default)]
    #[schema(schema_with = schemas::node_names_or_null)]
    nodes: Option<Vec<String>>,
    /// The nodes of this deployment that have a BMC.
    #[serde(default)]
    #[schema(schema_with = schemas::deployment_name_or_null)]
    deployment: Option<String>,
    /// Every node with a BMC.
    #[serde(default)]
    all: bool,
}

/// The operations queued (or already waiting) for a request on many nodes.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PowerOps)]
struct Many {
    operations: Vec<PowerOp>,
}

/// Queues a power operation on many nodes at once (all or none, 202): the named ones (each
/// must have a BMC: 409 `no_bmc`), a deployment's or every node's that have one. Exactly
/// one of `nodes`, `deployment` or `all: true` (422 `invalid_selection`).
#[utoipa::path(post, path = "/api/v2/power_ops", tag = "power", request_body = ManyBody,
    responses((status = 202, body = Many), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn request_many(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<ManyBody>,
) -> Result<(StatusCode, Json<Many>), ApiError> {
    let chosen = [body.nodes.is_some(), body.deployment.is_some(), body.all];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(ApiError::unprocessable(
            "invalid_selection",
            "say which nodes: exactly one of `nodes`, `deployment` or `all: true`",
        ));
    }
    let ids = match (&body.nodes, &body.deployment) {
        (Some(names), _) => {
            let mut conn = state.pool.acquire().await?;
            let mut ids = Vec::with_capacity(names.len());
            for name in names {
                let id = db::nodes::get(&mut conn, &Key::parse(name)).await?.id;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
        (None, deployment) => {
            let ids = match deployment {
                Some(deployment) => {
                    let mut conn = state.pool.acquire().await?;
                    db::deployments::get(&mut conn, &Key::parse(deployment)).await?;
                    drop(conn);
                    let filter = NodeFilter {
                        deployment: Some(deployment.clone()),
                        window: Window::first(MAX_NODES + 1),
                        ..Default::default()
                    };
                    db::nodes::ids(&state.pool, &filter).await?
                }
                None => db::bmcs::enrolled(&state.pool)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect(),
            };
            let mut conn = state.pool.acquire().await?;
            db::bmcs::with_bmc(&mut conn, &ids).await?
        }
    };
    if ids.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_bmc",
            "no node with a BMC is selected; enroll BMCs first (crowbar nodes bmc set NODE ...)",
        ));
    }
    if ids.len() as i64 > MAX_NODES {
        return Err(ApiError::unprocessable(
            "too_many_nodes",
            format!("at most {MAX_NODES} nodes at once; select fewer"),
        ));
    }
    let operations =
        actions::request_power(&state, &acting, &ids, body.action.name(), body.force).await?;
    Ok((StatusCode::ACCEPTED, Json(Many { operations })))
}

/// A power operation: its state (`queued`, `running`, `done`, `failed`) and why.
#[utoipa::path(get, path = "/api/v2/power_ops/{id}", tag = "power",
    params(("id" = i64, Path, description = "the operation's id")),
    responses((status = 200, body = PowerOp), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PowerOp>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::power_ops::get(&mut conn, id).await?))
}

/// Finished operations a node's list shows.
const HISTORY: i64 = 50;

/// The node's power operations, newest first: those waiting or running, then its last 50
/// finished.
#[utoipa::path(get, path = "/api/v2/nodes/{node}/power_ops", tag = "power",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Vec<PowerOp>), (status = 404, body = ErrorBody)))]
async fn of_node(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Vec<PowerOp>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let found = db::nodes::get(&mut conn, &Key::parse(&node)).await?;
    Ok(Json(
        db::power_ops::for_node(&mut conn, found.id, HISTORY).await?,
    ))
}
