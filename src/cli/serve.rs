//! `crowbar serve` and `crowbar migrate`.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    access::NodeAccess,
    annealer::Engine,
    app::RunOptions,
    config::Settings,
    db,
    hooks::Hooks,
    http::{AppState, server::Server},
    jig::{AnsibleJig, JigRegistry, ScriptJig},
    pg::{ManagedPostgres, PgOptions},
    power::inband::InbandJig,
    probe::Prober,
    provisioner::{Provisioner, install::OsInstallJig},
    ssh::ClientKey,
    telemetry,
};

/// The database a daemon runs on: a server given by URL, or the private one it manages.
pub(super) struct Database {
    pub(super) pool: PgPool,
    managed: Option<ManagedPostgres>,
}

impl Database {
    pub(super) async fn open(settings: &Settings) -> anyhow::Result<Database> {
        match &settings.database_url {
            Some(url) => Ok(Database {
                pool: db::connect(url.expose(), settings.db_pool_size).await?,
                managed: None,
            }),
            None => {
                let options = PgOptions {
                    bin_dir: settings.postgres_bin_dir.clone(),
                    ..PgOptions::default()
                };
                let location = crate::pg::cluster_location(&settings.data_dir)?;
                if let Some(why) = &location.relocated {
                    tracing::info!(
                        cluster = %location.dir.display(),
                        "the private PostgreSQL keeps its files in {}: {why}",
                        location.dir.display()
                    );
                }
                let managed = ManagedPostgres::start_with(&location.dir, options).await?;
                let pool = match db::connect(managed.url().expose(), settings.db_pool_size).await {
                    Ok(pool) => pool,
                    Err(e) => {
                        managed.stop().await;
                        return Err(e.into());
                    }
                };
                Ok(Database {
                    pool,
                    managed: Some(managed),
                })
            }
        }
    }

    /// Returns the pool's connections (waiting at most `grace` for busy ones), then stops
    /// the private PostgreSQL, which ends whatever session is still open.
    pub(super) async fn close(self, grace: Duration) {
        if tokio::time::timeout(grace, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "database connections still busy after the shutdown grace"
            );
        }
        if let Some(managed) = self.managed {
            managed.stop().await;
        }
    }
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.log_format);
    crate::passwords::return_freed_hash_memory();
    let settings = settings
        .with_absolute_paths()
        .context("cannot resolve the configured paths against the working directory")?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    // TLS files that cannot be used fail at once, before the port or the database
    let server = Server::new(&settings.server)?;

    // Bind first: a taken port fails at once, before any database work.
    let listener = bind(settings.listen).await?;
    // A signal during start-up lets the start finish (initdb is never cut short), then stops.
    let database = Database::open(&settings).await?;
    let result = if shutdown.is_cancelled() {
        Ok(())
    } else {
        serve_on(&settings, server, listener, &database.pool, shutdown).await
    };
    database.close(settings.shutdown_grace).await;
    result
}

async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen} (is another crowbar running? pass --listen ADDR:PORT \
             or set CROWBAR_LISTEN to use another address)"
        )
    })
}

/// Says at start whether the ansible jig can run, and when it cannot, which of the roles
/// just imported will fail.
async fn ansible_at_start(settings: &Settings, pool: &PgPool) {
    let why = match crate::jig::ansible::installed(&settings.ansible).await {
        Ok(version) => {
            tracing::info!(%version, "the ansible jig runs ansible-playbook");
            return;
        }
        Err(why) => why,
    };
    let filter = db::roles::RoleFilter {
        barclamp: None,
        jig: Some(crate::jig::ansible::JIG.to_string()),
        limit: 10_000,
        offset: 0,
    };
    match db::roles::list_roles(pool, &filter).await {
        Ok(roles) if !roles.is_empty() => {
            let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
            tracing::warn!(roles = %names.join(" "), "{why}");
        }
        _ => tracing::warn!("{why}"),
    }
}

async fn serve_on(
    settings: &Settings,
    server: Server,
    listener: TcpListener,
    pool: &PgPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    db::migrate(pool).await?;
    crate::barclamps::import_at_start(pool, &settings.barclamp_dirs).await?;
    crate::admin_token::ensure_admin_token(pool, &settings.data_dir, settings.admin_token.as_ref())
        .await?;
    // before anything counts: figures recorded earlier would be lost
    tokio::spawn(crate::telemetry::metrics::upkeep(shutdown.clone()));
    let scheme = server.scheme();
    let mut provisioner_settings = settings.provisioner.clone();
    if provisioner_settings.provisioner_url.is_none() {
        // machines reach the listen address with the scheme it serves
        provisioner_settings.provisioner_url =
            Some(format!("{scheme}://{}", listener.local_addr()?));
    }
    let provisioner = Provisioner::new(&provisioner_settings, listener.local_addr()?)?;
    let key = ClientKey::load_or_create(&settings.data_dir.join("ssh"))
        .context("cannot load or create the daemon's SSH key")?;
    tracing::info!(key = %key.fingerprint(), file = %key.path().display(), "SSH key of this daemon");
    ansible_at_start(settings, pool).await;
    let access = NodeAccess::new(pool.clone(), key.clone(), settings.access.clone());
    let prober = tokio::spawn(
        Prober {
            access: access.clone(),
            settings: settings.probe.clone(),
        }
        .run(shutdown.clone()),
    );
    let dnsmasq_dir = settings
        .provisioner
        .dnsmasq_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("dnsmasq"));
    let power = std::sync::Arc::new(crate::power::node::PowerControl::new(
        pool.clone(),
        std::sync::Arc::new(
            crate::power::vault::Vault::load_or_create(&settings.data_dir)
                .context("cannot load or create the key that seals BMC credentials")?,
        ),
        crate::power::BmcTimeouts::default(),
    ));
    let (hooks, jigs) = crate::provisioner::dnsmasq::register(
        Hooks::default(),
        JigRegistry::builtin()
            .with(ScriptJig::new(access.clone()))
            .with(InbandJig::new(pool.clone(), access.clone(), power.clone()))
            .with(
                AnsibleJig::new(access.clone(), settings.ansible.clone())
                    .context("cannot make the ansible jig's directory")?,
            )
            .with(OsInstallJig::new(
                pool.clone(),
                access,
                provisioner.clone(),
                settings.provisioner.reboot_command.clone(),
            )),
        pool,
        &dnsmasq_dir,
        &provisioner.domain,
    );
    let engine = Engine::start(
        pool.clone(),
        &settings.annealer,
        jigs,
        hooks.clone(),
        settings.shutdown_grace,
        shutdown.clone(),
    );
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let state = AppState {
        pool: pool.clone(),
        run_cap: settings.annealer.run_cap,
        hooks,
        ssh_public_key: Some(key.public_openssh()),
        events: crate::events::EventHub::new(
            pool.clone(),
            crate::events::Retention {
                events: settings.event_retention,
                audit: settings.audit_retention,
            },
            engine.event_duty.clone(),
        ),
        shutdown: shutdown.clone(),
        provisioner,
        secure_cookies: settings.server.https_to_browsers(),
        // fitted to the server's idle timeout by `app::run_with`
        event_keep_alive: crate::http::state::EVENT_KEEP_ALIVE,
        passwords: crate::passwords::Passwords::new(settings.logins.password_checks),
        logins: std::sync::Arc::new(crate::http::ui::throttle::LoginThrottle::new(
            &settings.logins,
        )),
        refusals: std::sync::Arc::new(crate::http::audit::Refusals::new(
            settings.audit_refusals_per_minute,
        )),
        power: power.clone(),
    };
    // The demo's namespace nodes, if any, live until the annealer has stopped using them.
    let demo_nodes = if settings.demo {
        let (seeded, nodes) = crate::demo::nodes::start(
            &state,
            &key,
            settings.access.ssh_timeouts(),
            &settings.data_dir.join("demo-nodes"),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
        if seeded {
            println!(
                "Demo deployment committed: watch it converge at {scheme}://{addr}/deployments/demo"
            );
        }
        nodes
    } else {
        None
    };
    let power_sweep = tokio::spawn(crate::power::sweep::run(
        state.power.clone(),
        pool.clone(),
        settings.power.clone(),
        shutdown.clone(),
    ));
    let power_worker = crate::power::worker::PowerWorker {
        pool: pool.clone(),
        control: state.power.clone(),
        settings: settings.power.clone(),
        shutdown_grace: settings.shutdown_grace,
    }
    .start(shutdown.clone());
    // listed before it says it is ready: an operator's `migrate --check` sees every daemon
    // that serves
    if let Err(e) = register_presence(pool, &engine.worker).await {
        tracing::warn!(error = %e, "cannot list this daemon among those serving; trying again every {:?}", db::daemons::REFRESH_EVERY);
    }
    let presence = tokio::spawn(presence(
        pool.clone(),
        engine.worker.clone(),
        shutdown.clone(),
    ));
    tracing::info!(listen = %addr, "crowbar is ready on {scheme}://{addr}");
    let options = RunOptions {
        shutdown_grace: settings.shutdown_grace,
        server,
    };
    crate::app::run_with(state, listener, shutdown, options).await?;
    // the HTTP server stopped because shutdown was requested: the engine is stopping too
    if tokio::time::timeout(
        settings.shutdown_grace + Duration::from_secs(10),
        engine.tracker.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!("the annealer did not stop within the shutdown grace");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), prober).await;
    // a sweep in progress stops at its reads' timeouts at the latest
    let _ = tokio::time::timeout(Duration::from_secs(5), power_sweep).await;
    // operations under way had the shutdown grace; what is left was handed back
    let _ = tokio::time::timeout(
        settings.shutdown_grace + Duration::from_secs(5),
        power_worker,
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), presence).await;
    if let Some(nodes) = demo_nodes {
        let _ = tokio::task::spawn_blocking(move || drop(nodes)).await;
        tracing::info!("demo namespace nodes removed");
    }
    tracing::info!("crowbar stopped");
    Ok(())
}

/// Keeps this daemon in the database's list of serving daemons (with its build, for
/// upgrades: `crowbar migrate --check`) until shutdown, then takes it out.
async fn presence(pool: PgPool, name: String, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(db::daemons::REFRESH_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = register_presence(&pool, &name).await {
                    tracing::debug!(error = %e, "cannot refresh this daemon's presence");
                }
            }
        }
    }
    if let Err(e) = db::daemons::leave(&pool, &name).await {
        tracing::debug!(error = %e, "cannot record that this daemon stops");
    }
}

/// Lists this daemon, with its build, among those serving (or refreshes it).
async fn register_presence(pool: &PgPool, name: &str) -> db::Result<()> {
    db::daemons::register(
        pool,
        name,
        env!("CARGO_PKG_VERSION"),
        db::schema::newest_known(),
    )
    .await
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (SIGINT). The handlers are installed before this
/// returns, so a signal during start-up is never the default "terminate at once".
pub(super) fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    Ok(())
}
