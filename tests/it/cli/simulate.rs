//! `crowbar simulate`: a seed replays the same outcome, failures are reported with what they
//! held back, other deployments in the database are left alone, the throwaway PostgreSQL
//! goes away, and a timeout says what was left.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, path::Path};

use crowbar::{
    domain::state::NodeRoleState::{self, *},
    simulate::draws::{Delay, Draws},
};
use serde_json::Value;

use super::T;
use crate::support::{
    daemon::{Outcome, run_crowbar},
    db::{TestDb, test_db},
    world,
};

/// `crowbar simulate <args> --database-url <db> --out <out>`.
async fn simulate(db: &TestDb, out: &Path, args: &[&str]) -> Outcome {
    let mut all = args.to_vec();
    all.extend([
        "--database-url",
        db.url.expose(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut command = vec!["simulate"];
    command.extend(all);
    run_crowbar(&command, &[], T).await
}

/// The report.json of a run that must have ended with `code`.
async fn report(db: &TestDb, args: &[&str], code: i32) -> Value {
    let out = tempfile::tempdir().unwrap();
    let run = simulate(db, out.path(), args).await;
    assert_eq!(
        run.status.code(),
        Some(code),
        "crowbar simulate {args:?}:\n{}{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let text = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("report.txt")).unwrap(),
        run.stdout
            .lines()
            .take_while(|l| !l.starts_with("report: "))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        "the text report is what stdout showed"
    );
    let svg = std::fs::read_to_string(out.path().join("throughput.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    serde_json::from_str(&text).unwrap()
}

/// The state of every noderole of a simulated deployment, by (node, role) label.
async fn states_of(db: &TestDb, deployment: &str) -> BTreeMap<(String, String), NodeRoleState> {
    let suffix = format!(".{deployment}");
    world::states(&db.pool)
        .await
        .into_iter()
        .filter_map(|(node, role, state)| {
            let node = node.strip_suffix(&suffix)?.to_string();
            let role = role.rsplit('-').next()?.to_string();
            Some(((node, role), state))
        })
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["node"].as_str().unwrap(),
                f["role"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_seed_replays_its_outcome_and_another_seed_fails_elsewhere() {
    let db = test_db().await;
    let args = |seed: &'static str| {
        [
            "--nodes",
            "30",
            "--roles",
            "4",
            "--fail-rate",
            "0.2",
            "--cap",
            "8",
            "--seed",
            seed,
            "--keep",
        ]
    };
    let first = report(&db, &args("7"), 0).await;
    let again = report(&db, &args("7"), 0).await;
    let other = report(&db, &args("8"), 0).await;
    assert_ne!(
        first["deployment"], again["deployment"],
        "each run has a deployment of its own"
    );

    // what the draws say must happen: on each node, the first role drawn to fail fails,
    // the roles before it are active and the ones after it blocked
    let draws = Draws {
        seed: 7,
        fail_rate: 0.2,
        delay: Delay::Fixed(std::time::Duration::ZERO),
    };
    let mut expected = BTreeMap::new();
    for node in 1..=30u64 {
        let first_failure = (1..=4u64).find(|&role| draws.draw(node, role).fail);
        for role in 1..=4u64 {
            let state = match first_failure {
                Some(f) if role == f => Error,
                Some(f) if role > f => Blocked,
                _ => Active,
            };
            expected.insert((format!("n{node}"), format!("r{role}")), state);
        }
    }
    let deployment = |report: &Value| report["deployment"].as_str().unwrap().to_string();
    let first_states = states_of(&db, &deployment(&first)).await;
    assert_eq!(first_states, expected);
    assert!(
        expected.values().any(|s| *s == Error),
        "a fail rate of 0.2 fails some"
    );
    assert_eq!(states_of(&db, &deployment(&again)).await, expected);

    // same seed: the same failures, the same noderoles blocked, the same fingerprint
    assert_eq!(first["failures"], again["failures"]);
    assert_eq!(first["fingerprint"], again["fingerprint"]);
    assert_eq!(first["states"], again["states"]);
    // another seed: other failures
    assert_ne!(
        names(&first["failures"]["noderoles"]),
        names(&other["failures"]["noderoles"])
    );
    assert_ne!(first["fingerprint"], other["fingerprint"]);
    assert_ne!(states_of(&db, &deployment(&other)).await, expected);
}

#[tokio::test]
async fn failures_are_reported_with_what_they_held_back_and_other_deployments_are_left_alone() {
    let db = test_db().await;
    // someone else's deployment, committed, with work waiting on the `test` jig
    world::load_barclamps(&db.pool).await;
    world::node(&db.pool, "other.example.com", true).await;
    world::deployment(&db.pool, "web").await;
    world::bind(&db.pool, "other.example.com", "test-library", "web").await;
    world::commit(&db.pool, "web").await;
    let before = world::states(&db.pool).await;
    assert_eq!(
        before,
        [("other.example.com".into(), "test-library".into(), Todo)]
    );

    let report = report(
        &db,
        &[
            "--nodes",
            "40",
            "--roles",
            "5",
            "--shape",
            "diamond",
            "--fail-rate",
            "0.15",
            "--seed",
            "3",
            "--delay",
            "uniform:0..20ms",
            "--cap",
            "16",
        ],
        0,
    )
    .await;
    assert_eq!(report["ending"], "converged");
    assert_eq!(report["setup"]["shape"], "diamond");
    assert_eq!(report["setup"]["delay"], "uniform:0..20ms");
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let states = &report["states"];
    assert_eq!(report["noderoles"], 200);
    assert_eq!(
        count(&states["active"])
            + count(&states["error"])
            + count(&states["blocked"])
            + count(&states["todo"]),
        200,
        "{states}"
    );
    assert_eq!(count(&states["transition"]), 0);

    let failures = &report["failures"];
    let listed = failures["noderoles"].as_array().unwrap();
    assert!(!listed.is_empty(), "a fail rate of 0.15 fails some");
    assert_eq!(count(&failures["failed"]), listed.len() as u64);
    assert_eq!(failures["failed"], states["error"]);
    assert_eq!(count(&failures["blocked"]), count(&states["blocked"]));
    assert_eq!(count(&failures["frozen"]), count(&states["todo"]));
    // what each failure held back is on its node, behind it in the diamond r1 → r2..r4 → r5
    for failure in listed {
        let role = failure["role"].as_str().unwrap();
        let blocked = names_of(&failure["blocked"]);
        match role {
            "r1" => assert_eq!(blocked, ["r2", "r3", "r4", "r5"]),
            "r5" => assert!(blocked.is_empty()),
            _ => assert_eq!(blocked, ["r5"]),
        }
        let frozen = names_of(&failure["frozen"]);
        assert!(
            frozen
                .iter()
                .all(|r| ["r3", "r4"].contains(&r.as_str()) && r.as_str() > role)
        );
    }
    // the roles most affected come first, and their figures add up
    let by_role = failures["by_role"].as_array().unwrap();
    let held = |r: &Value| count(&r["blocked"]) + count(&r["frozen"]);
    assert!(by_role.windows(2).all(|w| held(&w[0]) >= held(&w[1])));
    assert_eq!(
        by_role.iter().map(|r| count(&r["failed"])).sum::<u64>(),
        count(&failures["failed"])
    );
    assert_eq!(report["left_total"], 0);
    assert_eq!(report["left"], Value::Array(vec![]));

    // figures from the run records: every run that ran is in the throughput
    let ran = count(&report["runs"]["succeeded"]) + count(&report["runs"]["failed"]);
    assert_eq!(ran, count(&states["active"]) + count(&states["error"]));
    let throughput = &report["throughput"];
    let bucket = throughput["bucket_seconds"].as_f64().unwrap();
    let counted: f64 = throughput["runs_per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap() * bucket)
        .sum();
    assert_eq!(counted.round() as u64, ran);
    for wait in ["todo_wait", "queue_wait"] {
        let w = &report[wait];
        let (p50, p99, max) = (
            w["p50"].as_f64().unwrap(),
            w["p99"].as_f64().unwrap(),
            w["max"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{wait}: {w}");
    }

    // the other deployment was not touched, and the simulated one is gone
    assert_eq!(world::states(&db.pool).await, before);
    let deployments: Vec<String> = sqlx::query_scalar("SELECT name FROM deployments ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(deployments, ["system", "web"]);
    let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(nodes, 1);
}

fn names_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_timeout_reports_what_was_left_and_a_kept_deployment_never_runs_again() {
    let db = test_db().await;
    // every run takes ten minutes: nothing can finish before a one-second timeout
    let args = [
        "--nodes",
        "3",
        "--roles",
        "2",
        "--delay",
        "10m",
        "--timeout",
        "1s",
        "--seed",
        "1",
        "--keep",
    ];
    let report = report(&db, &args, 2).await;
    assert_eq!(report["ending"], "timed_out");
    assert_eq!(report["left_total"], 6);
    let left: Vec<String> = names(&report["left"]);
    assert_eq!(left, ["n1/r1", "n1/r2", "n2/r1", "n2/r2", "n3/r1", "n3/r2"]);
    assert_eq!(report["failures"]["failed"], 0);
    assert!(
        report["states"].get("active").is_none(),
        "{}",
        report["states"]
    );

    // kept, proposed: a later simulation's annealer leaves it alone
    let kept = report["deployment"].as_str().unwrap();
    let state: String = sqlx::query_scalar("SELECT state FROM deployments WHERE name = $1")
        .bind(kept)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(state, "proposed");
    // committed again, its work could run: a simulation refuses to start beside it
    world::commit(&db.pool, kept).await;
    let before = states_of(&db, kept).await;
    let out = tempfile::tempdir().unwrap();
    let refused = simulate(&db, out.path(), &["--nodes", "2", "--roles", "1"]).await;
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(&format!("deployment {kept} still has simulated work")),
        "{}",
        refused.stderr
    );
    assert_eq!(states_of(&db, kept).await, before);
}

#[tokio::test]
async fn without_a_database_it_runs_in_a_throwaway_postgres_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    // the private PostgreSQL may run as `postgres`, which must reach its directory
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("out");
    let run = run_crowbar(
        &[
            "simulate",
            "--nodes",
            "4",
            "--roles",
            "2",
            "--fail-rate",
            "0.5",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
        T,
    )
    .await;
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with("simulated 4 nodes x 2 roles (chain), fail rate 50%"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\noutcome fingerprint "),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("writing 4 nodes x 2 roles..."),
        "progress on stderr: {}",
        run.stderr
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["ending"], "converged");
    // only the report is left in the temporary directory
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["out"]);
}

#[tokio::test]
async fn bad_flags_are_refused_before_anything_starts() {
    let run = run_crowbar(&["simulate", "--delay", "normal:1s"], &[], T).await;
    assert_eq!(run.status.code(), Some(2), "clap's usage error");
    assert!(
        run.stderr.contains("unknown distribution `normal`"),
        "{}",
        run.stderr
    );
    let run = run_crowbar(&["simulate", "--fail-rate", "150%"], &[], T).await;
    assert!(run.stderr.contains("not between 0 and 1"), "{}", run.stderr);
    let run = run_crowbar(&["simulate", "--keep"], &[], T).await;
    assert!(run.stderr.contains("--database-url"), "{}", run.stderr);
    let help = run_crowbar(&["simulate", "--help"], &[], T).await;
    assert!(help.stdout.contains("uniform:MIN..MAX"), "{}", help.stdout);
    assert!(help.stdout.contains("exp:MEAN"), "{}", help.stdout);
}
