//! `crowbar serve` and `crowbar migrate`.

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, db, pg::ManagedPostgres, telemetry};

/// The database a daemon runs on: a server given by URL, or the private one it manages.
struct Database {
    pool: PgPool,
    managed: Option<ManagedPostgres>,
}

impl Database {
    async fn open(settings: &Settings) -> anyhow::Result<Database> {
        match &settings.database_url {
            Some(url) => Ok(Database {
                pool: db::connect(url.expose(), settings.db_pool_size).await?,
                managed: None,
            }),
            None => {
                let managed = ManagedPostgres::start(&settings.data_dir.join("postgres")).await?;
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

    async fn close(self) {
        self.pool.close().await;
        if let Some(managed) = self.managed {
            managed.stop().await;
        }
    }
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.log_format);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());

    let database = Database::open(&settings).await?;
    let result = serve_on(&settings, &database.pool, shutdown).await;
    database.close().await;
    result
}

async fn serve_on(
    settings: &Settings,
    pool: &PgPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    db::migrate(pool).await?;
    crate::barclamps::import_at_start(pool, &settings.barclamp_dirs).await?;
    crate::auth::ensure_admin_token(pool, &settings.data_dir, settings.admin_token.as_ref())
        .await?;
    let listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another crowbar running? pass --listen ADDR:PORT)",
            settings.listen
        )
    })?;
    tracing::info!(listen = %settings.listen, "crowbar is ready on http://{}", settings.listen);
    crate::app::run(pool.clone(), listener, shutdown).await?;
    tracing::info!("crowbar stopped");
    Ok(())
}

pub async fn migrate_only(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.log_format);
    let database = Database::open(&settings).await?;
    let result = db::migrate(&database.pool).await;
    database.close().await;
    result?;
    println!("migrations applied");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate => {},
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    });
}
