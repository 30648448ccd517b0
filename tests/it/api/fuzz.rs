//! The OpenAPI document is exact: a real OpenAPI fuzzer (Schemathesis, from the checkout's
//! `.venv/`, see `scripts/python-tools`) reads `/api/openapi.json` from a real daemon and
//! sends what the document allows and what it forbids to every operation in it, routes added
//! later included. Every check Schemathesis has must pass: no 5xx, answers as documented,
//! documented inputs accepted, undocumented ones refused, what a create links to exists.
//!
//! The daemon acts on nothing outside itself while it is fuzzed: it listens on loopback, its
//! data directory is fresh, scheduled probes are off (`--probe-interval 0`) and no run is
//! ever started (`--run-cap 0 --high-lane-cap 0`), so the addresses the fuzzer gives nodes
//! are never pinged nor reached over SSH, whatever it binds and commits; nor are its BMCs
//! (`--power-ops-cap 0`: power operations queue and never start; no power sweep).

use std::{process::Stdio, time::Duration};

use crate::support::{
    daemon::{Daemon, DaemonOptions},
    python,
};

const TOKEN: &str = "fuzz-admin-token-0123456789";
/// The fuzzer's own budget (it stops generating once it is spent) ...
const FUZZ_SECONDS: u64 = 150;
/// ... and ours, should it hang.
const TIMEOUT: Duration = Duration::from_secs(FUZZ_SECONDS + 120);

#[tokio::test]
async fn the_daemon_behaves_as_its_openapi_document_says() {
    let daemon = Daemon::start(
        DaemonOptions::default()
            .env("CROWBAR_ADMIN_TOKEN", TOKEN)
            .arg("--probe-interval")
            .arg("0")
            .arg("--run-cap")
            .arg("0")
            .arg("--high-lane-cap")
            .arg("0")
            .arg("--power-ops-cap")
            .arg("0")
            .arg("--power-sweep-interval")
            .arg("0"),
    )
    .await;
    let work = tempfile::tempdir().expect("a directory for the fuzzer's files");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/api/schemathesis.toml"
    );
    let mut fuzzer = tokio::process::Command::new(python::tool("schemathesis"));
    fuzzer
        .args(["--config-file", config, "--no-color"])
        .arg("run")
        .arg(format!("{}/api/openapi.json", daemon.url()))
        .arg("--header")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .args(["--checks", "all"])
        // The one check left out: it takes any 404 from an operation a create links to for
        // the created object missing, but those operations also answer 404 for an unknown
        // object their body names (`PATCH /api/v2/nodes/{node}` with `"deployment": 99`,
        // `PUT .../recall` of a snapshot that does not exist), as docs/api.md says they must.
        // That a created object is there is checked by the links test in openapi.rs and by
        // the operations' own tests.
        .args(["--exclude-checks", "ensure_resource_availability"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // bounded and reproducible: a fixed number of cases per operation, a time budget,
        // a fixed seed
        .args(["--max-examples", "20"])
        .args(["--max-time", &FUZZ_SECONDS.to_string()])
        .args(["--seed", "20261204"])
        .args(["--request-timeout", "30"])
        // `GET /api/v2/events` is an endless stream: a request only ends at its timeout
        // (tests/it/api/events.rs tests it)
        .args(["--exclude-path", "/api/v2/events"])
        // reading power connects to the BMC at the address a request enrolled now: the
        // fuzzer's made-up addresses are nobody's to contact (tests/it/api/bmc.rs tests it
        // against an emulator; tests/it/power_ops.rs the POST to this path)
        .args(["--exclude-path", "/api/v2/nodes/{node}/power"])
        .arg("--no-shrink")
        // the fuzzer keeps its example database in its working directory
        .current_dir(work.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(TIMEOUT, fuzzer.output())
        .await
        .expect("the fuzzer finished within its budget")
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the fuzzer found failures ({}):\n{report}\n--- daemon stderr (tail) ---\n{}",
        output.status,
        tail(&daemon.stderr(), 60)
    );
    // what it did, for `--nocapture`
    println!("{}", tail(&report, 30));
    assert!(
        !daemon.stderr().contains("panicked"),
        "{}",
        tail(&daemon.stderr(), 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
