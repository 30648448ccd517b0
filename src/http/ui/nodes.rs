//! `/nodes` and `/nodes/{name}`: every node's alive/available state, the available toggle
//! and bulk actions; one node's noderoles and history.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::{Path, State},
    response::Response,
};
use serde::Deserialize;

use super::{Pages, error::UiError, layout::Layout, session::Session, view, view::NrView};
use crate::{
    db::{
        self,
        events::EventRow,
        keys::Key,
        node_roles::NodeRoleFilter,
        nodes::{Node, NodeFilter, NodeUpdate},
        paging::Window,
    },
    http::{actions, state::AppState},
};

pub fn router() -> Pages {
    Pages::new()
        .get("/nodes", list)
        .post("/nodes/bulk", bulk)
        .get("/nodes/{name}", page)
        .post("/nodes/{name}/available", set_available)
}

/// A node as the pages show it.
pub struct NodeView {
    pub node: Node,
    /// CSS class suffix of its alive/available condition.
    pub condition: &'static str,
    /// The same in words.
    pub condition_text: &'static str,
}

impl From<Node> for NodeView {
    fn from(node: Node) -> Self {
        let (condition, condition_text) = super::layout::node_condition(node.alive, node.available);
        NodeView {
            node,
            condition,
            condition_text,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "nodes.html")]
struct ListPage {
    layout: Layout,
    nodes: Vec<NodeView>,
}

async fn list(State(state): State<AppState>, session: Session) -> Result<ListPage, UiError> {
    let layout = Layout::new(&state, &session, "nodes").await?;
    let nodes = db::nodes::list(
        &state.pool,
        &NodeFilter {
            window: Window::first(10_000),
            ..Default::default()
        },
    )
    .await?;
    Ok(ListPage {
        layout,
        nodes: nodes.into_iter().map(NodeView::from).collect(),
    })
}

#[derive(Debug, Deserialize)]
struct AvailableForm {
    available: bool,
}

/// The available toggle: reserve a node (no new work starts on it) or release it.
async fn set_available(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<AvailableForm>,
) -> Result<Response, UiError> {
    set_flags(&state, &session, &[name], form.available).await?;
    Ok(refresh())
}

/// Bulk actions on the checked nodes. The form repeats `node` once per checked node.
async fn bulk(
    State(state): State<AppState>,
    session: Session,
    body: String,
) -> Result<Response, UiError> {
    let mut nodes = Vec::new();
    let mut action = None;
    for (key, value) in form_urlencoded::parse(body.as_bytes()) {
        match key.as_ref() {
            "node" => nodes.push(value.into_owned()),
            "action" => action = Some(value.into_owned()),
            _ => {}
        }
    }
    if nodes.is_empty() {
        return Err(UiError::invalid("check at least one node first"));
    }
    let available = match action.as_deref() {
        Some("reserve") => false,
        Some("release") => true,
        _ => return Err(UiError::invalid("choose an action: reserve or release")),
    };
    set_flags(&state, &session, &nodes, available).await?;
    Ok(refresh())
}

/// Sets `available` on every named node in one transaction: all or none.
async fn set_flags(
    state: &AppState,
    session: &Session,
    nodes: &[String],
    available: bool,
) -> Result<(), UiError> {
    let update = NodeUpdate {
        available: Some(available),
        accept: true,
        ..Default::default()
    };
    let nodes: Vec<Key> = nodes.iter().map(|name| Key::parse(name)).collect();
    let summary = serde_json::json!({ "available": available });
    actions::update_nodes(
        state,
        &session.acting,
        &nodes,
        &update,
        "set in the web UI",
        &summary,
    )
    .await?;
    Ok(())
}

/// Makes htmx reload the page, which shows the changed nodes.
pub fn refresh() -> Response {
    use axum::response::IntoResponse;
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert("hx-refresh", axum::http::HeaderValue::from_static("true"));
    response
}

#[derive(Template, WebTemplate)]
#[template(path = "node.html")]
struct NodePage {
    layout: Layout,
    node: NodeView,
    noderoles: Vec<NrView>,
    history: Vec<EventRow>,
    /// The node's latest audit records.
    audit: Vec<crate::db::audit::Record>,
    host_key: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<NodePage, UiError> {
    let layout = Layout::new(&state, &session, "nodes").await?;
    let mut conn = state.pool.acquire().await?;
    let node = db::nodes::get(&mut conn, &Key::parse(&name)).await?;
    drop(conn);
    let noderoles = view::noderoles(
        &state,
        &NodeRoleFilter {
            node: Some(node.id.to_string()),
            window: Window::first(10_000),
            ..Default::default()
        },
    )
    .await?;
    Ok(NodePage {
        layout,
        noderoles,
        history: db::nodes::history(&state.pool, node.id, 200, 0).await?,
        audit: super::audit::of_object(&state, "node", node.id).await?,
        host_key: db::host_keys::pinned(&state.pool, node.id).await?,
        node: node.into(),
    })
}
