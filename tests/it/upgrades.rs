//! Rolling upgrades (docs/operations.md): a daemon of the build before the newest migration
//! and one of this build share one database through that migration while a fleet converges;
//! the rules a build follows when another build migrated the database; and what
//! `crowbar migrate --check` tells an operator. Real daemons and the real CLI on a real
//! database.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};

use crate::support::{
    daemon::{Daemon, DaemonOptions, Outcome, run_crowbar},
    db::{database_before, drop_database, test_db},
    world::*,
};

/// crowbar built from the commit before the newest migration: `scripts/previous-build`
/// makes it (scripts/test runs it); `CROWBAR_PREVIOUS_BUILD` may name another.
fn previous_build() -> PathBuf {
    let path = std::env::var_os("CROWBAR_PREVIOUS_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/previous/crowbar"
            ))
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/previous-build (scripts/test does)",
        path.display()
    );
    path
}

/// This build's newest migration (the file names in migrations/).
fn newest_migration() -> i64 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split('_').next().unwrap().parse::<i64>().unwrap()
        })
        .max()
        .unwrap()
}

async fn check(url: &str) -> Outcome {
    run_crowbar(
        &["migrate", "--check"],
        &[("CROWBAR_DATABASE_URL", url)],
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test]
async fn a_build_serves_a_newer_schema_only_while_that_schema_allows_it() {
    let test = test_db().await;
    let known = newest_migration();
    // a newer build's migration, an expand step: older builds may still serve
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from a newer build', true, '\\x00', 0)",
    )
    .execute(&test.pool)
    .await
    .unwrap();
    let mut daemon =
        Daemon::start(DaemonOptions::default().env("CROWBAR_DATABASE_URL", test.url.expose()))
            .await;
    assert!(
        daemon.stderr().contains("serving without migrating"),
        "{}",
        daemon.stderr()
    );
    let plan = check(test.url.expose()).await;
    assert!(plan.status.success(), "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains(&format!("database schema: 9999; this build: {known}")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("may still serve it"),
        "{}",
        plan.stdout
    );
    // the daemon is listed with its build while it serves
    assert!(
        plan.stdout.contains(&format!("(schema {known}), seen")),
        "{}",
        plan.stdout
    );
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    let after = check(test.url.expose()).await;
    assert!(
        after.stdout.contains("daemons serving it: none"),
        "a stopped daemon leaves the list: {}",
        after.stdout
    );

    // a contract step of that newer build: this build may no longer serve
    sqlx::query("UPDATE schema_compat SET oldest_serving = 9999")
        .execute(&test.pool)
        .await
        .unwrap();
    let mut refused =
        Daemon::spawn(DaemonOptions::default().env("CROWBAR_DATABASE_URL", test.url.expose()));
    let status = refused
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the daemon refuses to start");
    assert!(!status.success());
    let stderr = refused.stderr();
    assert!(
        stderr.contains("newer than this crowbar")
            && stderr.contains("migration 9999")
            && stderr.contains(&format!("knows migrations up to {known}"))
            && stderr.contains("Run the newer crowbar"),
        "{stderr}"
    );
    let plan = check(test.url.expose()).await;
    assert!(!plan.status.success(), "{}", plan.stdout);
    assert!(plan.stdout.contains("may not serve it"), "{}", plan.stdout);
}

#[tokio::test]
async fn migrate_check_says_what_an_upgrade_applies_and_changes_nothing() {
    let test = test_db().await;
    let known = newest_migration();
    // named as the build's migrator names it (every migration is pending on an empty list)
    let description = crowbar::db::schema::pending(&[])
        .into_iter()
        .find(|m| m.version == known)
        .expect("the newest migration is the build's own")
        .description;
    let name = format!("{}_before_{known}", test.name);
    let (pool, url) = database_before(known, &name).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = count().await;
    let plan = check(&url).await;
    assert!(plan.status.success(), "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!(
            "database schema: {}; this build: {known}",
            known - 1
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("  {known} {description}: expand")),
        "{}",
        plan.stdout
    );
    assert_eq!(count().await, before, "--check changed nothing");

    let applied = run_crowbar(
        &["migrate"],
        &[("CROWBAR_DATABASE_URL", &url)],
        Duration::from_secs(60),
    )
    .await;
    assert!(applied.status.success(), "{}", applied.stderr);
    let plan = check(&url).await;
    assert!(
        plan.stdout.contains("nothing to apply: up to date"),
        "{}",
        plan.stdout
    );
    pool.close().await;
    drop_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_share_one_database_through_a_migration_while_a_fleet_converges() {
    const TOKEN: &str = "upgrade-test-token";
    const NODES: usize = 16;
    let test = test_db().await;
    let known = newest_migration();
    let name = format!("{}_upgrade", test.name);
    // the database as the previous build left it
    let (pool, url) = database_before(known, &name).await;
    let daemon = |options: DaemonOptions| DaemonOptions {
        program: options.program,
        ..DaemonOptions::sharing(&url, TOKEN, 4)
    };
    let mut old = Daemon::start(daemon(DaemonOptions::default().program(previous_build()))).await;
    let version = || async {
        sqlx::query_scalar::<_, i64>("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        version().await,
        known - 1,
        "the previous build knows one migration less"
    );

    // a fleet, committed through the previous build's API, converging on its runs
    load_barclamps(&pool).await;
    deployment(&pool, "upgrade").await;
    for i in 1..=NODES {
        let n = format!("n{i}");
        node(&pool, &n, true).await;
        bind(&pool, &n, "test-server", "upgrade").await;
        bind(&pool, &n, "test-client-client", "upgrade").await;
    }
    sqlx::query("UPDATE noderoles SET proposed_data = '{\"test\": {\"delay\": 0.3}}'")
        .execute(&pool)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (status, body) = old
        .call(
            TOKEN,
            Method::PUT,
            "/api/v2/deployments/upgrade/commit",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let finished = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM run_records WHERE outcome = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished().await < 4 {
        assert!(Instant::now() < deadline, "the previous build ran nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // this build starts: it applies the migration while the previous build keeps working
    let mut new = Daemon::start(daemon(DaemonOptions::default())).await;
    assert_eq!(version().await, known);
    let migrated_at: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM installed_on)::float8 FROM _sqlx_migrations WHERE version = $1",
    )
    .bind(known)
    .fetch_one(&pool)
    .await
    .unwrap();
    // both builds answer the API on the migrated schema
    for d in [&old, &new] {
        let (status, body) = d.call(TOKEN, Method::GET, "/api/v2/anneal", None).await;
        assert!(status.is_success(), "{body}");
        let (status, body) = d
            .call(
                TOKEN,
                Method::PUT,
                "/api/v2/nodes/n1",
                Some(serde_json::json!({"description": "upgraded"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    converged(&pool, "upgrade", Duration::from_secs(180)).await;
    // both builds ran runs after the migration
    let workers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT split_part(worker, ':', 2) FROM run_records
          WHERE outcome = 'succeeded' AND extract(epoch FROM finished_at) > $1",
    )
    .bind(migrated_at)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (which, d) in [("previous", &old), ("this", &new)] {
        assert!(
            workers.contains(&d.pid().to_string()),
            "the {which} build ran nothing after the migration: {workers:?}"
        );
    }
    let runs = executed_runs(&pool).await;
    assert_eq!(runs.len() as i64, total, "one run per noderole");
    assert!(runs.iter().all(|r| r.4 == "succeeded"));
    assert_one_per_node_within_cap(&runs, 4);
    for d in [&mut old, &mut new] {
        assert!(d.stop().await.success(), "{}", d.stderr());
    }
    pool.close().await;
    drop_database(&name).await;
}
