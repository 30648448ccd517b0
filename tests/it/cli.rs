//! The CLI against a real daemon: `crowbar barclamps import|list` share the daemon's one
//! import path; `crowbar users add|list` make web UI logins.

use std::time::Duration;

use crate::support::daemon::{Daemon, DaemonOptions, run_crowbar};

const T: Duration = Duration::from_secs(60);

async fn crowbar(daemon: &Daemon, args: &[&str]) -> crate::support::daemon::Outcome {
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token")).unwrap();
    let url = daemon.url();
    run_crowbar(
        args,
        &[
            ("CROWBAR_URL", url.as_str()),
            ("CROWBAR_TOKEN", token.trim()),
        ],
        T,
    )
    .await
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
    assert_eq!(names, ["core", "test", "site"]);
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
    assert_eq!(out.stdout, "user alice added\n");
    let again = add("another password\n").await;
    assert!(!again.status.success());
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    let list = crowbar(&daemon, &["users", "list"]).await;
    assert!(list.stdout.contains("alice"), "{}", list.stdout);

    // the password (without its newline) logs in to the web UI
    let http = reqwest::Client::builder()
        .no_proxy()
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
            ("user", "alice"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("crowbar_session=")
    );
}
