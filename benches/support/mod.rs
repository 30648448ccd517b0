//! What the benchmark programs share: a throwaway PostgreSQL, flag parsing, and a bulk
//! fleet of nodes with chains of noop roles.

#![allow(dead_code)] // each benchmark uses its own part

use std::future::Future;

use crowbar::{
    db::{self, events::Actor},
    pg::{ManagedPostgres, PgOptions},
};

/// Whether this is `cargo bench`: `cargo test --all-targets` runs bench targets too, and
/// they have nothing to do there.
pub fn under_cargo_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The value after `--name` on the command line, or `default`.
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse `{v}`"))
        })
        .unwrap_or(default)
}

/// Runs `bench` against a throwaway PostgreSQL cluster under a temporary directory (also
/// handed to `bench`), stopped afterwards whatever happened.
pub async fn with_postgres<F, Fut>(bench: F) -> anyhow::Result<()>
where
    F: FnOnce(ManagedPostgres, std::path::PathBuf) -> Fut,
    Fut: Future<Output = (ManagedPostgres, anyhow::Result<()>)>,
{
    with_postgres_settings(Vec::new(), bench).await
}

/// [`with_postgres`] with more server settings (`name`, `value`).
pub async fn with_postgres_settings<F, Fut>(
    settings: Vec<(String, String)>,
    bench: F,
) -> anyhow::Result<()>
where
    F: FnOnce(ManagedPostgres, std::path::PathBuf) -> Fut,
    Fut: Future<Output = (ManagedPostgres, anyhow::Result<()>)>,
{
    let dir = tempfile::tempdir()?;
    // the postgres user reaches its data directory through it
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let options = PgOptions {
        settings,
        ..PgOptions::throwaway()
    };
    let pg = ManagedPostgres::start_with(&dir.path().join("pg"), options).await?;
    let (pg, result) = bench(pg, dir.path().to_path_buf()).await;
    pg.stop().await;
    result
}

/// A migrated database with the shipped barclamps and `bench-1..=roles`, a chain of noop
/// roles each requiring the previous one on the same node, reached through a pool of
/// `pool_size` connections.
pub async fn prepared_pool(
    pg: &ManagedPostgres,
    roles: i64,
    pool_size: u32,
) -> anyhow::Result<sqlx::PgPool> {
    let pool = db::connect(pg.url().expose(), pool_size).await?;
    db::migrate(&pool).await?;
    crowbar::barclamps::import_shipped(&pool).await?;
    crowbar::barclamps::import_document(&pool, "bench.yml", &chain_barclamp(roles)).await?;
    Ok(pool)
}

fn chain_barclamp(roles: i64) -> String {
    let mut yaml = String::from(
        "barclamp: {name: bench, parent: core, description: Benchmark chain}\nroles:\n",
    );
    for i in 1..=roles {
        yaml.push_str(&format!(
            "  - name: bench-{i}\n    jig: noop\n    flags: [implicit]\n"
        ));
        if i > 1 {
            yaml.push_str(&format!("    requires: [bench-{}]\n", i - 1));
        }
    }
    yaml
}

/// Nodes (alive, no address), one PROPOSED chain of noderoles on each, in deployment
/// `bench`, written with bulk SQL.
pub async fn populate(pool: &sqlx::PgPool, nodes: i64, roles: i64) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    db::deployments::create(
        &mut tx,
        "bench",
        "benchmark fleet",
        None,
        &Actor::token("bench"),
    )
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO nodes (name, alive, deployment_id)
           SELECT 'bench' || g || '.example.com', true, (SELECT id FROM deployments WHERE name = 'bench')
             FROM generate_series(1, {nodes}) g;
         INSERT INTO noderoles (node_id, role_id, deployment_id, state, cohort, explicit)
           SELECT n.id, r.id, n.deployment_id, 4, substring(r.name from 7)::int - 1, r.name = 'bench-{roles}'
             FROM nodes n CROSS JOIN roles r WHERE r.name LIKE 'bench-%';
         INSERT INTO noderole_edges (parent_id, child_id)
           SELECT p.id, c.id FROM noderoles p JOIN noderoles c ON c.node_id = p.node_id AND c.cohort = p.cohort + 1
             JOIN roles pr ON pr.id = p.role_id JOIN roles cr ON cr.id = c.role_id
            WHERE pr.name LIKE 'bench-%' AND cr.name LIKE 'bench-%';
         ANALYZE;"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The server binaries of the PostgreSQL the benchmark runs on (pgbench among them).
pub fn pg_bin() -> anyhow::Result<std::path::PathBuf> {
    crowbar::pg::find_binaries().ok_or_else(|| anyhow::anyhow!("no PostgreSQL binaries found"))
}

/// Commits the fleet and spreads states the way a large live installation has them: most
/// ACTIVE, some TODO/BLOCKED behind them, a few in ERROR.
pub async fn mix_states(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "UPDATE deployments SET state = 'committed' WHERE name = 'bench';
         UPDATE noderoles SET state = CASE
             WHEN node_id % 50 = 0 AND cohort = 5 THEN -1
             WHEN node_id % 50 = 0 AND cohort > 5 THEN 3
             WHEN node_id % 20 = 1 AND cohort >= 8 THEN 1
             ELSE 0 END,
           committed_data = proposed_data,
           runlog = CASE WHEN node_id % 50 = 0 AND cohort = 5 THEN 'exit status 1: simulated failure' ELSE '' END;",
    )
    .execute(pool)
    .await?;
    // what autovacuum does to a settled installation soon after: without it every index
    // lookup also visits the dead versions the bulk update left behind. The first pass
    // removes them; only a later one finds their pages clean and marks them all-visible,
    // which index-only scans need (measured: half the table after one pass).
    for _ in 0..2 {
        sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    }
    let (visible, pages): (i32, i32) =
        sqlx::query_as("SELECT relallvisible, relpages FROM pg_class WHERE relname = 'noderoles'")
            .fetch_one(pool)
            .await?;
    println!("noderoles: {visible} of {pages} pages all-visible after vacuum");
    Ok(())
}

/// The daemon's HTTP surface over `pool` on a loopback port of its own (no annealer): its
/// address, the token that stops it, and its task.
pub async fn serve(
    pool: &sqlx::PgPool,
) -> anyhow::Result<(
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut state = crowbar::http::AppState::new(pool.clone());
    state.shutdown = shutdown.clone();
    let server = tokio::spawn(crowbar::app::run(state, listener, shutdown.clone()));
    Ok((addr, shutdown, server))
}

/// How long a fan-out benchmark's measured step may take before it gives up.
pub const STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The id of the node named `name`.
pub async fn node_id(pool: &sqlx::PgPool, name: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT id FROM nodes WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await?)
}

/// Binds `role` on every node of `nodes` in a new deployment, commits, and times from the
/// commit until every noderole of the deployment is ACTIVE (fails on the first ERROR, or
/// after [`STEP_LIMIT`]).
pub async fn converge(
    pool: &sqlx::PgPool,
    nodes: &[String],
    deployment: &str,
    role: &str,
) -> anyhow::Result<std::time::Duration> {
    use crowbar::db::keys::Key;
    let actor = Actor::token("bench");
    let mut tx = pool.begin().await?;
    db::deployments::create(&mut tx, deployment, "", None, &actor).await?;
    for node in nodes {
        db::node_roles::bind(
            &mut tx,
            &Key::from(node.as_str()),
            role,
            Some(&Key::from(deployment)),
            None,
            &actor,
        )
        .await?;
    }
    tx.commit().await?;
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    db::deployments::commit(&mut tx, &Key::from(deployment), &actor).await?;
    tx.commit().await?;
    loop {
        let (pending, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE nr.state <> 0), count(*) FILTER (WHERE nr.state = -1)
               FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id WHERE d.name = $1",
        )
        .bind(deployment)
        .fetch_one(pool)
        .await?;
        if failed > 0 {
            let log: String =
                sqlx::query_scalar("SELECT runlog FROM noderoles WHERE state = -1 LIMIT 1")
                    .fetch_one(pool)
                    .await?;
            anyhow::bail!("{failed} noderoles failed: {log}");
        }
        if pending == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > STEP_LIMIT {
            anyhow::bail!("{deployment}: {pending} noderoles not active after {STEP_LIMIT:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Registers the nodes (name, address) and makes first contact (not timed): host keys
/// pinned, every node alive. The access to them with `key`.
pub async fn register_and_contact(
    pool: &sqlx::PgPool,
    nodes: &[(String, std::net::Ipv4Addr)],
    key: &crowbar::ssh::ClientKey,
) -> anyhow::Result<std::sync::Arc<crowbar::access::NodeAccess>> {
    use crowbar::{
        access::{AccessSettings, NodeAccess},
        probe::{ProbeSettings, Prober},
    };
    let mut conn = pool.acquire().await?;
    for (name, address) in nodes {
        db::nodes::create(
            &mut conn,
            &db::nodes::NewNode {
                name: name.clone(),
                address: Some(address.to_string()),
                ..Default::default()
            },
            &Actor::token("bench"),
        )
        .await?;
    }
    drop(conn);
    let access = NodeAccess::new(pool.clone(), key.clone(), AccessSettings::default());
    let probed = Prober {
        access: access.clone(),
        settings: ProbeSettings {
            probe_interval: std::time::Duration::ZERO,
            ..ProbeSettings::default()
        },
    }
    .round()
    .await?;
    let alive = probed.iter().filter(|o| o.alive).count();
    if alive != nodes.len() {
        anyhow::bail!(
            "only {alive} of {} nodes answered the first probe: {probed:?}",
            nodes.len()
        );
    }
    Ok(access)
}
