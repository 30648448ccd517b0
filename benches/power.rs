//! Power at rack scale, against one sushy-tools Redfish emulator serving N fake systems over
//! HTTPS (`.venv/`, `scripts/python-tools`):
//!
//! 1. the power state of every BMC: crowbar's sweep (`--power-sweep-concurrency 50`, each
//!    read through the pinned-certificate client with its timeouts) next to a `curl`
//!    fan-out of 50 parallel requests over the same systems in the same run (the baseline);
//! 2. a bulk `power cycle` of M machines that are on, through the power worker (one
//!    operation per BMC, the cap at M): from the request until every operation is confirmed
//!    (On read twice after the restart), next to the emulator's own delay (a change applies
//!    1 to 11 s after it is accepted).
//!
//!     cargo bench --bench power -- [--bmcs 200] [--cycle 50] [--repeat 3]

#[allow(dead_code)]
#[path = "../tests/it/support/python.rs"]
mod python;

#[allow(dead_code)]
#[path = "../tests/it/support/bmc.rs"]
mod bmc;

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bmc::{PASSWORD, RedfishEmulator, USER};
use crowbar::{
    db::{self, events::Actor},
    power::{
        BmcTimeouts, PowerSettings, node::PowerControl, sweep::sweep_once, vault::Vault,
        worker::PowerWorker,
    },
    secret::Secret,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod support;

/// The baseline's and the sweep's parallelism.
const PARALLEL: usize = 50;
/// The emulator's longest delay before a change applies.
const EMULATOR_DELAY: Duration = Duration::from_secs(11);

/// What `bmc.rs` needs from the tests' support module.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() -> anyhow::Result<()> {
    if !support::under_cargo_bench() {
        return Ok(());
    }
    let bmcs: usize = support::flag("--bmcs", 200);
    let cycle: usize = support::flag("--cycle", 50);
    let repeat: usize = support::flag("--repeat", 3);
    crowbar::tls::install_default_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(support::with_postgres(|pg, _dir| async move {
            let result = bench(&pg, bmcs, cycle.min(bmcs), repeat).await;
            (pg, result)
        }))
}

async fn bench(
    pg: &crowbar::pg::ManagedPostgres,
    bmcs: usize,
    cycle: usize,
    repeat: usize,
) -> anyhow::Result<()> {
    let emulator = RedfishEmulator::start(bmcs).await;
    let pool = db::connect(pg.url().expose(), 60).await?;
    db::migrate(&pool).await?;
    let vault = Arc::new(Vault::ephemeral());
    enroll(&pool, &vault, &emulator).await?;
    let control = Arc::new(PowerControl::new(
        pool.clone(),
        vault.clone(),
        BmcTimeouts::default(),
    ));
    // first contact pins every certificate: not part of what is measured
    let first = sweep_once(&control, &pool, PARALLEL).await?;
    if first.failed > 0 {
        bail!(
            "{} of {bmcs} BMCs could not be read: {}",
            first.failed,
            emulator.log()
        );
    }

    println!("power status of {bmcs} BMCs, {PARALLEL} at a time (best of {repeat}):");
    let mut sweep_best = Duration::MAX;
    let mut curl_best = Duration::MAX;
    for _ in 0..repeat {
        let curl = curl_fanout(&emulator).await?;
        let started = Instant::now();
        let report = sweep_once(&control, &pool, PARALLEL).await?;
        let sweep = started.elapsed();
        if report.failed > 0 {
            bail!("the sweep failed {} reads", report.failed);
        }
        println!(
            "  curl fan-out {:.2} s, crowbar sweep {:.2} s",
            curl.as_secs_f64(),
            sweep.as_secs_f64()
        );
        sweep_best = sweep_best.min(sweep);
        curl_best = curl_best.min(curl);
    }
    println!(
        "  best: curl {:.2} s ({:.0} reads/s), crowbar {:.2} s ({:.0} reads/s): {:.2} × the baseline's time",
        curl_best.as_secs_f64(),
        bmcs as f64 / curl_best.as_secs_f64(),
        sweep_best.as_secs_f64(),
        bmcs as f64 / sweep_best.as_secs_f64(),
        sweep_best.as_secs_f64() / curl_best.as_secs_f64()
    );

    // the bulk cycle: the machines on first, then cycled and confirmed
    let shutdown = CancellationToken::new();
    let settings = PowerSettings {
        power_ops_cap: cycle as i64,
        ..PowerSettings::default()
    };
    let worker = PowerWorker {
        pool: pool.clone(),
        control: control.clone(),
        settings,
        shutdown_grace: Duration::from_secs(5),
    }
    .start(shutdown.clone());
    let nodes: Vec<i64> =
        sqlx::query_scalar("SELECT node_id FROM node_bmcs ORDER BY node_id LIMIT $1")
            .bind(cycle as i64)
            .fetch_all(&pool)
            .await?;
    let on = power_all(&pool, &nodes, "on").await?;
    println!(
        "power on of {cycle} machines that were off: {:.2} s",
        on.total.as_secs_f64()
    );
    let cycled = power_all(&pool, &nodes, "cycle").await?;
    println!(
        "power cycle of {cycle} machines that were on: all confirmed (On read twice after Off) in {:.2} s; \
         the slowest operation {:.2} s from queued to done, the median {:.2} s; the emulator applies \
         each change after 1 to {} s: {:.2} s over its longest delay",
        cycled.total.as_secs_f64(),
        cycled.slowest.as_secs_f64(),
        cycled.median.as_secs_f64(),
        EMULATOR_DELAY.as_secs(),
        cycled.total.as_secs_f64() - EMULATOR_DELAY.as_secs_f64()
    );
    shutdown.cancel();
    let _ = worker.await;
    pool.close().await;
    Ok(())
}

/// A node per emulated system, each with its BMC (the system named, the password sealed).
async fn enroll(pool: &PgPool, vault: &Vault, emulator: &RedfishEmulator) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let actor = Actor::token("bench");
    for (i, system) in emulator.systems.iter().enumerate() {
        let (node, _) = db::nodes::create(
            &mut tx,
            &db::nodes::NewNode {
                name: format!("bmc{i}.example.com"),
                ..Default::default()
            },
            &actor,
        )
        .await?;
        db::bmcs::set(
            &mut tx,
            node.id,
            &db::bmcs::NewBmc {
                driver: "redfish".into(),
                address: "127.0.0.1".into(),
                port: Some(i32::from(emulator.port)),
                system: Some(system.uuid.clone()),
                username: USER.into(),
                password_sealed: vault.seal(&Secret::new(PASSWORD)),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The power state of every system read by `curl`, `PARALLEL` at a time (`xargs -P`), the
/// credentials in a netrc file (never on a command line).
async fn curl_fanout(emulator: &RedfishEmulator) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let netrc = dir.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login {USER} password {PASSWORD}\n"),
    )?;
    let urls: String = emulator
        .systems
        .iter()
        .map(|s| {
            format!(
                "https://127.0.0.1:{}/redfish/v1/Systems/{}\n",
                emulator.port, s.uuid
            )
        })
        .collect();
    let list = dir.path().join("urls");
    std::fs::write(&list, urls)?;
    let started = Instant::now();
    let output = tokio::process::Command::new("xargs")
        .arg("-a")
        .arg(&list)
        .args(["-P", &PARALLEL.to_string(), "-n", "1"])
        .args([
            "curl",
            "-sS",
            "-k",
            "--fail",
            "-o",
            "/dev/null",
            "--netrc-file",
        ])
        .arg(&netrc)
        .stdin(Stdio::null())
        .output()
        .await
        .context("xargs curl")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "the curl fan-out failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}

struct Bulk {
    total: Duration,
    slowest: Duration,
    median: Duration,
}

/// Asks `action` of every node and waits until every operation is done.
async fn power_all(pool: &PgPool, nodes: &[i64], action: &str) -> anyhow::Result<Bulk> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let mut ids = Vec::new();
    for node in nodes {
        let (op, _) =
            db::power_ops::request(&mut tx, *node, action, false, &Actor::token("bench")).await?;
        ids.push(op.id);
    }
    tx.commit().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (ended, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('done', 'failed')),
                    count(*) FILTER (WHERE state = 'failed')
               FROM power_ops WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(pool)
        .await?;
        if failed > 0 {
            let reasons: Vec<String> = sqlx::query_scalar(
                "SELECT reason FROM power_ops WHERE id = ANY($1) AND state = 'failed' LIMIT 3",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await?;
            bail!("{failed} {action} operations failed: {reasons:?}");
        }
        if ended == ids.len() as i64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{action}: only {ended} of {} ended within 300 s", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    let mut each: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM finished_at - queued_at)::float8 FROM power_ops WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    each.sort_by(f64::total_cmp);
    Ok(Bulk {
        total,
        slowest: Duration::from_secs_f64(*each.last().unwrap_or(&0.0)),
        median: Duration::from_secs_f64(each.get(each.len() / 2).copied().unwrap_or(0.0)),
    })
}
