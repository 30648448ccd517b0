//! Annealer throughput: converge N nodes × M chained roles on the `noop` jig and print
//! noderoles/second, next to pgbench's simple-update rate on the same PostgreSQL server
//! measured in the same run, and the daemon's peak memory.
//!
//!     cargo bench --bench anneal -- [--nodes 1000] [--roles 10] [--cap 500] [--daemons 1]
//!                                     [--statements 10] [--explain 15]
//!
//! Setup (nodes, bindings) is written with bulk SQL and is not timed; the timer runs from
//! the commit of the deployment, once the daemons are serving, until `/api/v2/anneal`
//! would say `finished`. The annealer runs in this process unless `--daemons N` starts N
//! real `crowbar serve` processes.
//! `--statements N` loads pg_stat_statements and prints the N statements that took the
//! most server time while converging. `--explain MS` loads auto_explain and prints, summed
//! by statement and the indexes its plan used, the plans of statements slower than MS
//! (setup and pgbench included) with the rows their filters threw away.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crowbar::{
    annealer::{AnnealerSettings, Engine},
    db::{self, events::Actor, keys::Key},
    hooks::Hooks,
    jig::JigRegistry,
    pg::ManagedPostgres,
};
use tokio_util::sync::CancellationToken;

mod support;

struct Args {
    nodes: i64,
    roles: i64,
    cap: i64,
    daemons: usize,
    pgbench_seconds: u64,
    statements: usize,
    explain_ms: usize,
}

fn main() -> anyhow::Result<()> {
    if !support::under_cargo_bench() {
        return Ok(());
    }
    let args = Args {
        nodes: support::flag("--nodes", 1000),
        roles: support::flag("--roles", 10),
        cap: support::flag("--cap", 500),
        daemons: support::flag("--daemons", 0),
        pgbench_seconds: support::flag("--pgbench-seconds", 10),
        statements: support::flag("--statements", 0),
        explain_ms: support::flag("--explain", 0),
    };
    let mut libraries = Vec::new();
    let mut server_settings = Vec::new();
    if args.statements > 0 {
        libraries.push("pg_stat_statements");
        server_settings.push((
            "pg_stat_statements.track_planning".to_string(),
            "on".to_string(),
        ));
    }
    if args.explain_ms > 0 {
        libraries.push("auto_explain");
        server_settings.extend([
            (
                "auto_explain.log_min_duration".to_string(),
                format!("{}ms", args.explain_ms),
            ),
            ("auto_explain.log_analyze".to_string(), "on".to_string()),
        ]);
    }
    if !libraries.is_empty() {
        server_settings.push(("shared_preload_libraries".to_string(), libraries.join(",")));
    }
    if std::env::var_os("RUST_LOG").is_some() {
        crowbar::telemetry::init(crowbar::telemetry::LogFormat::Text);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(support::with_postgres_settings(
            server_settings,
            |pg, _| async move {
                let result = bench(&args, &pg).await;
                (pg, result)
            },
        ))
}

async fn bench(args: &Args, pg: &ManagedPostgres) -> anyhow::Result<()> {
    let tps = pgbench(pg, args.pgbench_seconds)?;
    println!(
        "pgbench simple-update: {tps:.0} tps (8 clients, {}s)",
        args.pgbench_seconds
    );

    let pool = support::prepared_pool(pg, args.roles, 32).await?;
    let setup = Instant::now();
    support::populate(&pool, args.nodes, args.roles).await?;
    let total = args.nodes * args.roles;
    println!(
        "setup: {} nodes x {} roles = {total} noderoles in {:.1}s (bulk SQL, not timed below)",
        args.nodes,
        args.roles,
        setup.elapsed().as_secs_f64()
    );

    let settings = AnnealerSettings {
        run_cap: args.cap,
        queue_batch: 5000,
        ..AnnealerSettings::default()
    };
    let shutdown = CancellationToken::new();
    let mut daemons = Vec::new();
    let recorder = crowbar::telemetry::metrics::install();
    let engine = if args.daemons == 0 {
        Some(Engine::start(
            pool.clone(),
            &settings,
            JigRegistry::builtin(),
            Hooks::default(),
            Duration::from_secs(5),
            shutdown.clone(),
        ))
    } else {
        for _ in 0..args.daemons {
            daemons.push(spawn_daemon(pg, args.cap)?);
        }
        None
    };
    // the engine here holds its runner's lease; a real daemon its power worker's too
    let leases = match args.daemons {
        0 => 1,
        n => 2 * n as i64,
    };
    wait_until_serving(&pool, leases).await?;

    if args.statements > 0 {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pool)
            .await?;
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&pool)
            .await?;
    }
    let cpu_before = (cpu_seconds_of_tree(pg.pid()), own_cpu_seconds(&daemons));
    let start = Instant::now();
    let mut tx = pool.begin().await?;
    db::deployments::commit(&mut tx, &Key::from("bench"), &Actor::token("bench")).await?;
    tx.commit().await?;
    let mut last_report = Instant::now();
    loop {
        let status = db::anneal::status(&pool, Some("bench")).await?;
        if status.status == "finished" {
            break;
        }
        if status.status == "failed" {
            anyhow::bail!("a noop run failed: {status:?}");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {:>5.1}s {:?}",
                start.elapsed().as_secs_f64(),
                status.counts
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = total as f64 / elapsed;
    let server_cpu = cpu_seconds_of_tree(pg.pid()) - cpu_before.0;
    let daemon_cpu = own_cpu_seconds(&daemons) - cpu_before.1;
    let memory = match &engine {
        Some(_) => peak_rss_kib(std::process::id()),
        None => daemons.iter().map(|d| peak_rss_kib(d.id())).max().flatten(),
    };
    shutdown.cancel();
    if let Some(engine) = engine {
        engine.tracker.wait().await;
    }
    for mut d in daemons {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = d.wait();
    }
    println!(
        "converged {total} noderoles in {elapsed:.2}s: {rate:.0} noderoles/s, {:.3} x pgbench's rate",
        rate / tps
    );
    match memory {
        Some(kib) => println!("daemon peak memory: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("daemon peak memory: unknown"),
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "cpu while converging: PostgreSQL {server_cpu:.1} s, daemon{} {daemon_cpu:.1} s, \
         of {:.1} s on {cores} cores ({:.0} % busy)",
        if args.daemons == 0 {
            " (and this bench)"
        } else {
            "s"
        },
        elapsed * cores,
        (server_cpu + daemon_cpu) / (elapsed * cores) * 100.0
    );
    if args.daemons == 0 {
        print_phases(&recorder.render(), elapsed);
    }
    if args.statements > 0 {
        print_statements(&pool, args.statements, elapsed).await?;
    }
    if args.explain_ms > 0 {
        let log = std::fs::read_to_string(pg.dir().join("postgres.log"))?;
        print_slow_plans(&log, args.explain_ms);
    }
    Ok(())
}

/// The plans auto_explain logged (statements slower than `ms`), summed by statement and the
/// indexes its plan used, with the rows its filters read and threw away: a statement that
/// reads all BLOCKED noderoles to find a few shows up here with millions removed. These
/// are the plans PostgreSQL chose during the anneal, on the statistics it had then.
fn print_slow_plans(log: &str, ms: usize) {
    #[derive(Default)]
    struct Sum {
        plans: usize,
        ms: f64,
        removed: u64,
    }
    let mut sums: std::collections::BTreeMap<(String, String), Sum> = Default::default();
    for entry in log.split(" LOG:  duration: ").skip(1) {
        let Some(took) = entry
            .split_once(" ms")
            .and_then(|(n, _)| n.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let Some(query) = entry
            .lines()
            .find_map(|l| l.trim().strip_prefix("Query Text: "))
        else {
            continue;
        };
        let query: String = query.chars().take(70).collect();
        let mut indexes: Vec<&str> = entry
            .lines()
            .filter_map(|l| l.split_once(" using ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let removed: u64 = entry
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Rows Removed by Filter: "))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum();
        let sum = sums.entry((query, indexes.join(" "))).or_default();
        sum.plans += 1;
        sum.ms += took;
        sum.removed += removed;
    }
    let mut sums: Vec<_> = sums.into_iter().collect();
    sums.sort_by(|a, b| b.1.ms.total_cmp(&a.1.ms));
    println!("plans of statements slower than {ms} ms (auto_explain), by statement and indexes:");
    println!("   total s  plans  rows removed by filters  statement [indexes]");
    for ((query, indexes), sum) in sums.into_iter().take(15) {
        println!(
            "{:>10.2} {:>6} {:>24}  {query} [{indexes}]",
            sum.ms / 1000.0,
            sum.plans,
            sum.removed
        );
    }
}

/// The statements that took the most server time while converging (pg_stat_statements).
async fn print_statements(pool: &sqlx::PgPool, top: usize, elapsed: f64) -> anyhow::Result<()> {
    let rows: Vec<(String, i64, f64, f64, i64)> = sqlx::query_as(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, total_plan_time, rows
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY total_exec_time DESC LIMIT $1",
    )
    .bind(top as i64)
    .fetch_all(pool)
    .await?;
    println!("server time by statement (pg_stat_statements):");
    println!("   total s  share  planning s   calls      rows  statement");
    for (query, calls, ms, plan_ms, rows) in rows {
        let text: String = query.chars().take(100).collect();
        println!(
            "{:>10.2} {:>5.0} % {:>10.2} {calls:>7} {rows:>9}  {text}",
            ms / 1000.0,
            ms / 1000.0 / elapsed * 100.0,
            plan_ms / 1000.0
        );
    }
    Ok(())
}

/// Where the time went, from the annealer's own phase histograms (summed over its
/// concurrent tasks, so the shares may add up to more than the wall time).
fn print_phases(scrape: &str, elapsed: f64) {
    let figure = |name: &str, label: &str| -> Option<f64> {
        scrape.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.strip_prefix(&format!("{{{label}}} "))?;
            rest.trim().parse().ok()
        })
    };
    println!("phase      calls   total s  mean ms  share of wall");
    for (phase, metric, label) in [
        ("pass", "crowbar_annealer_phase_seconds", r#"phase="pass""#),
        (
            "claim",
            "crowbar_annealer_phase_seconds",
            r#"phase="claim""#,
        ),
        (
            "run",
            "crowbar_run_duration_seconds",
            r#"outcome="succeeded""#,
        ),
        (
            "complete",
            "crowbar_annealer_phase_seconds",
            r#"phase="complete""#,
        ),
    ] {
        let sum = figure(&format!("{metric}_sum"), label).unwrap_or(0.0);
        let count = figure(&format!("{metric}_count"), label).unwrap_or(0.0);
        let mean = if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        };
        println!(
            "{phase:<9} {count:>6.0} {sum:>9.2} {mean:>8.2} {:>8.0} %",
            sum / elapsed * 100.0
        );
    }
}

fn pgbench(pg: &ManagedPostgres, seconds: u64) -> anyhow::Result<f64> {
    let bin = support::pg_bin()?;
    let url = pg.url_for("postgres");
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(bin.join("pgbench"))
            .args(args)
            .arg(url.expose())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&["-i", "-q", "-s", "10"])?;
    let seconds = seconds.to_string();
    let out = run(&["-b", "simple-update", "-c", "8", "-j", "2", "-T", &seconds])?;
    out.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output:\n{out}"))
}

/// Waits until the daemons hold `leases` worker leases between them and no other session
/// of the server has run a statement for five polls in a row, so that the clock starts
/// with the daemons serving rather than starting: three daemons starting at once (their
/// first looks at every node) would otherwise contend with the commit being timed.
async fn wait_until_serving(pool: &sqlx::PgPool, leases: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet = 0;
    while quiet < 5 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemons were not serving within 60 s"
        );
        let mut conn = pool.acquire().await?;
        let held = db::runs::leases_held(&mut conn).await?;
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND state = 'active'
                AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await?;
        quiet = if held >= leases && busy == 0 {
            quiet + 1
        } else {
            0
        };
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn spawn_daemon(pg: &ManagedPostgres, cap: i64) -> anyhow::Result<std::process::Child> {
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/crowbar");
    anyhow::ensure!(
        exe.exists(),
        "build the daemon first: cargo build --release"
    );
    let data = tempfile::tempdir()?.keep();
    Ok(Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--run-cap",
            &cap.to_string(),
        ])
        .arg("--data-dir")
        .arg(data)
        .env("CROWBAR_DATABASE_URL", pg.url().expose())
        .env("CROWBAR_ADMIN_TOKEN", "bench")
        .stdout(std::process::Stdio::null())
        .spawn()?)
}

/// Clock ticks per second of /proc's CPU times (USER_HZ; 100 on every Linux port).
const TICKS: f64 = 100.0;

/// User + system CPU seconds of a process from /proc/PID/stat, and of its reaped children.
fn cpu_of(pid: i32) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // fields after the command name, which is in parentheses and may hold spaces
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    // utime, stime, cutime, cstime are fields 14-17 of stat; 12-15 after the name and state
    let at = |i: usize| fields.get(i).copied().unwrap_or(0.0) / TICKS;
    (at(11) + at(12), at(13) + at(14))
}

/// CPU seconds of a process and every process below it, live or reaped.
fn cpu_seconds_of_tree(root: i32) -> f64 {
    let mut total = 0.0;
    let mut parents = vec![root];
    while let Some(pid) = parents.pop() {
        let (own, reaped) = cpu_of(pid);
        total += own + reaped;
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        parents.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    total
}

/// CPU seconds of the daemons: the spawned ones, or this process when it runs the engine.
fn own_cpu_seconds(daemons: &[std::process::Child]) -> f64 {
    if daemons.is_empty() {
        return cpu_of(std::process::id() as i32).0;
    }
    daemons.iter().map(|d| cpu_of(d.id() as i32).0).sum()
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
