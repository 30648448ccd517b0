//! A node's timeline: its last runs and its changes (alive, available, boot environment) on
//! one time axis, drawn server-side as SVG; the node page has the same in tables.

use chrono::{DateTime, Utc};

use crate::db::{events::EventRow, runs::Finished};

/// The plot's width in pixels, and where each lane is.
pub const WIDTH: i64 = 800;
pub const HEIGHT: i64 = 70;
const RUNS_Y: i64 = 8;
const RUN_H: i64 = 18;
const CHANGES_Y: i64 = 46;
/// The shortest span drawn: a node with one recent run still gets a readable axis.
const MIN_SPAN_SECS: i64 = 3600;

/// A run placed on the axis.
pub struct RunMark {
    pub x: i64,
    pub w: i64,
    /// The run's outcome, its CSS class.
    pub outcome: String,
    pub title: String,
}

/// A change placed on the axis.
pub struct ChangeMark {
    pub x: i64,
    pub title: String,
}

pub struct Timeline {
    pub runs: Vec<RunMark>,
    pub changes: Vec<ChangeMark>,
    pub start: DateTime<Utc>,
    pub width: i64,
    pub height: i64,
    pub runs_y: i64,
    pub run_h: i64,
    pub changes_y: i64,
}

/// Places `runs` and the changes of `history` between the earliest of them (at least an
/// hour back) and `now`.
pub fn draw(runs: &[Finished], history: &[EventRow], now: DateTime<Utc>) -> Timeline {
    let earliest = runs
        .iter()
        .map(|r| r.started_at.unwrap_or(r.finished_at))
        .chain(history.iter().map(|e| e.at))
        .min()
        .unwrap_or(now);
    let start = earliest.min(now - chrono::Duration::seconds(MIN_SPAN_SECS));
    let span = (now - start).num_milliseconds().max(1);
    let x = |t: DateTime<Utc>| ((t - start).num_milliseconds() * WIDTH / span).clamp(0, WIDTH);
    let runs = runs
        .iter()
        .map(|r| {
            let from = x(r.started_at.unwrap_or(r.finished_at));
            let to = x(r.finished_at);
            let role = r.role.as_deref().unwrap_or("a removed role");
            RunMark {
                x: from,
                w: (to - from).max(2),
                outcome: r.outcome.clone(),
                title: format!(
                    "{role}: {} at {}",
                    r.outcome,
                    r.finished_at.format("%H:%M:%S")
                ),
            }
        })
        .collect();
    let changes = history
        .iter()
        .map(|e| ChangeMark {
            x: x(e.at),
            title: format!(
                "{} {}: {} by {}{}",
                e.at.format("%H:%M:%S"),
                e.kind,
                e.data
                    .get("changes")
                    .map_or_else(String::new, |c| c.to_string()),
                e.actor,
                if e.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.reason)
                }
            ),
        })
        .collect();
    Timeline {
        runs,
        changes,
        start,
        width: WIDTH,
        height: HEIGHT,
        runs_y: RUNS_Y,
        run_h: RUN_H,
        changes_y: CHANGES_Y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_changes_land_in_time_order_within_the_plot() {
        let now = Utc::now();
        let ago = |m| now - chrono::Duration::minutes(m);
        let run = |id, started: DateTime<Utc>, finished: DateTime<Utc>| Finished {
            id,
            role: Some("r".into()),
            outcome: "succeeded".into(),
            started_at: Some(started),
            finished_at: finished,
        };
        let change = EventRow {
            id: 1,
            kind: "node.updated".into(),
            at: ago(90),
            actor: "probe".into(),
            reason: String::new(),
            data: serde_json::json!({"changes": {"alive": {"from": false, "to": true}}}),
        };
        let t = draw(
            &[run(1, ago(60), ago(30)), run(2, ago(10), ago(10))],
            &[change],
            now,
        );
        assert_eq!(t.start, ago(90), "the earliest thing shown starts the axis");
        assert_eq!(t.changes[0].x, 0);
        assert!(t.runs[0].x < t.runs[1].x);
        assert!(
            t.runs[0].w > 2 && t.runs[1].w == 2,
            "an instant run is still visible"
        );
        assert!(t.runs.iter().all(|r| r.x + r.w <= WIDTH + 2));
        let empty = draw(&[], &[], now);
        assert_eq!(empty.start, now - chrono::Duration::seconds(MIN_SPAN_SECS));
    }
}
