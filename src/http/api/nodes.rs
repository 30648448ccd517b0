//! `/api/v2/nodes`: machines, their flags and history, and their noderoles.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use std::net::IpAddr;

use super::{respond::created, schemas};
use crate::http::actions::{WithReason, noderole_page, with_reason};
use crate::{
    db::{
        self,
        audit::Object,
        events::EventRow,
        keys::Key,
        node_roles::{NodeRole, NodeRoleDetail, NodeRoleFilter},
        nodes::{NewNode, Node, NodeFilter, NodeSort, NodeUpdate},
    },
    http::{
        audit::Acting,
        auth::Caller,
        error::{ApiError, ErrorBody},
        extract::{
            ApiJson, ApiPath, ApiQuery, Limit, ObjectKey, Offset, Page, PageQuery, double_option,
        },
        state::AppState,
    },
    provisioner::{canonical_mac, install::node_may_set_bootenv},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(node_roles))
        .routes(routes!(node_role))
        .routes(routes!(events))
        .routes(routes!(commit))
        .routes(routes!(propose))
        .routes(routes!(redeploy))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only nodes whose names start with this, e.g. `rack12-`.
    q: Option<String>,
    /// Deployment name or id.
    deployment: Option<String>,
    alive: Option<bool>,
    available: Option<bool>,
    admin: Option<bool>,
    #[param(inline)]
    limit: Option<Limit>,
    #[param(inline)]
    offset: Option<Offset>,
    /// The order: `id` (as registered, the default), `-id` (newest first), `name`, `-name`.
    #[param(inline)]
    sort: Option<SortParam>,
    /// A cursor of an id order: the nodes whose ids follow this one (the last id of the
    /// previous page). A name order ignores it.
    after: Option<i64>,
    /// A cursor of a name order: the nodes whose names follow this one (the last name of the
    /// previous page). An id order ignores it.
    after_name: Option<String>,
}

/// The orders of `GET /api/v2/nodes`.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
enum SortParam {
    #[serde(rename = "id")]
    Id,
    #[serde(rename = "-id")]
    IdDescending,
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "-name")]
    NameDescending,
}

impl From<SortParam> for NodeSort {
    fn from(sort: SortParam) -> Self {
        match sort {
            SortParam::Id => NodeSort::Oldest,
            SortParam::IdDescending => NodeSort::Newest,
            SortParam::Name => NodeSort::Name,
            SortParam::NameDescending => NodeSort::NameDescending,
        }
    }
}

#[utoipa::path(get, path = "/api/v2/nodes", tag = "nodes", params(ListQuery),
    responses((status = 200, description = "nodes, by id unless `sort` says otherwise", body = Vec<Node>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Node>>, ApiError> {
    let page = Page::new(q.limit, q.offset);
    let sort = q.sort.map_or(NodeSort::default(), NodeSort::from);
    let filter = NodeFilter {
        name_prefix: q.q,
        deployment: q.deployment,
        alive: q.alive,
        available: q.available,
        admin: q.admin,
        sort,
        // each order reads its own cursor (a schema cannot tie one to the other)
        after_name: q.after_name.filter(|_| sort.by_name()),
        window: page.window(q.after.filter(|_| !sort.by_name())),
    };
    Ok(Json(db::nodes::list(&state.pool, &filter).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NodeCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schema(schema_with = schemas::node_name)]
    name: String,
    #[schema(schema_with = schemas::ip_address_or_null)]
    address: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    description: String,
    deployment: Option<ObjectKey>,
    #[schema(schema_with = schemas::bootenv_or_null)]
    bootenv: Option<String>,
    #[schema(schema_with = schemas::mac_or_null)]
    mac: Option<String>,
}

/// A new node and its token, which is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NodeCreated)]
struct Created {
    #[serde(flatten)]
    node: Node,
    token: String,
}

#[utoipa::path(post, path = "/api/v2/nodes", tag = "nodes", request_body = CreateBody,
    responses((status = 201, description = "the node with its token (shown only here)", body = Created),
              (status = 409, description = "name or MAC taken", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    if let Some(bootenv) = &body.bootenv {
        check_bootenv(&state, bootenv)?;
    }
    let new = NewNode {
        name: body.name,
        address: body.address.as_deref().map(address).transpose()?,
        admin: body.admin,
        description: body.description,
        deployment: body.deployment.map(|k| k.0),
        bootenv: body.bootenv,
        mac: body.mac.as_deref().map(mac).transpose()?,
        discovered: false,
    };
    let mut tx = state.pool.begin().await?;
    let (node, token) = db::nodes::create(&mut tx, &new, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", node.id, &node.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    Ok(created(
        format!("/api/v2/nodes/{}", node.id),
        Created { node, token },
    ))
}

/// An admin address as the database stores it; parsed here so that a bad one is refused in
/// our words, never PostgreSQL's.
fn address(text: &str) -> Result<String, ApiError> {
    let ip: IpAddr = text.parse().map_err(|_| {
        ApiError::unprocessable(
            "invalid_value",
            format!("address: `{text}` is not an IP address (e.g. 198.51.100.10 or fd00::10)"),
        )
    })?;
    Ok(ip.to_string())
}

/// A MAC address in canonical form (lower case, colons).
fn mac(text: &str) -> Result<String, ApiError> {
    canonical_mac(text).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_value",
            format!("mac: `{text}` is not a MAC address (e.g. 52:54:00:12:34:56)"),
        )
    })
}

/// A bootenv must be a plain name, and one defined in `bootenvs/`.
fn check_bootenv(state: &AppState, bootenv: &str) -> Result<(), ApiError> {
    let ok = !bootenv.is_empty()
        && bootenv.len() <= 64
        && bootenv
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(ApiError::unprocessable(
            "invalid_bootenv",
            "a bootenv is a name of letters, digits, '-', '_' and '.' (at most 64)",
        ));
    }
    if state.provisioner.bootenvs.get(bootenv).is_none() {
        let known: Vec<&str> = state
            .provisioner
            .bootenvs
            .all()
            .map(|b| b.name.as_str())
            .collect();
        return Err(ApiError::unprocessable(
            "unknown_bootenv",
            format!("no bootenv `{bootenv}`; known: {}", known.join(", ")),
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Node>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(db::nodes::get(&mut conn, &Key::parse(&node)).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = NodeUpdate)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    alive: Option<bool>,
    available: Option<bool>,
    #[schema(schema_with = schemas::bootenv_or_null)]
    bootenv: Option<String>,
    description: Option<String>,
    deployment: Option<ObjectKey>,
    /// `null` clears the address.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(schema_with = schemas::ip_address_or_null)]
    address: Option<Option<String>>,
    /// Why, for the node's history.
    reason: Option<String>,
}

/// PUT and PATCH both change only the fields given; an admin's (even with no field)
/// accepts a node discovery made. Node tokens may set only `alive` of their own node (the
/// auth middleware already kept them to their own node), and `bootenv` only as an
/// installer reporting the disk ready (`local`).
#[utoipa::path(method(put, patch), path = "/api/v2/nodes/{node}", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    request_body = UpdateBody,
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Node>, ApiError> {
    if caller.is_node() {
        let mut refused: Vec<&str> = Vec::new();
        for (field, given) in [
            ("available", body.available.is_some()),
            ("description", body.description.is_some()),
            ("deployment", body.deployment.is_some()),
            ("address", body.address.is_some()),
            ("reason", body.reason.is_some()),
        ] {
            if given {
                refused.push(field);
            }
        }
        if !refused.is_empty() {
            return Err(ApiError::forbidden(format!(
                "a node token may set only `alive` and `bootenv`, not {}",
                refused.join(", ")
            ))
            .with_details(serde_json::json!({ "fields": refused })));
        }
    }
    if let Some(bootenv) = &body.bootenv {
        check_bootenv(&state, bootenv)?;
    }
    let summary = serde_json::json!({
        "alive": body.alive,
        "available": body.available,
        "bootenv": body.bootenv,
        "deployment": body.deployment.as_ref().map(|k| k.0.to_string()),
        "address": body.address,
        "description": body.description.is_some().then_some("changed"),
    });
    let summary = without_nulls(summary);
    let mut tx = state.pool.begin().await?;
    if let (Caller::Node { id, .. }, Some(wanted)) = (&caller, &body.bootenv) {
        let current = db::nodes::get(&mut tx, &Key::Id(*id)).await?.bootenv;
        if !node_may_set_bootenv(&state.provisioner.bootenvs, &current, wanted) {
            return Err(ApiError::forbidden(format!(
                "a node token may not change its bootenv from `{current}` to `{wanted}`: \
                 only an installer reports `local` when its install is done; other bootenv \
                 changes are an admin's"
            )));
        }
    }
    let update = NodeUpdate {
        alive: body.alive,
        available: body.available,
        bootenv: body.bootenv,
        description: body.description,
        deployment: body.deployment.map(|k| k.0),
        address: body
            .address
            .map(|a| a.as_deref().map(address).transpose())
            .transpose()?,
        // an admin's change accepts a node discovery made, even one that changes nothing
        accept: !caller.is_node(),
    };
    let reason = match (&caller, body.reason) {
        (_, Some(reason)) => reason,
        (Caller::Node { .. }, None) => "reported by the node".to_string(),
        (Caller::Member { .. }, None) => String::new(),
    };
    let node = db::nodes::update(
        &mut tx,
        &Key::parse(&node),
        &update,
        &caller.actor(),
        &reason,
    )
    .await?;
    acting
        .record(&mut tx, &Object::new("node", node.id, &node.name), summary)
        .await?;
    tx.commit().await?;
    Ok(Json(node))
}

#[utoipa::path(delete, path = "/api/v2/nodes/{node}", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 204, description = "deleted, with its noderoles"),
              (status = 409, description = "the last admin node", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let key = Key::parse(&node);
    let gone = db::nodes::get(&mut tx, &key).await?;
    db::nodes::delete(&mut tx, &key, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", gone.id, &gone.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/node_roles", tag = "nodes", params(("node" = String, Path, description = "the node's id or name"), PageQuery),
    responses((status = 200, body = [WithReason<NodeRole>])))]
async fn node_roles(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<WithReason<NodeRole>>>, ApiError> {
    let page = q.page();
    let mut conn = state.pool.acquire().await?;
    let node_id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    drop(conn);
    let filter = NodeRoleFilter {
        node: Some(node_id.to_string()),
        window: page.window(None),
        ..Default::default()
    };
    Ok(Json(noderole_page(&state, &filter).await?))
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/node_roles/{role}", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name"), ("role" = String, Path, description = "the role's name")),
    responses((status = 200, body = WithReason<NodeRoleDetail>), (status = 404, body = ErrorBody)))]
async fn node_role(
    State(state): State<AppState>,
    ApiPath((node, role)): ApiPath<(String, String)>,
) -> Result<Json<WithReason<NodeRoleDetail>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let id = db::node_roles::find(&mut conn, &Key::parse(&node), &role).await?;
    let detail = db::node_roles::detail(&mut conn, id).await?;
    drop(conn);
    Ok(Json(with_reason(&state, id, detail).await?))
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/events", tag = "nodes", params(("node" = String, Path, description = "the node's id or name"), PageQuery),
    responses((status = 200, description = "the node's history, newest first", body = Vec<EventRow>)))]
async fn events(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<EventRow>>, ApiError> {
    let page = q.page();
    let mut conn = state.pool.acquire().await?;
    let node_id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    drop(conn);
    Ok(Json(
        db::nodes::history(&state.pool, node_id, page.limit, page.offset).await?,
    ))
}

/// What a node-wide commit or propose did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct NodeChange {
    node: Node,
    /// Noderoles whose state changed.
    changed: Vec<i64>,
}

/// `value` without its null fields: a summary names only what a request set.
fn without_nulls(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

/// What `commit`, `propose` and `redeploy` do to all of a node's noderoles at once.
#[derive(Debug, Clone, Copy)]
enum NodeChangeKind {
    Commit,
    Propose,
    Redeploy,
}

async fn change_node(
    state: &AppState,
    acting: &Acting,
    node: &str,
    kind: NodeChangeKind,
) -> Result<Json<NodeChange>, ApiError> {
    let key = Key::parse(node);
    let actor = &acting.actor;
    let mut tx = state.pool.begin().await?;
    let changed = match kind {
        NodeChangeKind::Commit => db::node_roles::commit_node(&mut tx, &key, actor).await?,
        NodeChangeKind::Propose => db::node_roles::propose_node(&mut tx, &key, actor).await?,
        NodeChangeKind::Redeploy => db::node_roles::redeploy_node(&mut tx, &key, actor).await?,
    };
    let node = db::nodes::get(&mut tx, &key).await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", node.id, &node.name),
            serde_json::json!({ "noderoles": changed.len() }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(NodeChange { node, changed }))
}

/// Commits every proposed noderole on the node, in whatever deployment it lives.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/commit", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = NodeChange), (status = 404, body = ErrorBody)))]
async fn commit(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeChange>, ApiError> {
    change_node(&state, &acting, &node, NodeChangeKind::Commit).await
}

/// Puts every noderole on the node back to proposed.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/propose", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = NodeChange), (status = 404, body = ErrorBody),
              (status = 409, description = "a run is executing", body = ErrorBody)))]
async fn propose(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeChange>, ApiError> {
    change_node(&state, &acting, &node, NodeChangeKind::Propose).await
}

/// Runs everything on the node again from the start, destructive roles included (an OS
/// install reinstalls): committed noderoles forget their runs and wall and go back to TODO,
/// or BLOCKED behind their parents.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/redeploy", tag = "nodes", params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = NodeChange), (status = 404, body = ErrorBody),
              (status = 409, description = "a run is executing", body = ErrorBody)))]
async fn redeploy(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeChange>, ApiError> {
    change_node(&state, &acting, &node, NodeChangeKind::Redeploy).await
}
