//! `/`: how the fleet is doing at a glance — the annealer's status and counts, each
//! deployment's convergence with an estimate of when it will be done, noderoles by state and
//! runs per minute over the last hour, and the roles and nodes that fail most — drawn
//! server-side as SVG, each chart with a table of the same numbers; all of it reloads as
//! events arrive. And a pointer to the first-start wizard while there is no admin node.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{
        self,
        anneal::AnnealStatus,
        deployments::Deployment,
        overview::{Minute, Progress, StateMinute},
    },
    domain::state::NodeRoleState,
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
    charts_html: String,
}

/// A minute's bar: its height in pixels for the runs that succeeded and failed.
pub struct Bar {
    pub minute: Minute,
    pub x: i64,
    pub ok_h: i64,
    pub failed_h: i64,
}

/// One state's part of a minute's bar.
pub struct Segment {
    pub state: NodeRoleState,
    pub n: i64,
    pub y: i64,
    pub h: i64,
}

/// A minute's bar of noderoles by state, stacked in [`NodeRoleState::ALL`] order from the
/// bottom; no segments for a minute nobody sampled.
pub struct StateBar {
    pub at: chrono::DateTime<chrono::Utc>,
    pub x: i64,
    pub counts: Option<Vec<(NodeRoleState, i64)>>,
    pub segments: Vec<Segment>,
}

impl StateBar {
    /// This minute's count of `state` ("" when unsampled), for the table.
    pub fn count(&self, state: &NodeRoleState) -> String {
        self.counts.as_ref().map_or(String::new(), |counts| {
            counts
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |c| c.1)
                .to_string()
        })
    }
}

/// Scales the minutes' samples into stacked bars: the minute with the most noderoles fills
/// the chart's height. Returns the bars and that most.
fn state_bars(minutes: Vec<StateMinute>) -> (Vec<StateBar>, i64) {
    let total = |m: &StateMinute| m.counts.iter().flatten().map(|c| c.1).sum::<i64>();
    let peak = minutes.iter().map(total).max().unwrap_or(0);
    let scale = |n: i64| if peak == 0 { 0 } else { n * CHART_H / peak };
    let bars = minutes
        .into_iter()
        .enumerate()
        .map(|(i, minute)| {
            let mut top = CHART_H;
            let segments = minute
                .counts
                .iter()
                .flatten()
                .filter(|(_, n)| *n > 0)
                .map(|&(state, n)| {
                    let h = scale(n).max(1);
                    top -= h;
                    Segment {
                        state,
                        n,
                        y: top.max(0),
                        h,
                    }
                })
                .collect();
            StateBar {
                at: minute.at,
                x: i as i64 * BAR_W,
                counts: minute.counts,
                segments,
            }
        })
        .collect();
    (bars, peak)
}

#[derive(Template, WebTemplate)]
#[template(path = "overview_charts.html")]
struct Charts {
    status: AnnealStatus,
    deployments: Vec<Deployment>,
    needs_setup: bool,
    progress: Vec<Progress>,
    bars: Vec<Bar>,
    /// The most runs in one minute (the chart's scale).
    peak: i64,
    state_bars: Vec<StateBar>,
    /// The most noderoles in one minute (the state chart's scale).
    state_peak: i64,
    states: [NodeRoleState; 6],
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
    let live = db::anneal::counts_by_state(&mut *state.pool.acquire().await?, None).await?;
    let mut minutes = db::overview::states_per_minute(&state.pool, MINUTES).await?;
    // The present minute shows the present: the live tallies, not the last sample.
    if let Some(now) = minutes.last_mut() {
        now.counts = Some(
            NodeRoleState::ALL
                .into_iter()
                .map(|s| (s, live.iter().find(|c| c.0 == s.code()).map_or(0, |c| c.1)))
                .collect(),
        );
    }
    let (state_bars, state_peak) = state_bars(minutes);
    let (bars, peak) = bars(db::overview::runs_per_minute(&state.pool, MINUTES).await?);
    let hour_total = bars
        .iter()
        .map(|b| b.minute.succeeded + b.minute.failed)
        .sum();
    let (failing_roles, failing_nodes) =
        db::overview::most_failures(&state.pool, FAILURE_HOURS, FAILURE_TOP).await?;
    Ok(Charts {
        status: AnnealStatus::of(&live),
        deployments: db::deployments::list(&state.pool, 1000, 0).await?,
        needs_setup: !super::setup::has_admin_node(state).await?,
        progress: db::overview::progress(&state.pool).await?,
        chart_w: bars.len() as i64 * BAR_W,
        bars,
        peak,
        state_bars,
        state_peak,
        states: NodeRoleState::ALL,
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

    #[test]
    fn the_fullest_minute_fills_the_state_chart_and_unsampled_ones_stay_empty() {
        use NodeRoleState::*;
        let minute = |counts: Option<Vec<(NodeRoleState, i64)>>| StateMinute {
            at: Utc::now(),
            counts,
        };
        let (bars, peak) = state_bars(vec![
            minute(Some(vec![(Error, 0), (Active, 50), (Todo, 150)])),
            minute(None),
            minute(Some(vec![(Error, 1), (Active, 99)])),
        ]);
        assert_eq!(peak, 200);
        let heights = |b: &StateBar| {
            b.segments
                .iter()
                .map(|s| (s.state, s.h))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            heights(&bars[0]),
            vec![(Active, CHART_H / 4), (Todo, CHART_H * 3 / 4)]
        );
        assert_eq!(
            bars[0].segments[1].y, 0,
            "the fullest minute reaches the top"
        );
        assert!(bars[1].segments.is_empty());
        assert_eq!(bars[1].count(&Active), "");
        assert_eq!(bars[2].count(&Todo), "0");
        // one noderole in error among many is still drawn
        assert_eq!(heights(&bars[2])[0], (Error, 1));
        assert_eq!(bars[2].x, 2 * BAR_W);
        let (_, peak) = state_bars(vec![minute(None)]);
        assert_eq!(peak, 0);
    }
}
