//! The report of a simulation, from its final noderole states and its run records: how long
//! it took, how long work waited, runs per second over time, and what failed and what each
//! failure held back. Pure: the caller reads the database, this only counts.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::chart;
use crate::domain::state::NodeRoleState;

/// How many examples the text report names (the JSON report lists them all).
const EXAMPLES: usize = 5;
/// How many noderoles left over by a timeout the JSON report lists.
const LEFT_LISTED: usize = 100;

/// What was simulated, echoed in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setup {
    pub nodes: u64,
    pub roles: u64,
    pub shape: String,
    pub fail_rate: f64,
    pub delay: String,
    pub seed: u64,
    pub cap: i64,
}

/// How the simulation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Nothing can move any more: every noderole is active, failed, or held back by a
    /// failure.
    Converged,
    TimedOut,
    Interrupted,
}

/// One noderole at the end: node and role indices (from 1) and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Final {
    pub node: u64,
    pub role: u64,
    pub state: NodeRoleState,
}

/// One run record, in seconds since the commit took effect.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTiming {
    pub queued: f64,
    pub started: Option<f64>,
    pub finished: f64,
    /// When its noderole became ready (its parents' last success; 0 for roots).
    pub ready: f64,
    pub outcome: String,
}

/// p50, p99 and the largest of a set of durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no values.
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
        })
    }
}

/// Runs finished per second, in buckets of equal width from the commit on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    pub bucket_seconds: f64,
    pub runs_per_second: Vec<f64>,
}

/// Bucket widths a chart may use, in seconds: round numbers a reader can count with.
const BUCKET_WIDTHS: [f64; 14] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

impl Throughput {
    /// At most `buckets` buckets over `span` seconds, of the narrowest round width.
    pub fn of(finishes: &[f64], span: f64, buckets: usize) -> Throughput {
        let span = span.max(finishes.iter().copied().fold(0.0, f64::max));
        let width = BUCKET_WIDTHS
            .into_iter()
            .find(|w| (span / w).ceil() as usize <= buckets)
            .unwrap_or(BUCKET_WIDTHS[BUCKET_WIDTHS.len() - 1]);
        let count = ((span / width).ceil() as usize).max(1);
        let mut runs = vec![0u64; count];
        for &t in finishes {
            runs[((t.max(0.0) / width) as usize).min(count - 1)] += 1;
        }
        Throughput {
            bucket_seconds: width,
            runs_per_second: runs.into_iter().map(|n| n as f64 / width).collect(),
        }
    }

    pub fn peak(&self) -> f64 {
        self.runs_per_second.iter().copied().fold(0.0, f64::max)
    }
}

/// A failed noderole and what it held back on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub node: String,
    pub role: String,
    /// Roles BLOCKED behind it (its descendants).
    pub blocked: Vec<String>,
    /// Roles left TODO: they could run, but nothing runs on a node in error.
    pub frozen: Vec<String>,
}

/// How one role fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleImpact {
    pub role: String,
    pub failed: u64,
    pub blocked: u64,
    pub frozen: u64,
}

impl RoleImpact {
    fn held_back(&self) -> u64 {
        self.blocked + self.frozen
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failures {
    pub failed: u64,
    pub blocked: u64,
    pub frozen: u64,
    /// Roles with a failure or a noderole held back, the most held back first.
    pub by_role: Vec<RoleImpact>,
    /// Every failed noderole, by node.
    pub noderoles: Vec<Failure>,
}

/// A noderole neither active nor held back by a failure (the simulation stopped first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Left {
    pub node: String,
    pub role: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub deployment: String,
    pub setup: Setup,
    pub ending: Ending,
    /// Writing the fleet (bulk) and committing it.
    pub setup_seconds: f64,
    pub commit_seconds: f64,
    /// From the commit to the last run's end (to the stop, when it did not converge).
    pub converge_seconds: f64,
    pub noderoles: u64,
    /// Noderoles run (succeeded or failed) per second of `converge_seconds`.
    pub noderoles_per_second: f64,
    /// Run records by outcome (succeeded, failed, lost, ...).
    pub runs: BTreeMap<String, u64>,
    /// Noderoles by final state.
    pub states: BTreeMap<&'static str, u64>,
    /// From a noderole becoming ready (TODO) to its run starting.
    pub todo_wait: Option<Percentiles>,
    /// From its run being queued to its start (the share of the wait spent under the cap).
    pub queue_wait: Option<Percentiles>,
    pub throughput: Throughput,
    pub failures: Failures,
    /// Noderoles left unfinished, when it did not converge (the first [`LEFT_LISTED`]).
    pub left: Vec<Left>,
    pub left_total: u64,
    /// SHA-256 of every noderole's (node, role, state): equal for equal outcomes, whatever
    /// the timing or the deployment's name.
    pub fingerprint: String,
}

/// Everything a report is made from.
pub struct Inputs {
    pub deployment: String,
    pub setup: Setup,
    pub ending: Ending,
    pub setup_seconds: f64,
    pub commit_seconds: f64,
    /// When it stopped, in seconds since the commit (used when it did not converge).
    pub stopped: f64,
    pub finals: Vec<Final>,
    pub runs: Vec<RunTiming>,
}

/// Outcomes of runs that executed a jig (not dropped from the queue, not cut short).
fn ran(outcome: &str) -> bool {
    matches!(outcome, "succeeded" | "failed" | "timed_out" | "skipped")
}

pub fn node_label(node: u64) -> String {
    format!("n{node}")
}

pub fn role_label(role: u64) -> String {
    super::fleet::Fleet::role_label(role)
}

impl Report {
    pub fn build(mut inputs: Inputs) -> Report {
        inputs.finals.sort_by_key(|f| (f.node, f.role));
        let finishes: Vec<f64> = inputs
            .runs
            .iter()
            .filter(|r| ran(&r.outcome))
            .map(|r| r.finished)
            .collect();
        let converge_seconds = match inputs.ending {
            Ending::Converged => finishes.iter().copied().fold(0.0, f64::max),
            _ => inputs.stopped,
        };
        let mut runs = BTreeMap::new();
        for r in &inputs.runs {
            *runs.entry(r.outcome.clone()).or_insert(0) += 1;
        }
        let mut states = BTreeMap::new();
        for f in &inputs.finals {
            *states.entry(f.state.name()).or_insert(0) += 1;
        }
        let started = || inputs.runs.iter().filter_map(|r| Some((r, r.started?)));
        let (failures, left) = failures(&inputs.finals);
        Report {
            deployment: inputs.deployment,
            setup: inputs.setup,
            ending: inputs.ending,
            setup_seconds: inputs.setup_seconds,
            commit_seconds: inputs.commit_seconds,
            converge_seconds,
            noderoles: inputs.finals.len() as u64,
            noderoles_per_second: if converge_seconds > 0.0 {
                finishes.len() as f64 / converge_seconds
            } else {
                0.0
            },
            runs,
            states,
            todo_wait: Percentiles::of(started().map(|(r, s)| (s - r.ready).max(0.0)).collect()),
            queue_wait: Percentiles::of(started().map(|(r, s)| (s - r.queued).max(0.0)).collect()),
            throughput: Throughput::of(&finishes, converge_seconds, chart::SPARK_WIDTH),
            failures,
            left_total: left.len() as u64,
            left: left.into_iter().take(LEFT_LISTED).collect(),
            fingerprint: fingerprint(&inputs.finals),
        }
    }

    pub fn count(&self, state: NodeRoleState) -> u64 {
        self.states.get(state.name()).copied().unwrap_or(0)
    }
}

/// Failures and what they held back, per node (every dependency of a simulated fleet is on
/// its node), and what was left without a failure to blame.
fn failures(finals: &[Final]) -> (Failures, Vec<Left>) {
    use NodeRoleState::*;
    let mut by_node: BTreeMap<u64, Vec<&Final>> = BTreeMap::new();
    for f in finals {
        by_node.entry(f.node).or_default().push(f);
    }
    let mut impact: BTreeMap<u64, RoleImpact> = BTreeMap::new();
    fn entry(impact: &mut BTreeMap<u64, RoleImpact>, role: u64) -> &mut RoleImpact {
        impact.entry(role).or_insert_with(|| RoleImpact {
            role: role_label(role),
            failed: 0,
            blocked: 0,
            frozen: 0,
        })
    }
    let mut noderoles = Vec::new();
    let mut left = Vec::new();
    for (node, finals) in by_node {
        let failed: Vec<u64> = finals
            .iter()
            .filter(|f| f.state == Error)
            .map(|f| f.role)
            .collect();
        let in_state = |state| -> Vec<u64> {
            finals
                .iter()
                .filter(|f| f.state == state)
                .map(|f| f.role)
                .collect()
        };
        if failed.is_empty() {
            left.extend(finals.iter().filter(|f| f.state != Active).map(|f| Left {
                node: node_label(node),
                role: role_label(f.role),
                state: f.state.name(),
            }));
            continue;
        }
        let (blocked, frozen) = (in_state(Blocked), in_state(Todo));
        for &role in &failed {
            entry(&mut impact, role).failed += 1;
        }
        for &role in &blocked {
            entry(&mut impact, role).blocked += 1;
        }
        for &role in &frozen {
            entry(&mut impact, role).frozen += 1;
        }
        // one run at a time per node and a frozen node runs nothing more: at most one
        // failure per node, which holds back everything else unfinished on it
        for role in failed {
            noderoles.push(Failure {
                node: node_label(node),
                role: role_label(role),
                blocked: blocked.iter().map(|&r| role_label(r)).collect(),
                frozen: frozen.iter().map(|&r| role_label(r)).collect(),
            });
        }
    }
    let mut by_role: Vec<RoleImpact> = impact.into_values().collect();
    // most held back first; a stable sort keeps role order among equals
    by_role.sort_by_key(|r| std::cmp::Reverse(r.held_back()));
    let failures = Failures {
        failed: by_role.iter().map(|r| r.failed).sum(),
        blocked: by_role.iter().map(|r| r.blocked).sum(),
        frozen: by_role.iter().map(|r| r.frozen).sum(),
        by_role,
        noderoles,
    };
    (failures, left)
}

/// SHA-256 over `n<node> r<role> <state>` lines in (node, role) order.
fn fingerprint(finals: &[Final]) -> String {
    let mut hash = Sha256::new();
    for f in finals {
        hash.update(format!("n{} r{} {}\n", f.node, f.role, f.state.name()));
    }
    hex::encode(hash.finalize())
}

/// `1234` → `1,234`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.1}s")
    }
}

fn percent(rate: f64) -> String {
    format!("{}%", (rate * 10_000.0).round() / 100.0)
}

impl Report {
    /// The report as the terminal shows it.
    pub fn text(&self) -> String {
        use NodeRoleState::*;
        let s = &self.setup;
        let mut out = format!(
            "simulated {} nodes x {} roles ({}), fail rate {}, delay {}, cap {}, seed {}\n",
            thousands(s.nodes),
            s.roles,
            s.shape,
            percent(s.fail_rate),
            s.delay,
            s.cap,
            s.seed
        );
        out.push_str(&format!(
            "deployment {}: written in {}, committed in {}\n",
            self.deployment,
            seconds(self.setup_seconds),
            seconds(self.commit_seconds)
        ));
        let ran: u64 = self
            .runs
            .iter()
            .filter(|(o, _)| ran(o))
            .map(|(_, n)| n)
            .sum();
        let verdict = match self.ending {
            Ending::Converged => "converged in",
            Ending::TimedOut => "timed out after",
            Ending::Interrupted => "interrupted after",
        };
        let cut = match self.runs.get("lost") {
            Some(&lost) => format!(" ({} cut short)", thousands(lost)),
            None => String::new(),
        };
        out.push_str(&format!(
            "{verdict} {}: {} runs{cut}, {:.0} noderoles/s\n",
            seconds(self.converge_seconds),
            thousands(ran),
            self.noderoles_per_second
        ));
        out.push_str(&format!(
            "states: active {}, error {}, blocked {}, todo {}, transition {}\n",
            thousands(self.count(Active)),
            thousands(self.count(Error)),
            thousands(self.count(Blocked)),
            thousands(self.count(Todo)),
            thousands(self.count(Transition)),
        ));
        if let (Some(todo), Some(queue)) = (self.todo_wait, self.queue_wait) {
            out.push_str(&format!(
                "waited in todo before the run started: p50 {}, p99 {}, max {} (of which queued: p50 {}, p99 {})\n",
                seconds(todo.p50),
                seconds(todo.p99),
                seconds(todo.max),
                seconds(queue.p50),
                seconds(queue.p99)
            ));
        }
        out.push_str(&format!(
            "runs/s |{}| peak {:.0}/s, {} per mark\n",
            chart::sparkline(&self.throughput.runs_per_second),
            self.throughput.peak(),
            seconds(self.throughput.bucket_seconds)
        ));
        out.push_str(&self.failures_text());
        if self.left_total > 0 {
            out.push_str(&format!(
                "left unfinished: {} noderoles, e.g. {}\n",
                thousands(self.left_total),
                self.left
                    .iter()
                    .take(EXAMPLES)
                    .map(|l| format!("{}/{} {}", l.node, l.role, l.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push_str(&format!("outcome fingerprint {}\n", self.fingerprint));
        out
    }

    fn failures_text(&self) -> String {
        let f = &self.failures;
        if f.failed == 0 {
            return "failures: none\n".into();
        }
        let mut out = format!(
            "failures: {} noderoles failed; they blocked {} and froze {} more (todo on a node in error)\n",
            thousands(f.failed),
            thousands(f.blocked),
            thousands(f.frozen)
        );
        let roles: Vec<String> = f
            .by_role
            .iter()
            .take(EXAMPLES)
            .map(|r| {
                format!(
                    "{} ({} failed, {} held back)",
                    r.role,
                    thousands(r.failed),
                    thousands(r.held_back())
                )
            })
            .collect();
        out.push_str(&format!("  roles most affected: {}\n", roles.join(", ")));
        for failure in f.noderoles.iter().take(EXAMPLES) {
            let mut held = Vec::new();
            if !failure.blocked.is_empty() {
                held.push(format!("blocked {}", failure.blocked.join(" ")));
            }
            if !failure.frozen.is_empty() {
                held.push(format!("froze {}", failure.frozen.join(" ")));
            }
            if held.is_empty() {
                held.push("held back nothing".into());
            }
            out.push_str(&format!(
                "  e.g. {}/{} failed: {}\n",
                failure.node,
                failure.role,
                held.join("; ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeRoleState::*;

    fn setup() -> Setup {
        Setup {
            nodes: 3,
            roles: 3,
            shape: "chain".into(),
            fail_rate: 0.2,
            delay: "0".into(),
            seed: 7,
            cap: 10,
        }
    }

    fn run(ready: f64, queued: f64, started: f64, finished: f64, outcome: &str) -> RunTiming {
        RunTiming {
            ready,
            queued,
            started: Some(started),
            finished,
            outcome: outcome.into(),
        }
    }

    fn finals(states: &[(u64, u64, NodeRoleState)]) -> Vec<Final> {
        states
            .iter()
            .map(|&(node, role, state)| Final { node, role, state })
            .collect()
    }

    /// n1 converged; r2 failed on n2, blocking r3; n3 has not started.
    fn inputs(ending: Ending) -> Inputs {
        Inputs {
            deployment: "simulate-x".into(),
            setup: setup(),
            ending,
            setup_seconds: 0.5,
            commit_seconds: 0.1,
            stopped: 9.0,
            finals: finals(&[
                (2, 3, Blocked),
                (1, 1, Active),
                (1, 2, Active),
                (1, 3, Active),
                (2, 1, Active),
                (2, 2, Error),
                (3, 1, Todo),
                (3, 2, Blocked),
                (3, 3, Blocked),
            ]),
            runs: vec![
                run(0.0, 0.0, 0.5, 1.0, "succeeded"),
                run(1.0, 1.0, 1.0, 2.0, "succeeded"),
                run(2.0, 2.5, 3.0, 4.0, "succeeded"),
                run(0.0, 0.0, 0.1, 1.0, "succeeded"),
                run(1.0, 1.0, 1.5, 3.0, "failed"),
                RunTiming {
                    ready: 0.0,
                    queued: 0.0,
                    started: None,
                    finished: 0.2,
                    outcome: "dropped".into(),
                },
            ],
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let one = Percentiles::of(vec![3.0]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (3.0, 3.0, 3.0));
        assert_eq!(Percentiles::of(vec![]), None);
    }

    #[test]
    fn throughput_buckets_are_round_and_count_every_run() {
        let t = Throughput::of(&[0.05, 0.5, 1.2, 1.3, 59.9], 60.0, 60);
        assert_eq!(t.bucket_seconds, 1.0);
        assert_eq!(t.runs_per_second.len(), 60);
        assert_eq!(t.runs_per_second[..2], [2.0, 2.0]);
        assert_eq!(t.runs_per_second[59], 1.0);
        assert_eq!(t.runs_per_second.iter().sum::<f64>(), 5.0);
        let long = Throughput::of(&[0.0, 100.0], 100.0, 60);
        assert_eq!(long.bucket_seconds, 2.0);
        assert_eq!(long.runs_per_second.len(), 50);
        assert_eq!(long.runs_per_second.iter().sum::<f64>() * 2.0, 2.0);
        assert_eq!(Throughput::of(&[], 0.0, 60).runs_per_second, [0.0]);
    }

    #[test]
    fn failures_name_what_they_held_back() {
        let report = Report::build(inputs(Ending::TimedOut));
        let f = &report.failures;
        assert_eq!((f.failed, f.blocked, f.frozen), (1, 1, 0));
        assert_eq!(
            f.noderoles,
            [Failure {
                node: "n2".into(),
                role: "r2".into(),
                blocked: vec!["r3".into()],
                frozen: vec![],
            }]
        );
        assert_eq!(f.by_role[0].role, "r3");
        assert_eq!(f.by_role[0].blocked, 1);
        assert_eq!(f.by_role[1].role, "r2");
        assert_eq!(f.by_role[1].failed, 1);
        // n3 never got going: left, not blamed on a failure
        assert_eq!(report.left_total, 3);
        assert_eq!(report.left[0].node, "n3");
        assert_eq!(report.left[0].state, "todo");
    }

    #[test]
    fn a_failure_freezes_the_todo_noderoles_of_its_node() {
        let (f, left) = failures(&finals(&[
            (1, 1, Active),
            (1, 2, Error),
            (1, 3, Todo),
            (1, 4, Blocked),
        ]));
        assert!(left.is_empty());
        assert_eq!(f.noderoles[0].frozen, ["r3"]);
        assert_eq!(f.noderoles[0].blocked, ["r4"]);
        assert_eq!((f.failed, f.blocked, f.frozen), (1, 1, 1));
    }

    #[test]
    fn figures_come_from_the_run_records() {
        let report = Report::build(inputs(Ending::Converged));
        assert_eq!(report.converge_seconds, 4.0, "the last run's end");
        assert_eq!(report.noderoles, 9);
        assert_eq!(report.noderoles_per_second, 5.0 / 4.0);
        assert_eq!(report.runs["succeeded"], 4);
        assert_eq!(report.runs["dropped"], 1);
        assert_eq!(report.states["blocked"], 3);
        let todo = report.todo_wait.unwrap();
        assert_eq!((todo.p50, todo.max), (0.5, 1.0));
        let queue = report.queue_wait.unwrap();
        assert_eq!((queue.p50, queue.max), (0.5, 0.5));
        assert_eq!(
            Report::build(inputs(Ending::TimedOut)).converge_seconds,
            9.0
        );
    }

    #[test]
    fn the_fingerprint_depends_on_the_outcome_only() {
        let a = Report::build(inputs(Ending::Converged));
        let mut other = inputs(Ending::Converged);
        other.deployment = "simulate-y".into();
        other.runs.clear();
        other.finals.reverse();
        assert_eq!(a.fingerprint, Report::build(other).fingerprint);
        let mut changed = inputs(Ending::Converged);
        changed.finals[0].state = Active;
        assert_ne!(a.fingerprint, Report::build(changed).fingerprint);
    }

    #[test]
    fn the_text_says_what_happened() {
        let mut stopped = inputs(Ending::TimedOut);
        stopped.runs.push(RunTiming {
            ready: 0.0,
            queued: 0.0,
            started: Some(8.0),
            finished: 9.0,
            outcome: "lost".into(),
        });
        let text = Report::build(stopped).text();
        assert!(
            text.starts_with("simulated 3 nodes x 3 roles (chain), fail rate 20%"),
            "{text}"
        );
        assert!(
            text.contains("timed out after 9.0s: 5 runs (1 cut short),"),
            "{text}"
        );
        assert!(
            text.contains("failures: 1 noderoles failed; they blocked 1 and froze 0 more"),
            "{text}"
        );
        assert!(text.contains("  e.g. n2/r2 failed: blocked r3\n"), "{text}");
        assert!(
            text.contains("left unfinished: 3 noderoles, e.g. n3/r1 todo"),
            "{text}"
        );
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
