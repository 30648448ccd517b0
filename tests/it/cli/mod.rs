//! The CLI against a real daemon process: every resource verb, table and JSON output,
//! refusals that say what to do next, `converge` exit codes, the scripting guide run as
//! written, `crowbar users add|list|password|delete` managing web UI logins, and `crowbar
//! simulate` (which needs no daemon).

mod converge;
mod doctor;
mod power;
mod resources;
mod scripting;
mod simulate;

use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{Daemon, DaemonOptions, Outcome, run_crowbar};

const T: Duration = Duration::from_secs(60);

async fn crowbar(daemon: &Daemon, args: &[&str]) -> Outcome {
    let token = admin_token(daemon);
    let url = daemon.url();
    run_crowbar(
        args,
        &[
            ("CROWBAR_URL", url.as_str()),
            ("CROWBAR_TOKEN", token.as_str()),
        ],
        T,
    )
    .await
}

fn admin_token(daemon: &Daemon) -> String {
    std::fs::read_to_string(daemon.data_dir().join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// A daemon and the CLI pointed at it by environment.
struct Cli {
    daemon: Daemon,
}

impl Cli {
    async fn start() -> Cli {
        Cli {
            daemon: Daemon::start(DaemonOptions::default()).await,
        }
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        crowbar(&self.daemon, args).await
    }

    /// Creates the nodes and marks them alive.
    async fn alive_nodes(&self, nodes: &[&str]) {
        for node in nodes {
            self.ok(&["nodes", "create", node]).await;
            self.ok(&["nodes", "alive", node, "true"]).await;
        }
    }

    /// stdout of a command that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "crowbar {args:?} failed: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", out.stderr);
        out.stdout
    }

    /// The JSON a command prints with `--json`.
    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let stdout = self.ok(&args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }

    /// stderr of a command that must fail with exit code `code`, having printed nothing.
    async fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "crowbar {args:?}: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out.stderr
    }
}

/// The `name` of each object of a JSON array.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn barclamps_import_through_the_daemon_and_bad_ones_change_nothing() {
    let daemon = Daemon::start(DaemonOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("site.yml");
    std::fs::write(
        &good,
        "barclamp: {name: site, parent: core, description: site roles}
roles:
  - name: site-base
    jig: noop
  - name: site-app
    jig: noop
    requires: [site-base]
",
    )
    .unwrap();
    let out = crowbar(&daemon, &["barclamps", "import", good.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "barclamp site: created (0 jigs, 2 roles, 0 attribs)\n"
    );
    let again = crowbar(&daemon, &["barclamps", "import", good.to_str().unwrap()]).await;
    assert!(
        again.stdout.contains("barclamp site: unchanged"),
        "{}",
        again.stdout
    );

    let bad = dir.path().join("loop.yml");
    std::fs::write(
        &bad,
        "barclamp: {name: loop}
roles:
  - name: loop-a
    jig: noop
    requires: [loop-b]
  - name: loop-b
    jig: noop
    requires: [loop-a]
",
    )
    .unwrap();
    let before = crowbar(&daemon, &["barclamps", "list", "--json"]).await;
    let out = crowbar(&daemon, &["barclamps", "import", bad.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("loop.yml was not imported"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("loop-a"),
        "names the role: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("cycle"),
        "names the reason: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("invalid_barclamp, HTTP 422"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let after = crowbar(&daemon, &["barclamps", "list", "--json"]).await;
    assert_eq!(before.stdout, after.stdout, "nothing changed");
    let listed: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["core", "provisioner", "base", "demo", "test", "site"]
    );
    let table = crowbar(&daemon, &["barclamps", "list"]).await;
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);

    // no token at all: a short message saying what to pass
    let out = run_crowbar(
        &["barclamps", "list", "--url", daemon.url().as_str()],
        &[],
        T,
    )
    .await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("pass --token"), "{}", out.stderr);
}

#[tokio::test]
async fn users_added_with_a_password_on_stdin_can_log_in_to_the_ui() {
    let daemon = Daemon::start(DaemonOptions::default()).await;
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token")).unwrap();
    let url = daemon.url();
    let env = [
        ("CROWBAR_URL", url.as_str()),
        ("CROWBAR_TOKEN", token.trim()),
    ];
    let add = |input: &'static str| {
        crate::support::daemon::run_crowbar_with_input(&["users", "add", "alice"], &env, input, T)
    };
    let short = add("short\n").await;
    assert!(!short.status.success());
    assert!(
        short.stderr.contains("at least 8 characters"),
        "{}",
        short.stderr
    );
    let empty = add("").await;
    assert!(!empty.status.success());
    assert!(
        empty.stderr.contains("no password on stdin"),
        "{}",
        empty.stderr
    );

    let out = add("a long enough password\n").await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "user alice added (admin)\n");
    let again = add("another password\n").await;
    assert!(!again.status.success());
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    let list = crowbar(&daemon, &["users", "list"]).await;
    assert!(list.stdout.contains("alice"), "{}", list.stdout);

    // the password (without its newline) logs in to the web UI
    assert_eq!(ui_login(&url, "alice", "a long enough password").await, 303);
}

/// Logs in to the web UI with a user name and password; the status of the login's answer
/// (303 with a session cookie when it worked).
async fn ui_login(url: &str, user: &str, password: &str) -> u16 {
    let http = crate::support::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(format!("{url}/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    let value = login_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("crowbar_login=")
        .to_string();
    let response = http
        .post(format!("{url}/login"))
        .header("cookie", format!("crowbar_login={value}"))
        .form(&[
            ("login_csrf", value.as_str()),
            ("user", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    if response.status() == 303 {
        assert!(
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with("crowbar_session=")
        );
    }
    response.status().as_u16()
}

#[tokio::test]
async fn users_get_new_passwords_from_stdin_and_are_deleted() {
    let daemon = Daemon::start(DaemonOptions::default()).await;
    let token = admin_token(&daemon);
    let url = daemon.url();
    let env = [
        ("CROWBAR_URL", url.as_str()),
        ("CROWBAR_TOKEN", token.as_str()),
    ];
    let with_input = |args: &'static [&'static str], input: &'static str| {
        crate::support::daemon::run_crowbar_with_input(args, &env, input, T)
    };
    let out = with_input(&["users", "add", "alice"], "the first password\n").await;
    assert!(out.status.success(), "{}", out.stderr);

    let empty = with_input(&["users", "password", "alice"], "").await;
    assert!(!empty.status.success());
    assert!(
        empty.stderr.contains("no password on stdin"),
        "{}",
        empty.stderr
    );
    let short = with_input(&["users", "password", "alice"], "short\n").await;
    assert!(!short.status.success());
    assert!(
        short.stderr.contains("at least 8 characters"),
        "{}",
        short.stderr
    );
    let unknown = with_input(&["users", "password", "bob"], "long enough now\n").await;
    assert!(!unknown.status.success());
    assert!(unknown.stderr.contains("not found"), "{}", unknown.stderr);
    assert_eq!(ui_login(&url, "alice", "the first password").await, 303);

    let out = with_input(&["users", "password", "alice"], "the second password\n").await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "password of user alice changed; its sessions ended\n"
    );
    assert_eq!(ui_login(&url, "alice", "the first password").await, 401);
    assert_eq!(ui_login(&url, "alice", "the second password").await, 303);

    let out = crowbar(&daemon, &["users", "delete", "alice"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "user alice deleted\n");
    assert_eq!(ui_login(&url, "alice", "the second password").await, 401);
    let list = crowbar(&daemon, &["users", "list"]).await;
    assert!(!list.stdout.contains("alice"), "{}", list.stdout);
    let again = crowbar(&daemon, &["users", "delete", "alice"]).await;
    assert!(!again.status.success());
    assert!(again.stderr.contains("not found"), "{}", again.stderr);
}
