//! `/annealer`: what the annealer is doing and why things wait — errors (with their runlog,
//! retry and retry all), running and queued runs, and blocked or waiting noderoles with
//! their reasons. The lists reload whenever the event stream reports a change.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use serde::Deserialize;

use super::{Pages, error::UiError, layout::Layout, session::Session, view, view::NrView};
use crate::{
    db::{self, anneal::AnnealStatus, node_roles::NodeRoleFilter, paging::Window, runs::Run},
    domain::{policy::Action, state::NodeRoleState},
    http::{
        actions::{self, StateChange},
        state::AppState,
    },
};

/// Most rows a list shows (a list of one state pages on through its cursor).
const SHOWN: i64 = 100;

pub fn router() -> Pages {
    Pages::new()
        .get("/annealer", page)
        .get("/annealer/lists", lists_only)
        .post("/annealer/retry_all", retry_all)
        .post("/node_roles/{id}/retry", retry)
}

/// What the page shows: every list of one deployment (or all), or one list paged on.
#[derive(Debug, Clone, Default, Deserialize)]
struct ListsQuery {
    /// A deployment's name; empty: all of them.
    #[serde(default)]
    deployment: String,
    /// Only this list: `error`, `todo` or `blocked`.
    list: Option<String>,
    /// The cursor of that list: the noderoles after this id.
    after: Option<i64>,
}

impl ListsQuery {
    fn deployment(&self) -> Option<&str> {
        Some(self.deployment.trim()).filter(|d| !d.is_empty())
    }

    /// The query string of this view, with `list` and `after` as given.
    fn query(&self, list: Option<&str>, after: Option<i64>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(deployment) = self.deployment() {
            query.append_pair("deployment", deployment);
        }
        if let Some(list) = list {
            query.append_pair("list", list);
        }
        if let Some(after) = after {
            query.append_pair("after", &after.to_string());
        }
        query.finish()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "annealer.html")]
struct Page {
    layout: Layout,
    lists_html: String,
    /// The lists' own query string, for their reloads.
    query: String,
    deployment: String,
}

/// One list of noderoles in a state, as shown.
struct NrList {
    /// `error`, `todo`, `blocked`.
    name: &'static str,
    title: &'static str,
    items: Vec<NrView>,
    /// How many there are in all (from the tallies).
    total: i64,
    /// The query string of the next page of this list, when there may be one.
    more: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "annealer_lists.html")]
struct Lists {
    status: AnnealStatus,
    errors: NrList,
    running: Vec<Run>,
    queued: Vec<Run>,
    /// Committed noderoles waiting to run (TODO), and BLOCKED ones, each with its reason.
    waiting_and_blocked: [NrList; 2],
    /// The one list shown, when the page is about one list.
    single: Option<&'static str>,
    /// The query string of the first page of all lists (this view's deployment).
    all: String,
    /// Whether the session may retry (the buttons are shown).
    operate: bool,
}

async fn nr_list(
    state: &AppState,
    q: &ListsQuery,
    status: &AnnealStatus,
    (name, title, code): (&'static str, &'static str, NodeRoleState),
    shown: bool,
) -> Result<NrList, UiError> {
    let total = status.counts.get(name).copied().unwrap_or(0);
    if !shown {
        return Ok(NrList {
            name,
            title,
            items: Vec::new(),
            total,
            more: None,
        });
    }
    let after = q.list.as_deref().filter(|l| *l == name).and(q.after);
    let filter = NodeRoleFilter {
        state: Some(code),
        deployment: q.deployment().map(str::to_string),
        window: Window {
            after,
            ..Window::first(SHOWN)
        },
        ..Default::default()
    };
    let items = view::noderoles(state, &filter).await?;
    let more = (items.len() as i64 == SHOWN)
        .then(|| items.last().map(|nr| q.query(Some(name), Some(nr.id))))
        .flatten();
    Ok(NrList {
        name,
        title,
        items,
        total,
        more,
    })
}

async fn lists(state: &AppState, session: &Session, q: &ListsQuery) -> Result<Lists, UiError> {
    let single = match q.list.as_deref() {
        None => None,
        Some("error") => Some("error"),
        Some("todo") => Some("todo"),
        Some("blocked") => Some("blocked"),
        Some(other) => {
            return Err(UiError::invalid(format!(
                "`{other}` is not a list: error, todo or blocked"
            )));
        }
    };
    let status = db::anneal::status(&state.pool, q.deployment()).await?;
    let shown = |name: &str| single.is_none_or(|s| s == name);
    let errors = (("error", "Errors", NodeRoleState::Error), shown("error"));
    let waiting = (
        ("todo", "Waiting to run", NodeRoleState::Todo),
        shown("todo"),
    );
    let blocked = (
        ("blocked", "Blocked", NodeRoleState::Blocked),
        shown("blocked"),
    );
    let runs = if single.is_none() {
        db::runs::list_in(&state.pool, None, q.deployment(), SHOWN, 0).await?
    } else {
        Vec::new()
    };
    let (running, queued) = runs.into_iter().partition(|r| r.state == "running");
    Ok(Lists {
        errors: nr_list(state, q, &status, errors.0, errors.1).await?,
        waiting_and_blocked: [
            nr_list(state, q, &status, waiting.0, waiting.1).await?,
            nr_list(state, q, &status, blocked.0, blocked.1).await?,
        ],
        status,
        running,
        queued,
        single,
        all: q.query(None, None),
        operate: session.may(Action::NodeRoleRetry),
    })
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListsQuery>,
) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "annealer").await?;
    let lists = lists(&state, &session, &q).await?;
    Ok(Page {
        layout,
        lists_html: lists
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
        query: q.query(q.list.as_deref(), q.after),
        deployment: q.deployment.clone(),
    })
}

async fn lists_only(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListsQuery>,
) -> Result<Lists, UiError> {
    lists(&state, &session, &q).await
}

/// Retries one noderole (ERROR, or ACTIVE/BLOCKED to run again); the page follows through
/// the event stream.
async fn retry(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    actions::change_noderole(&state, &session.acting, id, StateChange::Retry).await?;
    Ok(super::nodes::done())
}

/// Most noderoles one press of *Retry all* retries (each in its own transaction).
const RETRY_AT_ONCE: i64 = 1000;

/// Retries every noderole in ERROR (up to [`RETRY_AT_ONCE`]), each on its own (one that
/// cannot be retried yet does not stop the others); reports those that could not be.
async fn retry_all(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let errors = NodeRoleFilter {
        state: Some(NodeRoleState::Error),
        window: Window::first(RETRY_AT_ONCE),
        ..Default::default()
    };
    let errors = db::explain::page(&state.pool, &errors, state.run_cap).await?;
    let mut refused = Vec::new();
    for (nr, _) in errors {
        if let Err(e) =
            actions::change_noderole(&state, &session.acting, nr.id, StateChange::Retry).await
        {
            refused.push(format!("{} on {}: {}", nr.role, nr.node, e.message));
        }
    }
    if refused.is_empty() {
        Ok(super::nodes::done())
    } else {
        Err(UiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("not retried: {}", refused.join("; ")),
        ))
    }
}
