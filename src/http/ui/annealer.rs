//! `/annealer`: what the annealer is doing and why things wait — errors (with their runlog,
//! retry and retry all), running and queued runs, and blocked or waiting noderoles with
//! their reasons. The lists reload whenever the event stream reports a change.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::{Path, State},
    response::Response,
};

use super::{Pages, error::UiError, layout::Layout, session::Session, view, view::NrView};
use crate::{
    db::{self, anneal::AnnealStatus, node_roles::NodeRoleFilter, paging::Window, runs::Run},
    domain::{policy::Action, state::NodeRoleState},
    http::{
        actions::{self, StateChange},
        state::AppState,
    },
};

/// Most rows a list shows.
const SHOWN: i64 = 500;

pub fn router() -> Pages {
    Pages::new()
        .get("/annealer", page)
        .get("/annealer/lists", lists_only)
        .post("/annealer/retry_all", retry_all)
        .post("/node_roles/{id}/retry", retry)
}

#[derive(Template, WebTemplate)]
#[template(path = "annealer.html")]
struct Page {
    layout: Layout,
    lists_html: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "annealer_lists.html")]
struct Lists {
    status: AnnealStatus,
    errors: Vec<NrView>,
    running: Vec<Run>,
    queued: Vec<Run>,
    /// Committed noderoles waiting to run (TODO) and BLOCKED ones, each with its reason.
    waiting: Vec<NrView>,
    blocked: Vec<NrView>,
    /// Whether the session may retry (the buttons are shown).
    operate: bool,
}

async fn lists(state: &AppState, session: &Session) -> Result<Lists, UiError> {
    let in_state = |s: NodeRoleState| NodeRoleFilter {
        state: Some(s),
        window: Window::first(SHOWN),
        ..Default::default()
    };
    let runs = db::runs::list(&state.pool, None, SHOWN, 0).await?;
    let (running, queued) = runs.into_iter().partition(|r| r.state == "running");
    Ok(Lists {
        status: db::anneal::status(&state.pool, None).await?,
        errors: view::noderoles(state, &in_state(NodeRoleState::Error)).await?,
        running,
        queued,
        waiting: view::noderoles(state, &in_state(NodeRoleState::Todo)).await?,
        blocked: view::noderoles(state, &in_state(NodeRoleState::Blocked)).await?,
        operate: session.may(Action::NodeRoleRetry),
    })
}

async fn page(State(state): State<AppState>, session: Session) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "annealer").await?;
    let lists = lists(&state, &session).await?;
    Ok(Page {
        layout,
        lists_html: lists
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
    })
}

async fn lists_only(State(state): State<AppState>, session: Session) -> Result<Lists, UiError> {
    lists(&state, &session).await
}

/// Retries one noderole (ERROR, or ACTIVE/BLOCKED to run again) and reloads the page.
async fn retry(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    actions::change_noderole(&state, &session.acting, id, StateChange::Retry).await?;
    Ok(super::nodes::refresh())
}

/// Retries every noderole in ERROR, each on its own (one that cannot be retried yet does
/// not stop the others); reports those that could not be.
async fn retry_all(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let errors = NodeRoleFilter {
        state: Some(NodeRoleState::Error),
        window: Window::first(SHOWN),
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
        Ok(super::nodes::refresh())
    } else {
        Err(UiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("not retried: {}", refused.join("; ")),
        ))
    }
}
