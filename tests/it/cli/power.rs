//! `crowbar nodes bmc` and `crowbar nodes power` against a real daemon and a real Redfish
//! emulator: the password goes in on stdin only and comes out nowhere — not in the
//! answers, not in the daemon's logs — and the key that seals it is the daemon's own file.

use std::os::unix::fs::PermissionsExt;

use super::{T, admin_token, crowbar};
use crate::support::{
    bmc::{PASSWORD, RedfishEmulator, USER},
    daemon::{Daemon, DaemonOptions, run_crowbar_with_input},
};

#[tokio::test]
async fn a_bmc_is_enrolled_from_stdin_and_its_power_read_without_the_password_showing() {
    let emulator = RedfishEmulator::start(1).await;
    let daemon = Daemon::start(DaemonOptions::default()).await;
    let created = crowbar(&daemon, &["nodes", "create", "n1.example.com"]).await;
    assert!(created.status.success(), "{}", created.stderr);
    let token = admin_token(&daemon);
    let url = daemon.url();
    let env = [
        ("CROWBAR_URL", url.as_str()),
        ("CROWBAR_TOKEN", token.as_str()),
    ];
    let port = emulator.port.to_string();
    let set = |input: String| {
        let args = [
            "nodes",
            "bmc",
            "set",
            "n1.example.com",
            "--address",
            "127.0.0.1",
            "--port",
            port.as_str(),
            "--username",
            USER,
        ];
        async move { run_crowbar_with_input(&args, &env, &input, T).await }
    };
    let empty = set(String::new()).await;
    assert!(!empty.status.success());
    assert!(
        empty.stderr.contains("no password on stdin"),
        "{}",
        empty.stderr
    );

    let enrolled = set(format!("{PASSWORD}\n")).await;
    assert!(enrolled.status.success(), "{}", enrolled.stderr);
    assert!(enrolled.stdout.contains(USER), "{}", enrolled.stdout);
    // the enrolment's check: the credentials work, and what the BMC tells
    assert!(
        enrolled
            .stderr
            .contains("checked: the credentials work; the machine is off"),
        "{}",
        enrolled.stderr
    );
    let shown = crowbar(&daemon, &["nodes", "bmc", "show", "n1.example.com"]).await;
    assert!(shown.status.success(), "{}", shown.stderr);
    let status = crowbar(&daemon, &["nodes", "power", "n1.example.com", "status"]).await;
    assert!(status.status.success(), "{}", status.stderr);
    assert_eq!(status.stdout, "n1.example.com: off\n");
    // an operation, followed until the BMC confirms it
    let on = crowbar(&daemon, &["nodes", "power", "n1.example.com", "on"]).await;
    assert!(on.status.success(), "{}", on.stderr);
    assert!(on.stderr.contains("power on: 1 done of 1"), "{}", on.stderr);
    assert!(on.stdout.contains("confirmed by the BMC"), "{}", on.stdout);
    // many at once: every node with a BMC (the one without is not asked)
    let other = crowbar(&daemon, &["nodes", "create", "n2.example.com"]).await;
    assert!(other.status.success(), "{}", other.stderr);
    let off = crowbar(&daemon, &["nodes", "power", "force-off", "--all"]).await;
    assert!(off.status.success(), "{}", off.stderr);
    assert!(
        off.stdout.contains("n1.example.com") && !off.stdout.contains("n2.example.com"),
        "{}",
        off.stdout
    );
    let status = crowbar(&daemon, &["nodes", "power", "n1.example.com", "status"]).await;
    assert_eq!(status.stdout, "n1.example.com: off\n");
    let refused = crowbar(&daemon, &["nodes", "power", "n2.example.com", "cycle"]).await;
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("has no BMC"), "{}", refused.stderr);
    let unclear = crowbar(&daemon, &["nodes", "power", "cycle"]).await;
    assert!(!unclear.status.success());
    assert!(
        unclear.stderr.contains("--all or --deployment"),
        "{}",
        unclear.stderr
    );
    let accepted = crowbar(&daemon, &["nodes", "bmc", "accept-cert", "n1.example.com"]).await;
    assert!(accepted.status.success(), "{}", accepted.stderr);
    assert!(accepted.stdout.contains("next certificate will be pinned"));
    let removed = crowbar(&daemon, &["nodes", "bmc", "remove", "n1.example.com"]).await;
    assert!(removed.status.success(), "{}", removed.stderr);
    let gone = crowbar(&daemon, &["nodes", "power", "n1.example.com", "status"]).await;
    assert!(!gone.status.success());
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);

    for (what, text) in [
        ("set", &enrolled.stdout),
        ("set", &enrolled.stderr),
        ("show", &shown.stdout),
        ("status", &status.stdout),
        ("daemon stdout", &daemon.stdout()),
        ("daemon stderr", &daemon.stderr()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password shows in {what}: {text}"
        );
    }
    let key = daemon.data_dir().join("bmc.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
}
