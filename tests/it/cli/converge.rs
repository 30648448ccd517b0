//! `crowbar converge`: exit 0 finished, 1 failed, 2 timed out or no daemon; progress as it
//! happens.

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::ChildStdout,
};

use super::{Cli, admin_token};
use crate::support::daemon::{Daemon, DaemonOptions, DataDir, run_script, spawn_crowbar};

/// A deployment `name` with `role` bound to `node`, committed by a document.
async fn deployment(cli: &Cli, name: &str, node: &str, role: &str) {
    cli.ok(&["deployments", "create", name]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(
        &file,
        format!(r#"{{"bindings": [{{"node": "{node}", "role": "{role}"}}]}}"#),
    )
    .unwrap();
    cli.ok(&["deployments", "apply", name, file.to_str().unwrap()])
        .await;
}

/// A `crowbar converge` running in the background, read line by line as it prints.
struct Following {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Following {
    fn start(cli: &Cli, args: &[&str]) -> Following {
        let url = cli.daemon.url();
        let token = admin_token(&cli.daemon);
        let mut child = spawn_crowbar(args, &[("CROWBAR_URL", &url), ("CROWBAR_TOKEN", &token)]);
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Following { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(super::T, self.lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line")
    }

    /// Waits for the exit: its status and the lines not read yet.
    async fn end(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(super::T, self.child.wait())
            .await
            .expect("converge ends in time")
            .unwrap();
        let mut rest = Vec::new();
        while let Some(line) = self.lines.next_line().await.unwrap() {
            rest.push(line);
        }
        (status, rest)
    }
}

#[tokio::test]
async fn converge_exit_codes_say_finished_failed_or_timed_out() {
    let cli = Cli::start().await;
    // an error freezes its node: the failing role gets a node of its own
    cli.alive_nodes(&["live.example.com", "failing.example.com"])
        .await;
    cli.ok(&["nodes", "create", "dead.example.com"]).await;
    deployment(&cli, "good", "live.example.com", "test-server").await;
    deployment(&cli, "bad", "failing.example.com", "test-fails").await;
    deployment(&cli, "stuck", "dead.example.com", "test-admin").await;

    // finished: 0, the last line says so
    let out = cli.run(&["converge", "good"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.lines().last(),
        Some("finished: active 2, todo 0, transition 0, blocked 0, error 0")
    );
    let json = cli.json(&["converge", "good"]).await;
    assert_eq!(json["status"], "finished");
    assert_eq!(json["timed_out"], false);
    // the older flag names the same deployment
    assert_eq!(cli.json(&["converge", "--deployment", "good"]).await, json);

    // failed: 1, naming the noderole and the first line of its error
    let out = cli.run(&["converge", "bad"]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "\n  failed: failing.example.com/test-fails: the last run failed: test jig: \
             test-fails on failing.example.com failed as asked"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("crowbar node-roles retry"),
        "{}",
        out.stdout
    );
    let out = cli
        .run(&["converge", "--deployment", "bad", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["failing"][0]["role"], "test-fails");
    // everything together: the failure wins
    assert_eq!(cli.run(&["converge"]).await.status.code(), Some(1));

    // timed out: 2, saying what it waits for
    let started = Instant::now();
    let out = cli
        .run(&["converge", "--deployment", "stuck", "--timeout", "2s"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        out.stdout
            .contains("timed out after 2s (scheduled: active 0, todo 1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  waiting: dead.example.com/test-admin: node dead.example.com is dead\n"),
        "{}",
        out.stdout
    );
    let out = cli
        .run(&[
            "converge",
            "--deployment",
            "stuck",
            "--timeout",
            "1s",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["timed_out"], true);
    assert_eq!(json["status"], "scheduled");
    assert_eq!(json["waiting"][0]["node"], "dead.example.com");

    // a daemon that cannot be reached, an unknown deployment: 2 with the reason
    let out = super::run_crowbar(
        &["converge", "--url", "http://127.0.0.1:9", "--token", "x"],
        &[],
        super::T,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr
            .contains("cannot reach crowbar at http://127.0.0.1:9"),
        "{}",
        out.stderr
    );
    let err = cli.fails(&["converge", "nope"], 2).await;
    assert!(err.contains("HTTP 404"), "{err}");
    let err = cli.fails(&["converge", "--deployment", "nope"], 2).await;
    assert!(err.contains("HTTP 404"), "{err}");
}

/// The deployment converge waits for is given once: as `converge DEPLOYMENT` or with the
/// older `--deployment`. Both at once is wrong usage, refused before anything is read.
#[tokio::test]
async fn converge_refuses_the_deployment_given_twice() {
    let cli = Cli::start().await;
    cli.alive_nodes(&["live.example.com"]).await;
    deployment(&cli, "good", "live.example.com", "test-server").await;
    for args in [
        &["converge", "good", "--deployment", "good"][..],
        &[
            "converge",
            "good",
            "--deployment",
            "nope",
            "--timeout",
            "1s",
        ],
        &["converge", "--deployment", "nope", "good"],
    ] {
        let started = Instant::now();
        let err = cli.fails(args, 2).await;
        assert!(super::resources::given_twice(&err), "{args:?}: {err}");
        assert!(
            err.contains("Usage: crowbar converge [OPTIONS] [DEPLOYMENT]"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?}");
    }
    let err = cli.fails(&["converge", "good", "bad"], 2).await;
    assert!(err.contains("unexpected argument 'bad'"), "{err}");
    // still converged, nothing else was touched
    assert_eq!(
        cli.ok(&["converge", "good"]).await.lines().last(),
        Some("finished: active 2, todo 0, transition 0, blocked 0, error 0")
    );
}

/// converge follows the daemon: it reports the waiting state, then finishes once the node
/// comes alive, long before its timeout.
#[tokio::test]
async fn converge_follows_progress_until_finished() {
    let cli = Cli::start().await;
    cli.ok(&["nodes", "create", "late.example.com"]).await;
    deployment(&cli, "web", "late.example.com", "test-server").await;

    let mut converge = Following::start(&cli, &["converge", "web", "--timeout", "5m"]);
    assert_eq!(
        converge.line().await,
        "scheduled: active 0, todo 1, transition 0, blocked 1, error 0"
    );
    assert_eq!(
        converge.line().await,
        "  waiting: late.example.com/test-admin: node late.example.com is dead"
    );

    let alive = Instant::now();
    cli.ok(&["nodes", "alive", "late.example.com", "true"])
        .await;
    let (status, rest) = converge.end().await;
    assert!(status.success(), "{rest:?}");
    // Events drive it: relying on the periodic re-read alone, each of the three waves would
    // wait up to 15 s for its next reading.
    assert!(
        alive.elapsed() < Duration::from_secs(10),
        "finished {:?} after the node came alive",
        alive.elapsed()
    );
    assert_eq!(
        rest.last().map(String::as_str),
        Some("finished: active 2, todo 0, transition 0, blocked 0, error 0"),
        "{rest:?}"
    );
}

/// On a terminal (a pseudo-terminal from `script`), converge redraws one status in place —
/// counts and why it waits — and leaves the final lines when it stops.
#[tokio::test]
async fn converge_redraws_its_status_on_a_terminal() {
    let cli = Cli::start().await;
    cli.ok(&["nodes", "create", "dead.example.com"]).await;
    deployment(&cli, "web", "dead.example.com", "test-admin").await;
    let url = cli.daemon.url();
    let token = admin_token(&cli.daemon);
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(
        "script -qec 'crowbar converge web --timeout 2s' /dev/null",
        dir.path(),
        &[
            ("CROWBAR_URL", &url),
            ("CROWBAR_TOKEN", &token),
            ("TERM", "xterm"),
        ],
        super::T,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    let (live, end) = out
        .stdout
        .rsplit_once("\x1b[2K")
        .unwrap_or_else(|| panic!("no line was redrawn: {:?}", out.stdout));
    assert!(
        live.contains(" scheduled: active 0, todo 1, transition 0, blocked 0, error 0"),
        "{live:?}"
    );
    assert!(
        live.contains("  waiting: dead.example.com/test-admin: node dead.example.com is dead"),
        "{live:?}"
    );
    assert!(
        live.matches("\r").count() > 2,
        "the status is redrawn in place: {live:?}"
    );
    assert_eq!(
        // after the last clear, the cursor goes back up to where the status began
        end.trim_start_matches("\x1b[1A").replace("\r\n", "\n"),
        "timed out after 2s (scheduled: active 0, todo 1, transition 0, blocked 0, error 0)\n  \
         waiting: dead.example.com/test-admin: node dead.example.com is dead\n"
    );
}

/// A daemon restart during converge: it says it lost the daemon, keeps trying, and finishes
/// once the restarted daemon has done the work.
#[tokio::test]
async fn converge_waits_through_a_daemon_restart() {
    let data = DataDir::new();
    let mut cli = Cli {
        daemon: Daemon::start(DaemonOptions::default().data_dir(data.path())).await,
    };
    cli.ok(&["nodes", "create", "late.example.com"]).await;
    deployment(&cli, "web", "late.example.com", "test-admin").await;
    let url = cli.daemon.url();
    let mut converge = Following::start(
        &cli,
        &["converge", "--deployment", "web", "--timeout", "5m"],
    );
    assert!(converge.line().await.starts_with("scheduled: "));
    assert!(converge.line().await.starts_with("  waiting: "));

    assert!(cli.daemon.stop().await.success());
    let lost = converge.line().await;
    assert!(
        lost.starts_with(&format!(
            "cannot reach the daemon; retrying until the timeout: cannot reach crowbar at {url}"
        )),
        "{lost}"
    );
    cli.daemon = Daemon::start(
        DaemonOptions::default()
            .data_dir(data.path())
            .listen(cli.daemon.addr().to_string()),
    )
    .await;
    cli.ok(&["nodes", "alive", "late.example.com", "true"])
        .await;
    let (status, rest) = converge.end().await;
    assert!(status.success(), "{rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("finished: active 1, todo 0, transition 0, blocked 0, error 0"),
        "{rest:?}"
    );
}
