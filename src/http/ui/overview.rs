//! `/`: how the annealer is doing, every deployment at a glance, and a pointer to the
//! first-start wizard while there is no admin node.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{self, anneal::AnnealStatus, deployments::Deployment},
    http::state::AppState,
};

pub fn router() -> Pages {
    Pages::new().get("/", page)
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct Overview {
    layout: Layout,
    status: AnnealStatus,
    deployments: Vec<Deployment>,
    needs_setup: bool,
}

async fn page(State(state): State<AppState>, session: Session) -> Result<Overview, UiError> {
    let layout = Layout::new(&state, &session, "overview").await?;
    Ok(Overview {
        layout,
        status: db::anneal::status(&state.pool, None).await?,
        deployments: db::deployments::list(&state.pool, 1000, 0).await?,
        needs_setup: !super::setup::has_admin_node(&state).await?,
    })
}
