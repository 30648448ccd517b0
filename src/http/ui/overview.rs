//! `/`: how the fleet is doing at a glance — the annealer's status and counts, each
//! deployment's convergence with an estimate of when it will be done, runs per minute over
//! the last hour, and the roles and nodes that fail most — drawn server-side as SVG, each
//! chart with a table of the same numbers; the charts reload as events arrive. And a
//! pointer to the first-start wizard while there is no admin node.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{
        self,
        anneal::AnnealStatus,
        deployments::Deployment,
        overview::{Minute, Progress},
    },
    http::state::AppState,
};

/// Minutes the runs chart covers.
const MINUTES: i32 = 60;
/// Hours the failure lists cover, and how many of each they name.
const FAILURE_HOURS: i32 = 24;
const FAILURE_TOP: i64 = 5;
/// The runs chart's plot, in pixels.
const BAR_W: i64 = 10;
const CHART_H: i64 = 100;
/// A progress bar's width.
pub const PROGRESS_W: i64 = 240;

pub fn router() -> Pages {
    Pages::new()
        .get("/", page)
        .get("/overview/charts", charts_only)
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct Overview {
    layout: Layout,
    status: AnnealStatus,
    deployments: Vec<Deployment>,
    needs_setup: bool,
    charts_html: String,
}

/// A minute's bar: its height in pixels for the runs that succeeded and failed.
pub struct Bar {
    pub minute: Minute,
    pub x: i64,
    pub ok_h: i64,
    pub failed_h: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "overview_charts.html")]
struct Charts {
    progress: Vec<Progress>,
    bars: Vec<Bar>,
    /// The most runs in one minute (the chart's scale).
    peak: i64,
    /// Runs finished in the whole hour.
    hour_total: i64,
    failing_roles: Vec<(String, i64)>,
    failing_nodes: Vec<(String, i64)>,
    chart_w: i64,
    chart_h: i64,
    bar_w: i64,
    progress_w: i64,
    failure_hours: i32,
}

/// Scales the minutes into bars: the busiest minute fills the chart's height.
fn bars(minutes: Vec<Minute>) -> (Vec<Bar>, i64) {
    let peak = minutes
        .iter()
        .map(|m| m.succeeded + m.failed)
        .max()
        .unwrap_or(0);
    let scale = |n: i64| if peak == 0 { 0 } else { n * CHART_H / peak };
    let bars = minutes
        .into_iter()
        .enumerate()
        .map(|(i, minute)| Bar {
            x: i as i64 * BAR_W,
            ok_h: scale(minute.succeeded),
            failed_h: scale(minute.failed),
            minute,
        })
        .collect();
    (bars, peak)
}

async fn charts(state: &AppState) -> Result<Charts, UiError> {
    let (bars, peak) = bars(db::overview::runs_per_minute(&state.pool, MINUTES).await?);
    let hour_total = bars
        .iter()
        .map(|b| b.minute.succeeded + b.minute.failed)
        .sum();
    let (failing_roles, failing_nodes) =
        db::overview::most_failures(&state.pool, FAILURE_HOURS, FAILURE_TOP).await?;
    Ok(Charts {
        progress: db::overview::progress(&state.pool).await?,
        chart_w: bars.len() as i64 * BAR_W,
        bars,
        peak,
        hour_total,
        failing_roles,
        failing_nodes,
        chart_h: CHART_H,
        bar_w: BAR_W,
        progress_w: PROGRESS_W,
        failure_hours: FAILURE_HOURS,
    })
}

async fn charts_only(State(state): State<AppState>) -> Result<Charts, UiError> {
    charts(&state).await
}

async fn page(State(state): State<AppState>, session: Session) -> Result<Overview, UiError> {
    let layout = Layout::new(&state, &session, "overview").await?;
    Ok(Overview {
        layout,
        status: db::anneal::status(&state.pool, None).await?,
        deployments: db::deployments::list(&state.pool, 1000, 0).await?,
        needs_setup: !super::setup::has_admin_node(&state).await?,
        charts_html: charts(&state)
            .await?
            .render()
            .map_err(crate::http::error::ApiError::internal)?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn the_busiest_minute_fills_the_chart() {
        let minute = |succeeded, failed| Minute {
            at: Utc::now(),
            succeeded,
            failed,
        };
        let (bars, peak) = bars(vec![minute(10, 10), minute(5, 0), minute(0, 0)]);
        assert_eq!(peak, 20);
        assert_eq!((bars[0].ok_h, bars[0].failed_h), (CHART_H / 2, CHART_H / 2));
        assert_eq!(bars[1].ok_h, CHART_H / 4);
        assert_eq!((bars[2].ok_h, bars[2].failed_h), (0, 0));
        assert_eq!(bars[2].x, 2 * BAR_W);
        let (flat, peak) = super::bars(vec![minute(0, 0)]);
        assert_eq!((peak, flat[0].ok_h), (0, 0));
    }
}
