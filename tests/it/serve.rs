//! The daemon's lifecycle with real processes: zero-configuration start on a private
//! PostgreSQL, restarts, signals, crashes, an external database, and the ways start can fail.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::ExitStatus,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, Uid, User},
};
use sqlx::{Connection, PgConnection};

use crate::support::{
    daemon::{
        Daemon, DaemonOptions, DataDir, Outcome, http_client, postmaster_pid, processes_in,
        run_crowbar, wait_until_gone,
    },
    db::test_db,
};

/// Long enough for PostgreSQL to stop or start under a loaded test run.
const SETTLE: Duration = Duration::from_secs(30);
const LOGGED_INITDB: &str = "initializing the private PostgreSQL cluster";

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// An error exit that explains itself: non-zero, `error:` first, no panic or backtrace.
fn assert_clean_failure(status: Option<ExitStatus>, stderr: &str) {
    let status = status.unwrap_or_else(|| panic!("crowbar did not exit; stderr:\n{stderr}"));
    assert!(
        !status.success(),
        "crowbar should have failed; stderr:\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a plain error exit, not a signal: {stderr}"
    );
    assert!(stderr.contains("error: "), "no error message:\n{stderr}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE", "Stack backtrace"] {
        assert!(!stderr.contains(noise), "`{noise}` in stderr:\n{stderr}");
    }
}

fn assert_nothing_left(dir: &Path) {
    let left = processes_in(dir);
    assert!(
        left.is_empty(),
        "processes left for {}: {left:#?}",
        dir.display()
    );
}

#[tokio::test]
async fn zero_config_runs_a_private_postgres_on_a_socket_only() {
    let mut daemon = Daemon::start(DaemonOptions::default()).await;

    assert_eq!(daemon.get("/healthz").await.status(), 200);
    assert_eq!(daemon.get("/readyz").await.status(), 200);
    // --listen 127.0.0.1:0: the daemon tells the admin the port it really got
    assert_ne!(daemon.addr().port(), 0);
    assert!(
        daemon
            .stderr()
            .contains(&format!("ready on {}", daemon.url())),
        "{}",
        daemon.stderr()
    );

    let cluster = daemon.data_dir().join("postgres");
    assert!(
        cluster.join("PG_VERSION").is_file(),
        "no cluster under the data dir"
    );
    let socket_dir = cluster.join("run");
    let mode = fs::metadata(&socket_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "socket directory mode {mode:o}");
    assert!(socket_dir.join(".s.PGSQL.5432").exists());

    let mut db = connect(&daemon.postgres_url()).await;
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(listen, "", "the private PostgreSQL must not listen on TCP");
    db.close().await.unwrap();

    let postmaster = daemon.postmaster_pid().expect("postmaster.pid");
    let status = fs::read_to_string(format!("/proc/{postmaster}/status")).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    let expected = if Uid::effective().is_root() {
        User::from_name("postgres").unwrap().unwrap().uid.as_raw()
    } else {
        Uid::effective().as_raw()
    };
    assert_eq!(uids, vec![expected; 4], "real, effective, saved and fs uid");

    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
}

#[tokio::test]
async fn data_survives_a_restart_without_a_second_initdb() {
    let dir = DataDir::new();
    let mut first = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    let mut db = connect(&first.postgres_url()).await;
    sqlx::query("INSERT INTO installation (key, value) VALUES ('restart-test', '{\"n\": 1}')")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    assert!(first.stop().await.success(), "{}", first.stderr());
    assert!(first.stderr().contains(LOGGED_INITDB));

    let mut second = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(!second.stderr().contains(LOGGED_INITDB), "initdb ran again");
    let mut db = connect(&second.postgres_url()).await;
    let value: serde_json::Value =
        sqlx::query_scalar("SELECT value FROM installation WHERE key = 'restart-test'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(value, serde_json::json!({"n": 1}));
    db.close().await.unwrap();
    assert!(second.stop().await.success(), "{}", second.stderr());
}

async fn stops_cleanly_on(signal: Signal) {
    let mut daemon = Daemon::start(DaemonOptions::default()).await;
    assert!(daemon.postmaster_pid().is_some());
    let status = daemon.stop_with(signal).await;
    assert!(
        status.success(),
        "exit {status} on {signal}:\n{}",
        daemon.stderr()
    );
    // crowbar waits for its PostgreSQL: nothing is left the moment it has exited
    assert_nothing_left(daemon.data_dir());
    let stderr = daemon.stderr();
    assert!(stderr.contains("private PostgreSQL stopped"), "{stderr}");
    assert!(
        daemon.postmaster_pid().is_none(),
        "postmaster.pid left behind"
    );
}

#[tokio::test]
async fn sigterm_stops_the_daemon_and_its_postgres() {
    stops_cleanly_on(Signal::SIGTERM).await;
}

#[tokio::test]
async fn ctrl_c_stops_the_daemon_and_its_postgres() {
    stops_cleanly_on(Signal::SIGINT).await;
}

#[tokio::test]
async fn a_killed_daemon_takes_its_postgres_along_and_restarts() {
    let dir = DataDir::new();
    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    let postmaster = daemon.postmaster_pid().unwrap();
    daemon.kill();
    if let Err(left) = wait_until_gone(dir.path(), SETTLE).await {
        panic!("postgres {postmaster} outlived its crowbar: {left:#?}");
    }

    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert_eq!(daemon.get("/readyz").await.status(), 200);

    // A supervisor restarts at once, while the old PostgreSQL may still be shutting down.
    for _ in 0..3 {
        daemon.kill();
        daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
        assert_eq!(daemon.get("/readyz").await.status(), 200);
    }
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    assert_nothing_left(dir.path());
}

#[tokio::test]
async fn a_hard_crash_of_daemon_and_postgres_recovers_on_the_next_start() {
    let dir = DataDir::new();
    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    let mut db = connect(&daemon.postgres_url()).await;
    sqlx::query("INSERT INTO installation (key, value) VALUES ('crash-test', 'true')")
        .execute(&mut db)
        .await
        .unwrap();
    let postmaster = daemon.postmaster_pid().unwrap();
    // Both die at once (think OOM killer): the pid file stays, backends linger briefly.
    kill(Pid::from_raw(postmaster), Signal::SIGKILL).unwrap();
    daemon.kill();
    drop(db);
    assert_eq!(
        postmaster_pid(dir.path()),
        Some(postmaster),
        "pid file left behind"
    );

    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    let mut db = connect(&daemon.postgres_url()).await;
    let kept: bool =
        sqlx::query_scalar("SELECT value::bool FROM installation WHERE key = 'crash-test'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(kept, "a committed row was lost in the crash");
    db.close().await.unwrap();
    assert!(
        daemon.stderr().contains("stale PostgreSQL pid file"),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
}

#[tokio::test]
async fn stale_pid_files_do_not_block_a_start() {
    let dir = DataDir::new();
    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());

    let dead_pid = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        pid
    };
    let live_but_not_postgres = std::process::id() as i32;
    for pid in [dead_pid, live_but_not_postgres] {
        fabricate_pid_file(dir.path(), pid);
        let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
        let stderr = daemon.stderr();
        assert!(
            stderr.contains("stale PostgreSQL pid file"),
            "pid {pid}: {stderr}"
        );
        assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    }
}

/// A postmaster.pid as PostgreSQL writes it, for a server that is no more.
fn fabricate_pid_file(data_dir: &Path, pid: i32) {
    let cluster = data_dir.join("postgres");
    let text = format!(
        "{pid}\n{}\n1700000000\n5432\n{}\n\n  5432001         0\nready   \n",
        cluster.display(),
        cluster.join("run").display()
    );
    let path = cluster.join("postmaster.pid");
    fs::write(&path, text).unwrap();
    if Uid::effective().is_root() {
        let postgres = User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&path, Some(postgres.uid), Some(postgres.gid)).unwrap();
    }
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let dir = DataDir::new();
    let mut first = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    let postmaster = first.postmaster_pid().unwrap();

    let mut second = Daemon::spawn(DaemonOptions::default().data_dir(dir.path()));
    let status = second.wait_exit(SETTLE).await;
    let stderr = second.stderr();
    assert_clean_failure(status, &stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid {postmaster}")), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");

    // the first one is unharmed
    assert_eq!(first.postmaster_pid(), Some(postmaster));
    assert_eq!(first.get("/readyz").await.status(), 200);
    let mut db = connect(&first.postgres_url()).await;
    sqlx::query("SELECT 1").execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    assert!(first.stop().await.success(), "{}", first.stderr());
}

#[tokio::test]
async fn an_external_database_url_needs_no_private_cluster() {
    let db = test_db().await;
    let mut daemon =
        Daemon::start(DaemonOptions::default().env("CROWBAR_DATABASE_URL", db.url.expose())).await;
    assert_eq!(daemon.get("/readyz").await.status(), 200);
    assert!(
        !daemon.data_dir().join("postgres").exists(),
        "a private cluster was created although a database URL was given"
    );
    let left = processes_in(daemon.data_dir());
    assert!(
        left.iter().all(|p| p.pid == daemon.pid()),
        "only crowbar itself may run: {left:#?}"
    );
    assert!(!daemon.stderr().contains("private PostgreSQL"));
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    assert!(crowbar::db::ready(&db.pool).await);
}

#[tokio::test]
async fn missing_postgres_binaries_say_what_to_install() {
    let empty = DataDir::new();
    fs::create_dir_all(empty.path()).unwrap();
    let bin_dir = empty.path().to_string_lossy().into_owned();
    for options in [
        DaemonOptions::default()
            .arg("--postgres-bin-dir")
            .arg(&bin_dir),
        DaemonOptions::default().env("CROWBAR_POSTGRES_BIN_DIR", &bin_dir),
    ] {
        let mut daemon = Daemon::spawn(options);
        let status = daemon.wait_exit(SETTLE).await;
        let stderr = daemon.stderr();
        assert_clean_failure(status, &stderr);
        assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
        assert!(stderr.contains("--database-url"), "{stderr}");
        assert!(stderr.contains(&bin_dir), "{stderr}");
        assert!(!daemon.data_dir().join("postgres").exists());
        assert!(stderr.lines().count() <= 6, "keep it short:\n{stderr}");
    }
}

#[tokio::test]
async fn an_unreachable_database_url_is_named_without_its_password() {
    let mut daemon =
        Daemon::spawn(DaemonOptions::default().arg("--database-url").arg(
            "postgres://crowbar:s3cret-pw@localhost/crowbar?host=/nonexistent/crowbar-socket",
        ));
    let status = daemon.wait_exit(SETTLE).await;
    let stderr = daemon.stderr();
    assert_clean_failure(status, &stderr);
    assert!(stderr.contains("/nonexistent/crowbar-socket"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked:\n{stderr}"
    );
    assert!(!daemon.data_dir().join("postgres").exists());
}

#[tokio::test]
async fn migrate_on_the_private_cluster_is_repeatable() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_string_lossy().into_owned();
    // an explicit bin dir (what operators use to pick a version) works too
    let bin_dir = crowbar::pg::find_binaries().expect("PostgreSQL is installed");
    let bin_dir = bin_dir.to_string_lossy();
    for _ in 0..2 {
        let Outcome {
            status,
            stdout,
            stderr,
        } = run_crowbar(
            &["migrate", "--data-dir", &data_dir],
            &[("CROWBAR_POSTGRES_BIN_DIR", &bin_dir)],
            Duration::from_secs(90),
        )
        .await;
        assert!(status.success(), "migrate failed:\n{stderr}");
        assert!(stdout.contains("migrations applied"), "{stdout}");
        assert_nothing_left(dir.path());
    }
    // and the daemon starts on what migrate left
    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
}

#[tokio::test]
async fn a_taken_port_fails_with_a_hint_and_leaves_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut daemon = Daemon::spawn(DaemonOptions::default().listen(&addr));
    let status = daemon.wait_exit(SETTLE).await;
    let stderr = daemon.stderr();
    assert_clean_failure(status, &stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
    assert_nothing_left(daemon.data_dir());
    drop(taken);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut daemon = Daemon::start(DaemonOptions::default().arg("--log-format").arg("json")).await;
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
    let stderr = daemon.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ready = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("crowbar is ready"))
        })
        .unwrap_or_else(|| panic!("no ready line in {stderr}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["listen"], daemon.addr().to_string());
    // stdout holds only the one-time notice of the generated admin token
    assert!(
        !daemon.stdout().contains("\"level\""),
        "logs belong on stderr: {}",
        daemon.stdout()
    );
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let mut daemon =
        Daemon::start(DaemonOptions::default().arg("--shutdown-grace").arg("1s")).await;
    // Hold the migrations table so that /readyz hangs inside the daemon.
    let mut blocker = connect(&daemon.postgres_url()).await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let client = http_client(Duration::from_secs(120));
    let hanging = tokio::spawn(client.get(format!("{}/readyz", daemon.url())).send());
    let mut watcher = connect(&daemon.postgres_url()).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watcher);

    // Without the grace the daemon would wait for the request (the 60 s request timeout).
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(SETTLE).await;
    let stderr = daemon.stderr();
    let status = status.unwrap_or_else(|| panic!("shutdown was not bounded:\n{stderr}"));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("after the shutdown grace"), "{stderr}");
    assert_nothing_left(daemon.data_dir());
    drop(blocker);
    let _ = hanging.await;
}

#[tokio::test]
async fn a_signal_during_the_first_start_stops_cleanly_and_keeps_the_cluster() {
    let dir = DataDir::new();
    let mut daemon = Daemon::spawn(DaemonOptions::default().data_dir(dir.path()));
    let deadline = Instant::now() + SETTLE;
    while !daemon.stderr().contains(LOGGED_INITDB) {
        assert!(
            daemon.try_wait().is_none(),
            "exited early:\n{}",
            daemon.stderr()
        );
        assert!(Instant::now() < deadline, "initdb never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = daemon.stop().await;
    let stderr = daemon.stderr();
    assert!(status.success(), "exit {status}:\n{stderr}");
    assert!(!stderr.contains("crowbar is ready"), "{stderr}");
    assert_nothing_left(dir.path());

    let mut daemon = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(!daemon.stderr().contains(LOGGED_INITDB), "initdb ran again");
    assert!(daemon.stop().await.success(), "{}", daemon.stderr());
}

/// As root, files of the cluster that its `postgres` user could replace with links (its
/// socket directory, its log) are never chowned or chmodded through them: a planted link
/// fails the start, saying so, and its target keeps its owner and mode.
#[tokio::test]
async fn links_planted_in_the_cluster_fail_the_start_and_hand_nothing_over() {
    use std::os::unix::fs::{MetadataExt, symlink};
    let dir = DataDir::new();
    let mut first = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(first.stop().await.success(), "{}", first.stderr());

    let victim = tempfile::tempdir().unwrap();
    fs::set_permissions(victim.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let victim_file = victim.path().join("precious");
    fs::write(&victim_file, "root's").unwrap();
    let before = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.uid(), m.mode() & 0o777)
    };
    let (dir_before, file_before) = (before(victim.path()), before(&victim_file));
    let cluster = dir.path().join("postgres");
    for (planted, target) in [
        (cluster.join("run"), victim.path()),
        (cluster.join("postgres.log"), victim_file.as_path()),
    ] {
        let moved = planted.with_extension("moved");
        fs::rename(&planted, &moved).unwrap();
        symlink(target, &planted).unwrap();
        let mut daemon = Daemon::spawn(DaemonOptions::default().data_dir(dir.path()));
        let status = daemon.wait_exit(SETTLE).await;
        let stderr = daemon.stderr();
        assert_clean_failure(status, &stderr);
        assert!(stderr.contains("symbolic link"), "{stderr}");
        assert_eq!(before(victim.path()), dir_before, "{}", planted.display());
        assert_eq!(before(&victim_file), file_before, "{}", planted.display());
        assert_eq!(fs::read_to_string(&victim_file).unwrap(), "root's");
        fs::remove_file(&planted).unwrap();
        fs::rename(&moved, &planted).unwrap();
    }
    let mut again = Daemon::start(DaemonOptions::default().data_dir(dir.path())).await;
    assert!(again.stop().await.success(), "{}", again.stderr());
}
