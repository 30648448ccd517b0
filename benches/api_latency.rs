//! API latency at fleet scale: p50/p99 of the list and status routes scripts and the UI
//! poll, under `wrk` with 16 connections on loopback, next to two baselines measured in the
//! same run on the same server: `/healthz` (the HTTP stack, no database) and `/readyz` (one
//! database round trip).
//!
//!     cargo bench --bench api_latency -- [--nodes 10000] [--roles 10] [--seconds 10]
//!         [--only <text in the route>] [--hold <seconds>]
//!
//! `--hold` keeps the server and database up that long after the runs and prints the
//! database URL and server address, to look at plans and profiles of the same fleet.
//!
//! The fleet is written with bulk SQL (nodes × a chain of roles = noderoles), committed and
//! given a realistic mix of states; nothing runs (no annealer), so the figures are of the
//! API alone. Needs `wrk` (`apt-get install wrk`).

use std::{net::SocketAddr, process::Command, time::Instant};

use crowbar::{config::default_db_pool_size, secret::Secret};

mod support;

const TOKEN: &str = "api-latency-bench-token";
const CONNECTIONS: u32 = 16;

fn main() -> anyhow::Result<()> {
    if !support::under_cargo_bench() {
        return Ok(());
    }
    let nodes: i64 = support::flag("--nodes", 10_000);
    let roles: i64 = support::flag("--roles", 10);
    let seconds: u64 = support::flag("--seconds", 10);
    let only: String = support::flag("--only", String::new());
    let hold: u64 = support::flag("--hold", 0);
    anyhow::ensure!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk not found: apt-get install wrk"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(support::with_postgres(|pg, _| async move {
            let result = bench(&pg, nodes, roles, seconds, &only, hold).await;
            (pg, result)
        }))
}

async fn bench(
    pg: &crowbar::pg::ManagedPostgres,
    nodes: i64,
    roles: i64,
    seconds: u64,
    only: &str,
    hold: u64,
) -> anyhow::Result<()> {
    let pool = support::prepared_pool(pg, roles, default_db_pool_size()).await?;
    let setup = Instant::now();
    support::populate(&pool, nodes, roles).await?;
    support::mix_states(&pool).await?;
    let noderoles: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await?;
    println!(
        "fleet: {nodes} nodes, {noderoles} noderoles (setup {:.1}s, not timed)",
        setup.elapsed().as_secs_f64()
    );
    crowbar::admin_token::ensure_admin_token(
        &pool,
        std::path::Path::new("/nonexistent"),
        Some(&Secret::new(TOKEN)),
    )
    .await?;

    let (addr, shutdown, server) = support::serve(&pool).await?;

    println!(
        "wrk: {CONNECTIONS} connections, 2 threads, {seconds}s per route, loopback; \
         server: {} database connections (the daemon's default here)\n",
        default_db_pool_size()
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>10}",
        "route", "p50 ms", "p99 ms", "req/s", "p99/readyz"
    );
    let routes = [
        ("/healthz", "baseline: HTTP only"),
        ("/readyz", "baseline: one database round trip"),
        ("/api/v2/nodes?limit=100", "first page"),
        (
            "/api/v2/nodes?limit=100&offset=5000",
            "a page in the middle",
        ),
        ("/api/v2/node_roles?state=error&limit=100", "the failures"),
        (
            "/api/v2/node_roles?state=todo&limit=100",
            "waiting: reasons read the queue",
        ),
        ("/api/v2/node_roles?state=active&limit=100&offset=20000", ""),
        (
            "/api/v2/node_roles?state=active&limit=100&after=20000",
            "about as deep, by cursor",
        ),
        ("/api/v2/anneal", "409 `failed`: the fleet has errors"),
    ];
    let mut readyz_p99 = f64::NAN;
    let mut worst = 0.0_f64;
    let baseline = |route: &str| !route.starts_with("/api/");
    for (route, note) in routes {
        if !baseline(route) && !route.contains(only) {
            continue;
        }
        let figures = wrk(addr, route, seconds)?;
        if route == "/readyz" {
            readyz_p99 = figures.p99_ms;
        }
        if !baseline(route) {
            worst = worst.max(figures.p99_ms);
        }
        println!(
            "{route:<44} {:>9.2} {:>9.2} {:>9.0} {:>10.1}  {note}",
            figures.p50_ms,
            figures.p99_ms,
            figures.requests_per_second,
            figures.p99_ms / readyz_p99
        );
    }
    println!("\nworst p99 of the API routes: {worst:.2} ms (goal: < 50 ms)");
    if hold > 0 {
        println!(
            "holding {hold}s: server http://{addr} (token {TOKEN}), database {}",
            pg.url().expose()
        );
        tokio::time::sleep(std::time::Duration::from_secs(hold)).await;
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}

struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    requests_per_second: f64,
}

/// One bounded wrk run against a route with the admin token; fails on any non-2xx answer.
fn wrk(addr: SocketAddr, route: &str, seconds: u64) -> anyhow::Result<Figures> {
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "--timeout", "5s"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("http://{addr}{route}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed on {route}:\n{text}");
    // /api/v2/anneal answers 409 while anything is in ERROR, as the fleet here is
    anyhow::ensure!(
        route == "/api/v2/anneal" || !text.contains("Non-2xx or 3xx responses"),
        "{route} answered errors:\n{text}"
    );
    let percentile = |p: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(str::trim))
            .and_then(parse_duration_ms)
            .ok_or_else(|| anyhow::anyhow!("no {p} percentile in wrk output:\n{text}"))
    };
    let requests_per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{text}"))?;
    Ok(Figures {
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        requests_per_second,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.5m`.
fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}
