//! `/deployments` and `/deployments/{name}`: the deployment list, and a deployment's grid
//! of nodes × roles where admins bind roles (drag and drop, or the keyboard), add roles
//! and nodes, see the plan, and propose, commit or recall.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    Pages,
    error::UiError,
    grid::{self, Grid},
    layout::Layout,
    session::Session,
    view,
};
use crate::{
    db::{
        self, deployments::Deployment, documents::Plan, keys::Key, node_roles::NodeRoleFilter,
        nodes::NodeUpdate, paging::Window, roles::RoleFilter,
    },
    domain::policy::Action,
    http::{actions, state::AppState},
};

/// More than any deployment page shows.
const ALL: i64 = 10_000;

pub fn router() -> Pages {
    Pages::new()
        .get("/deployments", list)
        .post("/deployments", create)
        .get("/deployments/{name}", page)
        .get("/deployments/{name}/grid", grid_only)
        .get("/deployments/{name}/state", state_only)
        .get("/deployments/{name}/history", history_only)
        .post("/deployments/{name}/bind", bind)
        .post("/deployments/{name}/unbind", unbind)
        .post("/deployments/{name}/roles", add_role)
        .post("/deployments/{name}/nodes", add_node)
        .get("/deployments/{name}/plan", plan)
        .post("/deployments/{name}/propose", propose)
        .post("/deployments/{name}/commit", commit)
        .post("/deployments/{name}/recall", recall)
}

#[derive(Template, WebTemplate)]
#[template(path = "deployments.html")]
struct ListPage {
    layout: Layout,
    deployments: Vec<Deployment>,
}

async fn list(State(state): State<AppState>, session: Session) -> Result<ListPage, UiError> {
    let layout = Layout::new(&state, &session, "deployments").await?;
    Ok(ListPage {
        layout,
        deployments: db::deployments::list(&state.pool, ALL, 0).await?,
    })
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parent: String,
}

async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    let name = form.name.trim();
    let parent = (!form.parent.trim().is_empty()).then(|| Key::parse(form.parent.trim()));
    let deployment = actions::create_deployment(
        &state,
        &session.acting,
        name,
        form.description.trim(),
        parent.as_ref(),
    )
    .await?;
    Ok(redirect_htmx(&format!("/deployments/{}", deployment.name)))
}

/// An answer that makes htmx load `path` as a new page.
pub fn redirect_htmx(path: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(path) {
        response.headers_mut().insert("hx-redirect", value);
    }
    response
}

#[derive(Template, WebTemplate)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    layout: Layout,
    deployment: Deployment,
    grid_html: String,
    history_html: String,
}

/// The deployment's audit records and snapshots: it reloads itself when the deployment
/// changes (a commit, a proposal, a recall), so it never contradicts the grid above it.
#[derive(Template, WebTemplate)]
#[template(path = "deployment_history.html")]
struct HistoryFragment {
    deployment: Deployment,
    snapshots: Vec<db::deployments::Snapshot>,
    /// The deployment's latest audit records.
    audit: Vec<db::audit::Record>,
}

async fn history_fragment(
    state: &AppState,
    deployment: Deployment,
) -> Result<HistoryFragment, UiError> {
    let snapshots = db::deployments::snapshots(&state.pool, deployment.id, ALL, 0).await?;
    let audit = super::audit::of_object(state, "deployment", deployment.id).await?;
    Ok(HistoryFragment {
        deployment,
        snapshots,
        audit,
    })
}

async fn history_only(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<HistoryFragment, UiError> {
    let mut conn = state.pool.acquire().await?;
    let deployment = db::deployments::get(&mut conn, &Key::parse(&name)).await?;
    drop(conn);
    history_fragment(&state, deployment).await
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
) -> Result<DeploymentPage, UiError> {
    let layout = Layout::new(&state, &session, "deployments").await?;
    let fragment = grid_fragment(&state, &session, &name, cursor).await?;
    let history = history_fragment(&state, fragment.deployment.clone()).await?;
    Ok(DeploymentPage {
        layout,
        deployment: fragment.deployment.clone(),
        grid_html: fragment
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
        history_html: history
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
    })
}

/// The part of the deployment page that actions re-render: its state and buttons, the
/// grid, and the palettes of roles and nodes to drag onto it.
#[derive(Template)]
#[template(path = "grid.html")]
struct GridFragment {
    deployment: Deployment,
    grid: Grid,
    /// Every role, for the role palette and the "add role" list.
    roles: Vec<String>,
    /// Snapshot sequence numbers, newest first, for recall.
    snapshots: Vec<i32>,
    /// The last event numbered before the data was read: the page script re-applies newer
    /// states it already knows when this fragment replaces an older one.
    events_after: i64,
    /// Whether the session may change the deployment: without it, no palettes to drag
    /// from, no drop targets and no buttons.
    operate: bool,
    /// Nodes of other deployments to offer for "move into this deployment"; empty when
    /// there are more than [`OFFERED_NODES`] (then the name is typed).
    other_nodes: Vec<String>,
    /// How many nodes the grid has rows for, counted up to [`ALL`] + 1.
    node_count: i64,
    /// Roles ACTIVE on every node they are bound to, shown as one summary column.
    collapsed: Vec<String>,
    /// The cursor of the next page of rows, when there may be one.
    next: Option<i64>,
    /// Whether this is a later page (a link back to the first is shown).
    paged: bool,
}

impl IntoResponse for GridFragment {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => UiError(crate::http::error::ApiError::internal(e)).into_response(),
        }
    }
}

/// Grid rows on one page.
pub const GRID_ROWS: i64 = 100;
/// Most nodes of other deployments offered in a list to move in; with more, a name is typed.
const OFFERED_NODES: i64 = 500;

/// Which page of grid rows a request is about: `?after=` of its own URL (the page and the
/// grid's reloads) or, for the actions htmx posts from the page, of the page's URL
/// (`HX-Current-URL`), so a change made on page 3 re-renders page 3.
#[derive(Debug, Clone, Copy, Default)]
pub struct GridCursor(Option<i64>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for GridCursor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let after_in = |query: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "after")
                .and_then(|(_, value)| value.parse::<i64>().ok())
        };
        let own = parts.uri.query().and_then(after_in);
        let page = || {
            let url = parts.headers.get("hx-current-url")?.to_str().ok()?;
            after_in(url.split_once('?')?.1)
        };
        Ok(GridCursor(own.or_else(page)))
    }
}

async fn grid_fragment(
    state: &AppState,
    session: &Session,
    name: &str,
    cursor: GridCursor,
) -> Result<GridFragment, UiError> {
    let events_after = db::events::last_seq(&state.pool).await?;
    let mut conn = state.pool.acquire().await?;
    let deployment = db::deployments::get(&mut conn, &Key::parse(name)).await?;
    let (rows, node_count) =
        db::deployments::grid_nodes(&mut conn, deployment.id, cursor.0, GRID_ROWS, ALL + 1).await?;
    // a deployment larger than a page shows the roles ACTIVE on every node as one column
    let collapsed: Vec<String> = if node_count > GRID_ROWS {
        db::deployments::role_graph(&mut conn, &Key::Id(deployment.id))
            .await?
            .roles
            .into_iter()
            .filter(|t| t.total() > 0 && t.active == t.total())
            .map(|t| t.role)
            .collect()
    } else {
        Vec::new()
    };
    let mut other_nodes =
        db::nodes::names_outside(&mut conn, deployment.id, OFFERED_NODES + 1).await?;
    if other_nodes.len() as i64 > OFFERED_NODES {
        other_nodes.clear();
    }
    drop(conn);
    let noderoles: Vec<_> = view::noderoles(
        state,
        &NodeRoleFilter {
            deployment: Some(deployment.id.to_string()),
            node_ids: Some(rows.iter().map(|(id, _)| *id).collect()),
            window: Window::first(ALL),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .filter(|nr| !collapsed.contains(&nr.role))
    .collect();
    let listed: Vec<String> = db::deployments::role_names(&state.pool, deployment.id)
        .await?
        .into_iter()
        .filter(|role| !collapsed.contains(role))
        .collect();
    let node_names: Vec<String> = rows.iter().map(|(_, name)| name.clone()).collect();
    let roles = db::roles::list_roles(
        &state.pool,
        &RoleFilter {
            limit: ALL,
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .map(|r| r.name)
    .collect();
    let snapshots = db::deployments::snapshots(&state.pool, deployment.id, ALL, 0)
        .await?
        .into_iter()
        .map(|s| s.seq)
        .collect();
    let next = (rows.len() as i64 == GRID_ROWS)
        .then(|| rows.last().map(|(id, _)| *id))
        .flatten();
    Ok(GridFragment {
        grid: grid::layout(&node_names, &listed, noderoles),
        deployment,
        roles,
        snapshots,
        events_after,
        operate: session.may(Action::DeploymentCommit),
        other_nodes,
        node_count,
        collapsed,
        next,
        paged: cursor.0.is_some(),
    })
}

async fn grid_only(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
) -> Result<GridFragment, UiError> {
    grid_fragment(&state, &session, &name, cursor).await
}

/// The deployment's state badge; it reloads itself as events arrive (a deployment becomes
/// ACTIVE or ERROR through its noderoles, which have events of their own).
#[derive(Template, WebTemplate)]
#[template(path = "deployment_state.html")]
struct StateFragment {
    deployment: Deployment,
}

async fn state_only(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StateFragment, UiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(StateFragment {
        deployment: db::deployments::get(&mut conn, &Key::parse(&name)).await?,
    })
}

#[derive(Debug, Deserialize)]
struct BindForm {
    node: String,
    role: String,
}

/// Binds a role to a node in this deployment (a drop, or the keyboard equivalent).
async fn bind(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
    Form(form): Form<BindForm>,
) -> Result<GridFragment, UiError> {
    let deployment = Key::parse(&name);
    actions::bind(
        &state,
        &session.acting,
        &Key::parse(&form.node),
        &Key::parse(&form.role),
        Some(&deployment),
        None,
    )
    .await?;
    grid_fragment(&state, &session, &name, cursor).await
}

#[derive(Debug, Deserialize)]
struct UnbindForm {
    noderole: i64,
}

async fn unbind(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
    Form(form): Form<UnbindForm>,
) -> Result<GridFragment, UiError> {
    actions::delete_noderole(&state, &session.acting, form.noderole).await?;
    grid_fragment(&state, &session, &name, cursor).await
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    role: String,
}

async fn add_role(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<GridFragment, UiError> {
    actions::add_deployment_role(
        &state,
        &session.acting,
        &Key::parse(&name),
        &Key::parse(&form.role),
        &serde_json::json!({}),
    )
    .await?;
    grid_fragment(&state, &session, &name, cursor).await
}

#[derive(Debug, Deserialize)]
struct NodeForm {
    node: String,
}

/// Moves a node into this deployment (the API's `PUT /nodes/{id}` with `deployment`).
async fn add_node(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
    Form(form): Form<NodeForm>,
) -> Result<GridFragment, UiError> {
    let update = NodeUpdate {
        deployment: Some(Key::parse(&name)),
        accept: true,
        ..Default::default()
    };
    let node = [Key::parse(&form.node)];
    actions::update_nodes(
        &state,
        &session.acting,
        &node,
        &update,
        "moved in the web UI",
        &serde_json::json!({ "deployment": name }),
    )
    .await?;
    grid_fragment(&state, &session, &name, cursor).await
}

#[derive(Template, WebTemplate)]
#[template(path = "plan.html")]
struct PlanFragment {
    /// The deployment's name: once shown, the plan reloads as events arrive.
    name: String,
    plan: Plan,
}

/// What committing the proposal would do (changes nothing).
async fn plan(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<PlanFragment, UiError> {
    let plan = db::documents::plan(&state.pool, &Key::parse(&name), &session.actor).await?;
    Ok(PlanFragment { name, plan })
}

async fn propose(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
) -> Result<GridFragment, UiError> {
    actions::propose_deployment(&state, &session.acting, &Key::parse(&name)).await?;
    grid_fragment(&state, &session, &name, cursor).await
}

async fn commit(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
) -> Result<GridFragment, UiError> {
    actions::commit_deployment(&state, &session.acting, &Key::parse(&name)).await?;
    grid_fragment(&state, &session, &name, cursor).await
}

#[derive(Debug, Deserialize)]
struct RecallForm {
    snapshot: i32,
}

async fn recall(
    State(state): State<AppState>,
    session: Session,
    cursor: GridCursor,
    Path(name): Path<String>,
    Form(form): Form<RecallForm>,
) -> Result<GridFragment, UiError> {
    actions::recall_snapshot(&state, &session.acting, &Key::parse(&name), form.snapshot).await?;
    grid_fragment(&state, &session, &name, cursor).await
}
