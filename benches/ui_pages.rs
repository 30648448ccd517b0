//! The web UI at fleet scale: for each page, the server's time to answer, what it sends,
//! and how long headless Chromium takes to load it, next to the API's first page of nodes
//! measured the same way in the same run (the baseline).
//!
//!     cargo bench --bench ui_pages -- [--nodes 10000] [--roles 10] [--repeat 5]
//!
//! The fleet is the API latency benchmark's (bulk SQL, committed, states mixed as in a live
//! installation, no annealer). Needs chromium and chromedriver (`scripts/system-packages test`).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crowbar::{db::users::SessionOwner, secret::Secret};

mod support;

const TOKEN: &str = "ui-pages-bench-token";

fn main() -> anyhow::Result<()> {
    if !support::under_cargo_bench() {
        return Ok(());
    }
    let nodes: i64 = support::flag("--nodes", 10_000);
    let roles: i64 = support::flag("--roles", 10);
    let repeat: usize = support::flag("--repeat", 5);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(support::with_postgres(|pg, _| async move {
            let result = bench(&pg, nodes, roles, repeat).await;
            (pg, result)
        }))
}

async fn bench(
    pg: &crowbar::pg::ManagedPostgres,
    nodes: i64,
    roles: i64,
    repeat: usize,
) -> anyhow::Result<()> {
    let pool = support::prepared_pool(pg, roles, crowbar::config::default_db_pool_size()).await?;
    support::populate(&pool, nodes, roles).await?;
    support::mix_states(&pool).await?;
    crowbar::admin_token::ensure_admin_token(
        &pool,
        std::path::Path::new("/nonexistent"),
        Some(&Secret::new(TOKEN)),
    )
    .await?;
    let (id, name): (i64, String) =
        sqlx::query_as("SELECT id, name FROM api_tokens WHERE name = 'admin'")
            .fetch_one(&pool)
            .await?;
    let session = crowbar::db::users::open_session(
        &pool,
        &SessionOwner::Token { id, name },
        Duration::from_secs(3600),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no session"))?;
    let noderole: i64 = sqlx::query_scalar("SELECT min(id) FROM noderoles WHERE state = -1")
        .fetch_one(&pool)
        .await?;

    let (addr, shutdown, server) = support::serve(&pool).await?;
    let base = format!("http://{addr}");
    println!("fleet: {nodes} nodes x {roles} roles; each figure the median of {repeat} loads\n");

    crowbar::tls::install_default_provider();
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut browser = Chromium::start(&base, TOKEN).await?;
    println!(
        "{:<40} {:>10} {:>10} {:>12}",
        "page", "server ms", "KB", "chromium ms"
    );
    let pages = [
        (
            "/api/v2/nodes?limit=100",
            "baseline: the API's first page of nodes",
        ),
        ("/nodes", ""),
        ("/nodes?q=bench12", "filtered by name prefix"),
        ("/annealer", ""),
        ("/deployments/bench", "the grid"),
        ("/deployments/bench/graph", "the graph"),
        (&format!("/node_roles/{noderole}"), "a failed noderole"),
        ("/audit", ""),
        ("/", "overview"),
    ];
    for (path, note) in pages {
        let mut server = Vec::new();
        let mut size = 0;
        for _ in 0..repeat {
            let started = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .header("Cookie", format!("crowbar_session={session}"))
                .bearer_auth(TOKEN)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            size = response.bytes().await?.len();
            server.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let chromium = if path.starts_with("/api/") {
            None
        } else {
            let mut loads = Vec::new();
            for _ in 0..repeat {
                loads.push(browser.load(path).await?);
            }
            Some(median(&mut loads))
        };
        println!(
            "{path:<40} {:>10.1} {:>10.1} {:>12}  {note}",
            median(&mut server),
            size as f64 / 1024.0,
            chromium.map_or("-".to_string(), |ms| format!("{ms:.0}"))
        );
    }
    browser.stop().await;
    shutdown.cancel();
    server.await??;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Headless Chromium through chromedriver, logged in with the admin token.
struct Chromium {
    driver: Child,
    client: fantoccini::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    async fn start(base: &str, token: &str) -> anyhow::Result<Chromium> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("chromedriver: {e} (apt-get install chromium-driver)"))?;
        let profile = tempfile::tempdir()?;
        let serde_json::Value::Object(caps) = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/lib/chromium/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display())],
            },
        }) else {
            unreachable!()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => anyhow::bail!("chromedriver did not answer: {e}"),
            }
        };
        // logged in through the form, as a person would
        client.goto(&format!("{base}/login")).await?;
        client
            .find(fantoccini::Locator::Css("#token"))
            .await?
            .send_keys(token)
            .await?;
        client
            .find(fantoccini::Locator::Css("#login"))
            .await?
            .click()
            .await?;
        while client.current_url().await?.path() == "/login" {
            anyhow::ensure!(Instant::now() < deadline, "the login did not go through");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Chromium {
            driver,
            client,
            base: base.to_string(),
            _profile: profile,
        })
    }

    /// Loads `path` and returns the time from navigation to the load event, in ms.
    async fn load(&mut self, path: &str) -> anyhow::Result<f64> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        let ms = self
            .client
            .execute(
                "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;",
                vec![],
            )
            .await?;
        ms.as_f64()
            .ok_or_else(|| anyhow::anyhow!("no navigation timing for {path}"))
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
