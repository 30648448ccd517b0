//! `/nodes` and `/nodes/{name}`: the nodes' alive/available state a page at a time,
//! filtered by name prefix, deployment and condition; the available toggle and bulk actions
//! on the checked nodes or on every node the filter matches; one node's noderoles and history.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::{Path, Query, State},
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
        nodes::{Node, NodeFilter, NodeSort, NodeUpdate},
        paging::Window,
    },
    http::{actions, state::AppState},
};

pub fn router() -> Pages {
    Pages::new()
        .get("/nodes", list)
        // '_' is never in a node's name (a host name): no node's page is shadowed
        .get("/nodes/_list", list_only)
        .post("/nodes/bulk", bulk)
        .get("/nodes/{name}", page)
        .get("/nodes/{name}/live", live_only)
        .post("/nodes/{name}/available", set_available)
        .post("/nodes/{name}/power", power)
}

/// The power actions the pages offer: (action, label).
pub const POWER_CHOICES: [(&str, &str); 6] = [
    ("on", "Power on"),
    ("off", "Shut down"),
    ("force-off", "Force off"),
    ("cycle", "Power cycle"),
    ("pxe-once", "Network boot"),
    ("discover", "Discover"),
];

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

/// Runs a node's timeline draws (the last ones).
const TIMELINE_RUNS: i64 = 100;

/// Nodes on one page of `/nodes`.
const PAGE: i64 = 100;
/// Most nodes one bulk action over a filter changes (one transaction); a filter matching
/// more is refused with a request to narrow it.
pub const MAX_BULK: i64 = 10_000;

/// The filter of `/nodes`, from its query string (and the bulk form's hidden fields).
#[derive(Debug, Clone, Default, Deserialize)]
struct ListQuery {
    /// Names starting with this.
    #[serde(default)]
    q: String,
    /// A deployment's name.
    #[serde(default)]
    deployment: String,
    /// `alive`, `dead`, `available` or `reserved`; empty: any.
    #[serde(default)]
    condition: String,
    /// The order (`id`, `-id`, `name`, `-name`); empty: `id`.
    #[serde(default)]
    sort: String,
    /// The cursor of an id order: the nodes after this id.
    after: Option<i64>,
    /// The cursor of a name order: the nodes after this name.
    after_name: Option<String>,
}

impl ListQuery {
    fn filter(&self, window: Window) -> Result<NodeFilter, UiError> {
        let (alive, available) = match self.condition.as_str() {
            "" => (None, None),
            "alive" => (Some(true), None),
            "dead" => (Some(false), None),
            "available" => (None, Some(true)),
            "reserved" => (None, Some(false)),
            other => {
                return Err(UiError::invalid(format!(
                    "`{other}` is not a condition: alive, dead, available or reserved"
                )));
            }
        };
        let given = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
        let sort = self.sort()?;
        Ok(NodeFilter {
            name_prefix: given(&self.q),
            deployment: given(&self.deployment),
            alive,
            available,
            sort,
            after_name: self.after_name.clone().filter(|_| sort.by_name()),
            window: Window {
                after: self.after.filter(|_| !sort.by_name()),
                ..window
            },
            ..Default::default()
        })
    }

    fn sort(&self) -> Result<NodeSort, UiError> {
        if self.sort.is_empty() {
            return Ok(NodeSort::default());
        }
        NodeSort::parse(&self.sort).ok_or_else(|| {
            UiError::invalid(format!(
                "`{}` is not an order: id, -id, name or -name",
                self.sort
            ))
        })
    }

    /// The query string of this very page: filter, order and cursor.
    fn current(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(self.link("", None));
        if let Some(after) = self.after {
            query.append_pair("after", &after.to_string());
        }
        if let Some(after) = &self.after_name {
            query.append_pair("after_name", after);
        }
        query.finish()
    }

    /// The query string of this filter in `sort` order (empty: its own), from its first
    /// page or after `last`.
    fn link(&self, sort: &str, last: Option<&Node>) -> String {
        let sort = if sort.is_empty() { &self.sort } else { sort };
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", self.q.as_str()),
            ("deployment", &self.deployment),
            ("condition", &self.condition),
            ("sort", sort),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if let Some(last) = last {
            if NodeSort::parse(sort).is_some_and(NodeSort::by_name) {
                query.append_pair("after_name", &last.name);
            } else {
                query.append_pair("after", &last.id.to_string());
            }
        }
        query.finish()
    }

    /// The link of the Name column's header: by name, or the other way when it already is.
    fn name_order_link(&self) -> String {
        self.link(if self.sort == "name" { "-name" } else { "name" }, None)
    }

    /// `aria-sort` of the Name column.
    fn name_aria_sort(&self) -> &'static str {
        match self.sort.as_str() {
            "name" => "ascending",
            "-name" => "descending",
            _ => "none",
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "nodes.html")]
struct ListPage {
    layout: Layout,
    filter: ListQuery,
    conditions: [(&'static str, &'static str); 5],
    sorts: [(&'static str, &'static str); 4],
    list_html: String,
}

/// The live part of `/nodes`: how many nodes match, one page of them and the links to the
/// others, and the bulk action on all that match. It reloads as events arrive (the nodes'
/// states follow their noderoles; nodes come and go).
#[derive(Template, WebTemplate)]
#[template(path = "nodes_list.html")]
struct NodesList {
    operate: bool,
    nodes: Vec<NodeView>,
    filter: ListQuery,
    /// How many nodes the filter matches, counted up to [`MAX_BULK`] + 1.
    matching: i64,
    /// The query string of the next page, when there may be one.
    next: Option<String>,
    /// The query string of the first page, when this is not it.
    first: Option<String>,
}

async fn nodes_list(state: &AppState, operate: bool, q: ListQuery) -> Result<NodesList, UiError> {
    let filter = q.filter(Window::first(PAGE))?;
    let nodes = db::nodes::list(&state.pool, &filter).await?;
    let matching = db::nodes::count(&state.pool, &filter, MAX_BULK + 1).await?;
    let next = (nodes.len() as i64 == PAGE)
        .then(|| nodes.last().map(|n| q.link("", Some(n))))
        .flatten();
    let first = (q.after.is_some() || q.after_name.is_some()).then(|| q.link("", None));
    Ok(NodesList {
        operate,
        nodes: nodes.into_iter().map(NodeView::from).collect(),
        filter: q,
        matching,
        next,
        first,
    })
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<ListPage, UiError> {
    let layout = Layout::new(&state, &session, "nodes").await?;
    let list_html = nodes_list(&state, layout.operate, q.clone())
        .await?
        .render()
        .map_err(crate::http::error::ApiError::internal)?;
    Ok(ListPage {
        layout,
        filter: q,
        conditions: [
            ("", "any condition"),
            ("alive", "alive"),
            ("dead", "dead"),
            ("available", "available"),
            ("reserved", "reserved"),
        ],
        sorts: [
            ("id", "oldest first"),
            ("-id", "newest first"),
            ("name", "name, A to Z"),
            ("-name", "name, Z to A"),
        ],
        list_html,
    })
}

async fn list_only(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<NodesList, UiError> {
    let operate = session.may(crate::domain::policy::Action::NodeUpdate);
    nodes_list(&state, operate, q).await
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
    Ok(done())
}

#[derive(Deserialize)]
struct PowerForm {
    action: String,
}

/// A power button of the node page: queues the operation; the page shows it through the
/// event stream.
async fn power(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<PowerForm>,
) -> Result<Response, UiError> {
    let node = {
        let mut conn = state.pool.acquire().await?;
        db::nodes::get(&mut conn, &Key::parse(&name)).await?
    };
    actions::request_power(&state, &session.acting, &[node.id], &form.action, false).await?;
    Ok(done())
}

/// Bulk actions on the checked nodes (the form repeats `node` once per checked node), or
/// with `scope=matching`, on every node the filter in the form's fields matches.
async fn bulk(
    State(state): State<AppState>,
    session: Session,
    body: String,
) -> Result<Response, UiError> {
    let mut nodes = Vec::new();
    let mut action = None;
    let mut matching = false;
    let mut filter = ListQuery::default();
    for (key, value) in form_urlencoded::parse(body.as_bytes()) {
        match key.as_ref() {
            "node" => nodes.push(value.into_owned()),
            "action" => action = Some(value.into_owned()),
            "scope" => matching = value == "matching",
            "q" => filter.q = value.into_owned(),
            "deployment" => filter.deployment = value.into_owned(),
            "condition" => filter.condition = value.into_owned(),
            _ => {}
        }
    }
    if matching {
        let ids = db::nodes::ids(&state.pool, &filter.filter(Window::first(MAX_BULK + 1))?).await?;
        if ids.len() as i64 > MAX_BULK {
            return Err(UiError::invalid(format!(
                "the filter matches more than {MAX_BULK} nodes; narrow it first"
            )));
        }
        nodes = ids.into_iter().map(|id| id.to_string()).collect();
    }
    if nodes.is_empty() {
        return Err(UiError::invalid(if matching {
            "no node matches the filter"
        } else {
            "check at least one node first"
        }));
    }
    if let Some(power) = action.as_deref().and_then(|a| a.strip_prefix("power:")) {
        if !session.may(crate::domain::policy::Action::NodePower) {
            return Err(UiError(crate::http::error::ApiError::forbidden(
                "your role may not change the power of nodes",
            )));
        }
        let mut ids = Vec::with_capacity(nodes.len());
        let mut conn = state.pool.acquire().await?;
        for node in &nodes {
            ids.push(db::nodes::get(&mut conn, &Key::parse(node)).await?.id);
        }
        if matching {
            // of the nodes the filter matches, those with a BMC
            ids = db::bmcs::with_bmc(&mut conn, &ids).await?;
        }
        drop(conn);
        actions::request_power(&state, &session.acting, &ids, power, false).await?;
        return Ok(done());
    }
    let available = match action.as_deref() {
        Some("reserve") => false,
        Some("release") => true,
        _ => {
            return Err(UiError::invalid(
                "choose an action: reserve, release or a power action",
            ));
        }
    };
    set_flags(&state, &session, &nodes, available).await?;
    Ok(done())
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

/// The answer to an action whose result the page shows through the event stream (every
/// section of a page is live): nothing to swap, no reload.
pub fn done() -> Response {
    use axum::response::IntoResponse;
    axum::http::StatusCode::NO_CONTENT.into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "node.html")]
struct NodePage {
    layout: Layout,
    name: String,
    live_html: String,
}

/// Everything below the node page's title, reloaded as events arrive: its condition and
/// state, noderoles, timeline, runs, audit trail and history.
#[derive(Template, WebTemplate)]
#[template(path = "node_live.html")]
struct NodeLive {
    operate: bool,
    node: NodeView,
    noderoles: Vec<NrView>,
    history: Vec<EventRow>,
    /// The node's last runs and changes on one time axis.
    timeline: super::timeline::Timeline,
    /// The runs the timeline draws, for the table behind it.
    runs: Vec<db::runs::Finished>,
    /// The node's latest audit records.
    audit: Vec<crate::db::audit::Record>,
    host_key: Option<String>,
    /// Its BMC, without the password.
    bmc: Option<db::bmcs::Bmc>,
    /// Whether the power buttons are shown.
    power_operate: bool,
    /// Its power operations: waiting and running, then the last finished.
    power_ops: Vec<db::power_ops::PowerOp>,
}

async fn node_live(state: &AppState, session: &Session, name: &str) -> Result<NodeLive, UiError> {
    let mut conn = state.pool.acquire().await?;
    let node = db::nodes::get(&mut conn, &Key::parse(name)).await?;
    let bmc = db::bmcs::get(&mut conn, node.id).await?;
    let power_ops = db::power_ops::for_node(&mut conn, node.id, 20).await?;
    drop(conn);
    let noderoles = view::noderoles(
        state,
        &NodeRoleFilter {
            node: Some(node.id.to_string()),
            window: Window::first(10_000),
            ..Default::default()
        },
    )
    .await?;
    let history = db::nodes::history(&state.pool, node.id, 200, 0).await?;
    let runs = db::runs::finished_on_node(&state.pool, node.id, TIMELINE_RUNS).await?;
    Ok(NodeLive {
        operate: session.may(crate::domain::policy::Action::NodeUpdate),
        power_operate: session.may(crate::domain::policy::Action::NodePower),
        power_ops,
        noderoles,
        timeline: super::timeline::draw(&runs, &history, chrono::Utc::now()),
        runs,
        history,
        audit: super::audit::of_object(state, "node", node.id).await?,
        host_key: db::host_keys::pinned(&state.pool, node.id).await?,
        bmc,
        node: node.into(),
    })
}

async fn live_only(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<NodeLive, UiError> {
    node_live(&state, &session, &name).await
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<NodePage, UiError> {
    let layout = Layout::new(&state, &session, "nodes").await?;
    let live = node_live(&state, &session, &name).await?;
    Ok(NodePage {
        layout,
        name: live.node.node.name.clone(),
        live_html: live
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
    })
}
