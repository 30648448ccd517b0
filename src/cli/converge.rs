//! `crowbar converge`: waits until the annealer has finished, following the daemon's event
//! stream and re-reading the status whenever something changed.

use std::{collections::BTreeSet, io::IsTerminal, pin::Pin, process::ExitCode, time::Duration};

use anyhow::Context;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{FutureExt, Stream, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use tokio::time::Instant;

use super::{
    anneal::{Convergence, Scope},
    client::{Client, ClientArgs, Refused},
};

pub const LONG_ABOUT: &str = "\
Wait until the annealer has finished: every committed noderole (of DEPLOYMENT, when given)
active.

On a terminal it shows live progress (noderoles by state, the failing ones with the first
line of their error, and why the others wait when nothing runs); otherwise it prints a line
each time the counts change. With --json it prints only the final status.

Exit codes:
  0  finished: every committed noderole is active
  1  failed: a noderole is in error (retry it with `crowbar node-roles retry NODE ROLE`)
  2  timed out (--timeout), or the status could not be read at the start (daemon
     unreachable, token refused, unknown deployment). Once started, converge waits through
     a daemon restart, until the timeout.";

#[derive(Debug, clap::Args)]
#[command(override_usage = "crowbar converge [OPTIONS] [DEPLOYMENT]")]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub scope: Scope,
    /// Give up after this long, e.g. 90s, 10m or 2h.
    #[arg(long, default_value = "30m", value_parser = crate::units::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Why `converge` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Failed,
    TimedOut,
}

impl Outcome {
    fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Finished => 0,
            Outcome::Failed => 1,
            Outcome::TimedOut => 2,
        })
    }
}

/// Even without events, the status is read again this often: a lost change or a stalled
/// connection costs at most this much.
const RECHECK: Duration = Duration::from_secs(15);
/// Events arriving together are taken as one change: the status is read at most this often.
const COALESCE: Duration = Duration::from_millis(100);
/// How long to wait before connecting again when the daemon could not be reached.
const RECONNECT: Duration = Duration::from_secs(1);

pub async fn run(args: ConvergeArgs) -> ExitCode {
    match converge(&args).await {
        Ok(outcome) => outcome.code(),
        Err(error) => {
            eprint!("{}", super::report(&error));
            Outcome::TimedOut.code()
        }
    }
}

async fn converge(args: &ConvergeArgs) -> anyhow::Result<Outcome> {
    let client = Client::new(&args.client)?;
    let deployment = args.scope.deployment();
    let deadline = Instant::now() + args.timeout;
    // subscribe before the first read: no change after it goes unnoticed
    let mut changes = Changes::open(&client).await?;
    // the first reading must succeed: a wrong URL, token or deployment is said at once
    let mut now = Convergence::read(&client, deployment).await?;
    let mut display = Display::new(client.json, std::io::stdout().is_terminal());
    loop {
        let outcome = if now.finished() {
            Some(Outcome::Finished)
        } else if now.failed() {
            Some(Outcome::Failed)
        } else if Instant::now() >= deadline {
            Some(Outcome::TimedOut)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            display.finish(&now, outcome, args.timeout);
            return Ok(outcome);
        }
        display.update(&now);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            () = changes.next(&client) => {}
        }
        match read_through_outages(&client, deployment, &mut display, deadline).await? {
            Some(next) => now = next,
            None => {
                display.finish(&now, Outcome::TimedOut, args.timeout);
                return Ok(Outcome::TimedOut);
            }
        }
    }
}

/// Reads the status. While the daemon cannot be reached or fails to answer (a restart, say),
/// it says so and tries again every [`RECONNECT`]; `None` when `deadline` passes first.
async fn read_through_outages(
    client: &Client,
    deployment: Option<&str>,
    display: &mut Display,
    deadline: Instant,
) -> anyhow::Result<Option<Convergence>> {
    loop {
        match Convergence::read(client, deployment).await {
            Ok(now) => return Ok(Some(now)),
            Err(error) if transient(&error) => display.unreachable(&error),
            Err(error) => return Err(error),
        }
        if Instant::now() + RECONNECT >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Ok(None);
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// An error that may pass by itself: no answer at all, or the daemon failing (5xx). A
/// refusal (bad token, unknown deployment) will not.
fn transient(error: &anyhow::Error) -> bool {
    match error.chain().find_map(|e| e.downcast_ref::<Refused>()) {
        Some(refused) => refused.status.is_server_error(),
        None => true,
    }
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// The daemon's event stream, reduced to "something changed".
struct Changes {
    stream: EventStream,
    /// The last event seen, to resume after a dropped connection.
    last_id: Option<String>,
    /// The connection ended; reconnect before waiting again.
    ended: bool,
}

impl Changes {
    async fn open(client: &Client) -> anyhow::Result<Changes> {
        Ok(Changes {
            stream: connect(client, None).await?,
            last_id: None,
            ended: false,
        })
    }

    /// Returns when something may have changed: after one or more events, a reconnection
    /// or a failed one (events may have been missed), or [`RECHECK`] of quiet.
    async fn next(&mut self, client: &Client) {
        if self.ended {
            tokio::time::sleep(RECONNECT).await;
            // a failure shows in the next reading of the status; the one after retries
            if let Ok(stream) = connect(client, self.last_id.as_deref()).await {
                self.stream = stream;
                self.ended = false;
            }
            return;
        }
        match tokio::time::timeout(RECHECK, self.stream.next()).await {
            Err(_) => {}
            Ok(Some(Ok(event))) => {
                self.seen(&event);
                tokio::time::sleep(COALESCE).await;
                self.drain();
            }
            Ok(Some(Err(_)) | None) => self.ended = true,
        }
    }

    /// Takes the events that are already there.
    fn drain(&mut self) {
        loop {
            match self.stream.next().now_or_never() {
                Some(Some(Ok(event))) => self.seen(&event),
                Some(Some(Err(_)) | None) => {
                    self.ended = true;
                    return;
                }
                None => return,
            }
        }
    }

    fn seen(&mut self, event: &Event) {
        if !event.id.is_empty() {
            self.last_id = Some(event.id.clone());
        }
    }
}

async fn connect(client: &Client, last_id: Option<&str>) -> anyhow::Result<EventStream> {
    let mut request = client.request(Method::GET, "/api/v2/events");
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = client
        .open(request)
        .await
        .context("cannot follow the daemon's events")?;
    Ok(Box::pin(response.bytes_stream().eventsource()))
}

/// Where progress goes: a redrawn status on a terminal, a line per change otherwise, or
/// only the final status as JSON.
enum Display {
    Json,
    Terminal(ProgressBar),
    Lines {
        last: Option<String>,
        reported: BTreeSet<i64>,
    },
}

impl Display {
    fn new(json: bool, terminal: bool) -> Display {
        if json {
            Display::Json
        } else if terminal {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            Display::Terminal(bar)
        } else {
            Display::Lines {
                last: None,
                reported: BTreeSet::new(),
            }
        }
    }

    fn update(&mut self, now: &Convergence) {
        match self {
            Display::Json => {}
            Display::Terminal(bar) => {
                bar.set_message(now.summary().trim_end().to_string());
            }
            Display::Lines { last, reported } => print!("{}", changed_lines(now, last, reported)),
        }
    }

    /// The daemon cannot be reached: said once per outage.
    fn unreachable(&mut self, error: &anyhow::Error) {
        let line = format!("cannot reach the daemon; retrying until the timeout: {error}");
        match self {
            Display::Json => {}
            Display::Terminal(bar) => bar.set_message(line),
            Display::Lines { last, .. } => {
                if last.as_deref() != Some(line.as_str()) {
                    println!("{line}");
                    *last = Some(line);
                }
            }
        }
    }

    fn finish(&mut self, now: &Convergence, outcome: Outcome, timeout: Duration) {
        if let Display::Json = self {
            let mut body = serde_json::to_value(now).unwrap_or_default();
            body["timed_out"] = (outcome == Outcome::TimedOut).into();
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            return;
        }
        if let Display::Terminal(bar) = self {
            bar.finish_and_clear();
        }
        print!("{}", final_lines(now, outcome, timeout));
    }
}

/// The counts line when the status or counts changed since `last`, and the failing
/// noderoles not reported yet.
fn changed_lines(
    now: &Convergence,
    last: &mut Option<String>,
    reported: &mut BTreeSet<i64>,
) -> String {
    let mut out = String::new();
    let line = now.counts_line();
    if last.as_deref() != Some(line.as_str()) {
        out.push_str(&line);
        out.push('\n');
        for w in now.waiting.iter().take(3) {
            out.push_str(&format!(
                "  waiting: {}/{}: {}\n",
                w.node, w.role, w.message
            ));
        }
        *last = Some(line);
    }
    for f in &now.failing {
        if reported.insert(f.id) {
            out.push_str(&format!("  failed: {}/{}: {}\n", f.node, f.role, f.message));
        }
    }
    out
}

/// What converge says when it stops.
fn final_lines(now: &Convergence, outcome: Outcome, timeout: Duration) -> String {
    match outcome {
        Outcome::Finished => format!("{}\n", now.counts_line()),
        Outcome::Failed => format!(
            "{}\n{}retry with `crowbar node-roles retry NODE ROLE` once the cause is fixed\n",
            now.counts_line(),
            now.stuck_lines()
        ),
        Outcome::TimedOut => format!(
            "timed out after {} ({})\n{}",
            humanize(timeout),
            now.counts_line(),
            now.stuck_lines()
        ),
    }
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::anneal::tests::{convergence, stuck};

    #[test]
    fn lines_appear_only_when_counts_change_or_a_new_noderole_fails() {
        let (mut last, mut reported) = (None, BTreeSet::new());
        let mut now = convergence("working", &[("active", 1), ("transition", 1)]);
        assert_eq!(
            changed_lines(&now, &mut last, &mut reported),
            "working: active 1, todo 0, transition 1, blocked 0, error 0\n"
        );
        assert_eq!(changed_lines(&now, &mut last, &mut reported), "");
        now.counts.insert("error".into(), 1);
        now.failing = vec![stuck("n1", "test-fails", "the last run failed: boom")];
        assert_eq!(
            changed_lines(&now, &mut last, &mut reported),
            "working: active 1, todo 0, transition 1, blocked 0, error 1\n  failed: n1/test-fails: the last run failed: boom\n"
        );
        assert_eq!(changed_lines(&now, &mut last, &mut reported), "");
    }

    #[test]
    fn only_outages_and_server_failures_are_waited_through() {
        let refused = |status: u16| {
            anyhow::Error::new(Refused {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                code: "x".into(),
                message: "x".into(),
                hint: None,
            })
            .context("reading the status")
        };
        assert!(transient(&anyhow::anyhow!("connection refused")));
        assert!(transient(&refused(503)));
        assert!(!transient(&refused(401)));
        assert!(!transient(&refused(404)));
    }

    #[test]
    fn the_end_says_why() {
        let mut now = convergence("scheduled", &[("todo", 1)]);
        now.waiting = vec![stuck("n2", "test-server", "node n2 is dead")];
        assert_eq!(
            final_lines(&now, Outcome::TimedOut, Duration::from_secs(120)),
            "timed out after 2m (scheduled: active 0, todo 1, transition 0, blocked 0, error 0)\n  waiting: n2/test-server: node n2 is dead\n"
        );
        assert_eq!(Outcome::Failed.code(), ExitCode::from(1));
        assert_eq!(humanize(Duration::from_millis(1500)), "1s");
        assert_eq!(humanize(Duration::from_millis(500)), "500ms");
    }
}
