//! Prometheus metrics (`GET /metrics`, API.md "Serving").
//!
//! Two kinds of figures, for two reasons:
//! - what this process did — HTTP requests, finished runs and their durations, probe
//!   results — is counted where it happens through the `metrics` facade into one recorder per
//!   process;
//! - what the fleet is — noderoles by state, queued and running runs, nodes by flags — is
//!   read from the database at scrape time, because several daemons share it and each would
//!   otherwise report only its own view.

use std::{fmt::Write, sync::OnceLock, time::Duration};

use ::metrics::{counter, histogram};
use axum::http::Method;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::domain::state::NodeRoleState;

/// Histogram buckets (seconds) for request and run durations: from a fast API answer to a
/// long OS install.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The process's recorder, installed on first use. Counting before it is installed is lost,
/// so the daemon installs it before serving or annealing.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("the duration buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only fleet figures"
            );
        }
        handle
    })
}

/// Keeps the recorder's histograms bounded between scrapes; runs until `shutdown`.
pub async fn upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let handle = install();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// One answered HTTP request. `route` is the matched route template, never the raw path;
/// with the method folded by [`method_label`] and the status a number, every label has a
/// bounded set of values, whatever clients send.
pub fn http_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method_label(method).to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    counter!("crowbar_http_requests_total", &labels).increment(1);
    histogram!("crowbar_http_request_duration_seconds", &labels[..2]).record(elapsed);
}

/// A connection closed unanswered because the server held `--http-max-connections`.
pub fn connection_refused() {
    counter!("crowbar_http_connections_refused_total").increment(1);
}

/// The method as a label: one of the nine methods HTTP defines, else `OTHER`. Clients may
/// send any token as a method, and each distinct label value is a series kept for the life
/// of the process.
pub fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("OTHER", Method::as_str)
}

/// One finished run (`outcome` as the run history names it) and how long its jig took.
pub fn run_finished(outcome: &'static str, elapsed: Duration) {
    counter!("crowbar_runs_finished_total", "outcome" => outcome).increment(1);
    histogram!("crowbar_run_duration_seconds", "outcome" => outcome).record(elapsed);
}

/// Time spent in one step of the annealer's pipeline: `pass` (queueing what is runnable),
/// `claim` (taking queued runs under the cap), `complete` (recording outcomes, their
/// ripples, and queueing what they made runnable). Where the time goes at fleet scale.
pub fn annealer_phase(phase: &'static str, elapsed: Duration) {
    histogram!("crowbar_annealer_phase_seconds", "phase" => phase).record(elapsed);
}

/// One aliveness probe: `alive`, `dead`, or `error` (crowbar could not probe).
pub fn probe(result: &'static str) {
    counter!("crowbar_probes_total", "result" => result).increment(1);
}

/// One login through the web UI's form: `ok`, `refused` (wrong token, user or password) or
/// `locked` (refused unchecked after too many failures, 429).
pub fn login(outcome: &'static str) {
    counter!("crowbar_logins_total", "outcome" => outcome).increment(1);
}

/// The password hashes running now and the most that ran at once since the start (bounded
/// by `--password-checks`), read from the daemon's hashing at scrape time.
pub fn password_checks(running: usize, most: usize) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "crowbar_password_checks_in_flight",
            "password hashes running now",
            running,
        ),
        (
            "crowbar_password_checks_in_flight_max",
            "most password hashes that ran at once since the start",
            most,
        ),
    ] {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        gauge(&mut out, name, help, std::iter::once((vec![], value)));
    }
    out
}

/// The whole scrape: this process's counters, then the fleet figures.
pub async fn render(pool: &PgPool) -> crate::db::Result<String> {
    let mut out = install().render();
    out.push_str(&fleet(pool).await?);
    Ok(out)
}

/// Gauges read from the database at scrape time.
async fn fleet(pool: &PgPool) -> crate::db::Result<String> {
    let crate::db::metrics::FleetCounts {
        noderoles_by_state: by_state,
        runs,
        nodes,
    } = crate::db::metrics::fleet(pool).await?;

    let mut out = String::new();
    let noderoles = NodeRoleState::ALL.iter().map(|state| {
        let count = by_state
            .iter()
            .find(|(code, _)| *code == state.code())
            .map_or(0, |(_, n)| *n);
        (vec![("state", state.name().to_owned())], count)
    });
    gauge(
        &mut out,
        "crowbar_noderoles",
        "noderoles by state",
        noderoles,
    );
    let runs = ["queued", "running"].iter().flat_map(|state| {
        let runs = &runs;
        ["normal", "high"].iter().map(move |lane| {
            let count = runs
                .iter()
                .find(|(s, l, _)| s == state && l == lane)
                .map_or(0, |(_, _, n)| *n);
            let labels = vec![("state", state.to_string()), ("lane", lane.to_string())];
            (labels, count)
        })
    });
    gauge(
        &mut out,
        "crowbar_runs",
        "runs in the queue, by state and lane",
        runs,
    );
    let nodes = [(true, true), (true, false), (false, true), (false, false)]
        .into_iter()
        .map(|(alive, available)| {
            let count = nodes
                .iter()
                .find(|(a, v, _)| (*a, *v) == (alive, available))
                .map_or(0, |(_, _, n)| *n);
            let labels = vec![
                ("alive", alive.to_string()),
                ("available", available.to_string()),
            ];
            (labels, count)
        });
    gauge(
        &mut out,
        "crowbar_nodes",
        "nodes by aliveness and availability",
        nodes,
    );
    Ok(out)
}

/// One gauge family in the text exposition format. Label values here are fixed words, so
/// they need no escaping.
fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Vec<(&'static str, String)>, i64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
            continue;
        }
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
        // method names are case-sensitive: `get` is not GET
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }

    #[test]
    fn gauges_use_the_exposition_format() {
        let mut out = String::new();
        let samples = vec![
            (vec![("state", "active".to_owned())], 3),
            (
                vec![("state", "error".to_owned()), ("lane", "high".to_owned())],
                0,
            ),
        ];
        gauge(&mut out, "crowbar_x", "things", samples.into_iter());
        assert_eq!(
            out,
            "# HELP crowbar_x things\n# TYPE crowbar_x gauge\n\
             crowbar_x{state=\"active\"} 3\n\
             crowbar_x{state=\"error\",lane=\"high\"} 0\n"
        );
    }
}
