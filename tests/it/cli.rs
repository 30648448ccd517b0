//! The CLI against a real daemon: `crowbar barclamps import|list` share the daemon's one
//! import path.

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
    assert_eq!(names, ["core", "provisioner", "test", "site"]);
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
