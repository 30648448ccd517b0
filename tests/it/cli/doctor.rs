//! `crowbar doctor` on this machine and on machines made to lack something: a PATH without
//! the programs, a PostgreSQL bin directory that is not there, a taken port, databases
//! behind, at and ahead of this binary's migrations.

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use super::T;
use crate::support::{
    daemon::{Daemon, DaemonOptions, DataDir, Outcome, run_crowbar},
    db::test_db,
};

/// An address nothing listens on right now.
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `crowbar doctor --data-dir <data> --listen <free address> <args>` with `env`.
async fn doctor(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let listen = free_address().to_string();
    let mut all = vec![
        "doctor",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        listen.as_str(),
    ];
    all.extend_from_slice(args);
    let out = run_crowbar(&all, env, T).await;
    assert!(!out.stdout.contains("panicked"), "{}", out.stdout);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out
}

/// The lines that start with `status` (`ok`, `warn`, `FAIL`, `skip`).
fn lines<'a>(out: &'a Outcome, status: &str) -> Vec<&'a str> {
    let prefix = format!("{status:<6}");
    out.stdout
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

/// The newest migration this binary carries.
fn latest_migration() -> i64 {
    crowbar::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap()
}

#[tokio::test]
async fn doctor_passes_on_this_machine_and_names_the_postgresql_version() {
    let data = DataDir::new();
    let out = doctor(data.path(), &[], &[]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(lines(&out, "FAIL").is_empty(), "{}", out.stdout);
    let binaries = lines(&out, "ok")
        .into_iter()
        .find(|l| l.starts_with("ok    PostgreSQL server binaries: /"))
        .unwrap_or_else(|| panic!("no ok line for the binaries:\n{}", out.stdout));
    assert!(binaries.contains("(PostgreSQL 1"), "{binaries}");
    assert!(
        out.stdout.contains("skip  demo: --demo not given"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("everything `crowbar serve` needs is here"),
        "{}",
        out.stdout
    );
    // doctor changes nothing: not even the data directory is created
    assert!(!data.path().exists());
}

#[tokio::test]
async fn doctor_on_a_machine_missing_a_package_names_it_and_the_command_that_installs_it() {
    let data = DataDir::new();
    let out = doctor(data.path(), &["--postgres-bin-dir", "/nonexistent"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let fail = lines(&out, "FAIL");
    assert_eq!(fail.len(), 1, "{}", out.stdout);
    assert!(
        fail[0].starts_with("FAIL  PostgreSQL server binaries: none found"),
        "{}",
        fail[0]
    );
    assert!(fail[0].contains("/nonexistent"), "{}", fail[0]);
    assert!(
        fail[0].contains("— fix: apt-get install postgresql")
            || fail[0].contains("— fix: sudo apt-get install postgresql"),
        "{}",
        fail[0]
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .contains("1 check failed"),
        "{}",
        out.stdout
    );

    // the demo's programs, on a PATH without them: a warning each, with its package (the
    // demo falls back to simulated nodes, so nothing fails)
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let out = doctor(data.path(), &["--demo"], &[("PATH", path)]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let warn = lines(&out, "warn").join("\n");
    for (program, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("ssh-keygen", "openssh-client"),
        ("jq", "jq"),
    ] {
        assert!(
            warn.contains(&format!(
                "warn  demo: {program}: not found on PATH (package {package})"
            )),
            "{warn}"
        );
        assert!(
            warn.contains(&format!("apt-get install {package}")),
            "{warn}"
        );
    }
    assert!(
        warn.contains("warn  ipmitool (optional: power control through IPMI BMCs)"),
        "{warn}"
    );
}

#[tokio::test]
async fn doctor_fails_when_the_listen_address_is_taken() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let data = DataDir::new();
    let out = run_crowbar(
        &[
            "doctor",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            &addr,
        ],
        &[],
        T,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let fail = lines(&out, "FAIL");
    assert_eq!(fail.len(), 1, "{}", out.stdout);
    assert!(
        fail[0].starts_with(&format!("FAIL  listen address: {addr} is taken")),
        "{}",
        fail[0]
    );
    assert!(fail[0].contains("pass --listen ADDR:PORT"), "{}", fail[0]);
    drop(held);
}

#[tokio::test]
async fn doctor_compares_a_databases_migrations_with_its_own() {
    let data = DataDir::new();
    let db = test_db().await;
    let latest = latest_migration();

    // migrated: up to date
    let out = doctor(data.path(), &["--database-url", db.url.expose()], &[]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let schema = lines(&out, "ok")
        .into_iter()
        .find(|l| l.starts_with("ok    database schema: "))
        .unwrap_or_else(|| panic!("no schema line:\n{}", out.stdout));
    assert!(
        schema.ends_with(&format!("up to date (version {latest})")),
        "{schema}"
    );
    assert!(
        out.stdout.contains("skip  PostgreSQL server binaries"),
        "no private PostgreSQL with a URL: {}",
        out.stdout
    );

    // empty: every migration pending, which `serve` applies (a warning, not a failure)
    let empty = format!("{}_empty", db.name);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {empty}")))
        .execute(&db.pool)
        .await
        .unwrap();
    let empty_url = db.url.expose().replace(&db.name, &empty);
    let out = doctor(data.path(), &["--database-url", &empty_url], &[]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let pending = crowbar::db::MIGRATOR.iter().count();
    let warn = lines(&out, "warn").join("\n");
    assert!(
        warn.contains(&format!("{pending} migrations pending")),
        "{}",
        out.stdout
    );
    assert!(warn.contains("`crowbar migrate`"), "{warn}");

    // migrated by a newer crowbar: this binary must not run on it
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'from a newer crowbar', true, '\\x00', 0)",
    )
    .bind(latest + 1)
    .execute(&db.pool)
    .await
    .unwrap();
    let out = doctor(data.path(), &["--database-url", db.url.expose()], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let fail = lines(&out, "FAIL").join("\n");
    assert!(fail.starts_with("FAIL  database schema"), "{}", out.stdout);
    assert!(
        fail.contains(&format!("does not know ({})", latest + 1)),
        "{fail}"
    );
    assert!(fail.contains("newer crowbar"), "{fail}");
}

#[tokio::test]
async fn doctor_never_prints_the_database_password() {
    let data = DataDir::new();
    let nowhere = free_address();
    let url = format!("postgres://crowbar:s3cret-pw@{nowhere}/crowbar");
    let out = doctor(data.path(), &["--database-url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let fail = lines(&out, "FAIL").join("\n");
    assert!(
        fail.contains(&format!("cannot reach PostgreSQL at {nowhere}/crowbar")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("s3cret-pw"), "{}", out.stdout);
    assert!(!out.stderr.contains("s3cret-pw"), "{}", out.stderr);
}

#[tokio::test]
async fn doctor_reads_the_schema_of_a_running_private_postgresql() {
    let mut daemon = Daemon::start(DaemonOptions::default()).await;
    let out = doctor(daemon.data_dir(), &[], &[]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "ok    database schema: the private PostgreSQL: up to date (version {})",
            latest_migration()
        )),
        "{}",
        out.stdout
    );
    assert!(daemon.stop().await.success());
    // stopped: left alone, not started
    let out = doctor(daemon.data_dir(), &[], &[]).await;
    assert!(
        out.stdout
            .contains("skip  database schema: the private PostgreSQL is not running"),
        "{}",
        out.stdout
    );
    assert_eq!(daemon.postmaster_pid(), None);
}

#[tokio::test]
async fn doctor_says_where_the_cluster_of_a_private_data_directory_lives() {
    let home = tempfile::Builder::new()
        .prefix("crowbar-it-home-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = home.path().join("var");
    let out = doctor(&data, &[], &[]).await;
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let cluster = lines(&out, "ok")
        .into_iter()
        .find(|l| l.starts_with("ok    private PostgreSQL cluster: "))
        .unwrap_or_else(|| panic!("no cluster line:\n{}", out.stdout))
        .to_string();
    if nix::unistd::geteuid().is_root() {
        // `postgres` cannot enter the 0700 directory: the cluster lives elsewhere
        assert!(
            cluster.contains(crowbar::pg::RELOCATED_CLUSTERS),
            "{cluster}"
        );
        assert!(cluster.contains("cannot reach"), "{cluster}");
    } else {
        assert!(
            cluster.contains(&data.join("postgres").display().to_string()),
            "{cluster}"
        );
    }
}
