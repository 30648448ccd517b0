//! `/node_roles/{id}`: one noderole — state, reason, runlog, input data, wall, and links to
//! its parents and children.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};

use super::{Pages, error::UiError, layout::Layout, session::Session, view::NrView};
use crate::{
    db::{self, node_roles::NodeRole},
    http::{actions::with_reason, state::AppState},
};

pub fn router() -> Pages {
    Pages::new().get("/node_roles/{id}", page)
}

#[derive(Template, WebTemplate)]
#[template(path = "noderole.html")]
struct Page {
    layout: Layout,
    nr: NrView,
    data: String,
    wall: String,
    parents: Vec<NodeRole>,
    children: Vec<NodeRole>,
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "annealer").await?;
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
    let data = super::layout::pretty(&detail.data);
    let wall = super::layout::pretty(&detail.wall);
    let nr = with_reason(&state, id, detail.noderole).await?;
    Ok(Page {
        layout,
        nr: nr.into(),
        data,
        wall,
        parents,
        children,
    })
}
