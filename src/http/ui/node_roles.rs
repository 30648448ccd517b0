//! `/node_roles/{id}`: one noderole — state, reason, runlog, input data, wall, and links to
//! its parents and children, all reloaded as events arrive (`/node_roles/{id}/live`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};

use super::{Pages, error::UiError, layout::Layout, session::Session, view::NrView};
use crate::{
    db::{self, node_roles::NodeRole},
    domain::policy::Action,
    http::{actions::with_reason, state::AppState},
};

pub fn router() -> Pages {
    Pages::new()
        .get("/node_roles/{id}", page)
        .get("/node_roles/{id}/live", live_only)
}

/// Everything below the page's title, reloaded as events arrive: state, reason, runs,
/// runlog, parents and children, input data and wall.
#[derive(Template, WebTemplate)]
#[template(path = "noderole_live.html")]
struct Live {
    layout: LiveLayout,
    nr: NrView,
    data: String,
    wall: String,
    parents: Vec<NodeRole>,
    children: Vec<NodeRole>,
}

/// What the live part needs of the page's frame: whether to offer Retry.
struct LiveLayout {
    operate: bool,
}

async fn live(state: &AppState, session: &Session, id: i64) -> Result<Live, UiError> {
    let mut conn = state.pool.acquire().await?;
    let detail = db::node_roles::detail(&mut conn, id).await?;
    let mut parents = Vec::new();
    for parent in &detail.parents {
        parents.push(db::node_roles::get(&mut conn, *parent).await?);
    }
    let mut children = Vec::new();
    for child in &detail.children {
        children.push(db::node_roles::get(&mut conn, *child).await?);
    }
    drop(conn);
    Ok(Live {
        layout: LiveLayout {
            operate: session.may(Action::NodeRoleRetry),
        },
        data: super::layout::pretty(&detail.data),
        wall: super::layout::pretty(&detail.wall),
        nr: with_reason(state, id, detail.noderole).await?.into(),
        parents,
        children,
    })
}

async fn live_only(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Live, UiError> {
    live(&state, &session, id).await
}

#[derive(Template, WebTemplate)]
#[template(path = "noderole.html")]
struct Page {
    layout: Layout,
    nr: NrView,
    live_html: String,
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "annealer").await?;
    let live = live(&state, &session, id).await?;
    let live_html = live
        .render()
        .map_err(crate::http::error::ApiError::internal)?;
    Ok(Page {
        layout,
        nr: live.nr,
        live_html,
    })
}
