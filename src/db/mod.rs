//! The database layer: connections, migrations and every SQL statement.
//!
//! Business rules live in `domain`; this layer stores and loads, inside transactions, and
//! asks `domain` whether a change is allowed under the locks it holds. Every fallible
//! function returns [`Result`], whose [`Error`] is the layer's one error type.

pub mod aliveness;
pub mod anneal;
pub mod attribs;
pub mod audit;
pub mod barclamps;
pub mod bmcs;
mod confinement;
pub mod daemons;
pub mod deployment_roles;
pub mod deployments;
pub mod dnsmasq;
pub mod documents;
pub mod error;
pub mod events;
pub mod explain;
mod fragments;
pub mod hooks;
pub mod host_keys;
pub mod inputs;
pub mod installs;
pub mod keys;
pub mod locks;
pub mod metrics;
pub mod networks;
pub mod node_roles;
pub mod nodes;
pub mod overview;
pub mod paging;
pub mod power_ops;
pub mod primary;
pub mod ripple;
pub mod role_catalog;
pub mod roles;
pub mod runs;
pub mod schema;
pub mod simulation;
pub mod tokens;
pub mod users;

pub use error::{Error, Result};

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Migrations embedded in the binary, applied at start and by `crowbar migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a request waits for a connection, a failover included: a switchover takes a
/// few seconds, so a request that arrives meanwhile waits for the new primary.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool. The URL is never logged (it may hold a password). A URL with several
/// hosts (or `target_session_attrs=read-write`) connects to the member that accepts writes
/// and follows the primary from then on ([`primary`]).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let target = primary::Target::parse(url).map_err(|message| Error::Invalid {
        code: "database_url",
        message,
    })?;
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    if !target.wants_primary {
        let first = target.members[0].clone();
        let described = describe(&first);
        return options
            .connect_with(first)
            .await
            .map_err(|source| Error::Connect {
                target: described,
                source,
            });
    }
    let first = find_primary(&target).await?;
    let described = describe(&first);
    let pool = options
        .after_connect(|conn, _| Box::pin(primary::refuse_standby(conn)))
        .connect_with(first)
        .await
        .map_err(|source| Error::Connect {
            target: described,
            source,
        })?;
    tokio::spawn(primary::follow(pool.clone(), target));
    Ok(pool)
}

/// The member that accepts writes, waiting as long as a pool would for a connection (a
/// daemon started during a failover waits for its end); the error names what each member
/// answered.
async fn find_primary(target: &primary::Target) -> Result<PgConnectOptions> {
    let deadline = std::time::Instant::now() + ACQUIRE_TIMEOUT;
    loop {
        match target.find(None).await {
            Ok(found) => return Ok(found),
            Err(answers) if std::time::Instant::now() >= deadline => {
                return Err(Error::Unavailable(format!(
                    "no member of {} accepts writes: {}",
                    target.describe(),
                    target.explain(&answers)
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Applies every pending migration. Safe to run from several daemons at once: sqlx takes an
/// advisory lock. The rolling-upgrade rules (docs/operations.md) hold: a contract migration
/// is not applied while a daemon of a build it leaves behind serves, and a database a newer
/// build migrated is served without migrating when its `oldest_serving` allows this build,
/// refused otherwise.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    {
        let mut conn = pool.acquire().await?;
        let applied = schema::applied_migrations(&mut conn)
            .await?
            .unwrap_or_default();
        let raise = schema::pending(&applied)
            .iter()
            .filter_map(|p| p.raises_to)
            .max();
        if let Some(raise) = raise
            && schema::has_daemons_table(&mut conn).await?
        {
            let behind: Vec<String> = daemons::serving(&mut conn)
                .await?
                .into_iter()
                .filter(|d| d.schema_version < raise)
                .map(|d| {
                    format!(
                        "{} (crowbar {}, schema {})",
                        d.name, d.version, d.schema_version
                    )
                })
                .collect();
            if !behind.is_empty() {
                return Err(Error::Upgrade(format!(
                    "a pending migration removes what crowbar builds older than schema {raise} use, \
                     and these daemons run such builds: {}. Upgrade (or stop) them first, then \
                     start this build again; `crowbar migrate --check` shows the plan",
                    behind.join(", ")
                )));
            }
        }
    }
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        // the database carries migrations this build does not know: a newer build's
        Err(sqlx::migrate::MigrateError::VersionMissing(newest)) => serve_newer(pool, newest).await,
        Err(e) => Err(e.into()),
    }
}

/// A newer build migrated the database: this build serves it if the schema still allows
/// builds as old as this one, and refuses to start otherwise, saying so.
async fn serve_newer(pool: &PgPool, newer: i64) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let known = schema::newest_known();
    let oldest = schema::oldest_serving(&mut conn).await?;
    match oldest {
        Some(oldest) if oldest <= known => {
            tracing::warn!(
                database_has = newer,
                this_build_knows = known,
                oldest_serving = oldest,
                "a newer crowbar migrated this database; its schema still serves this build: \
                 serving without migrating (finish the upgrade: run the newer build everywhere)"
            );
            Ok(())
        }
        _ => Err(Error::Upgrade(format!(
            "the database's schema is newer than this crowbar: it carries migration {newer}, this \
             build knows migrations up to {known}, and the schema serves builds from {} on. Run the \
             newer crowbar (this build may not serve it)",
            oldest.map_or("a newer one".to_string(), |o| format!("schema {o}"))
        ))),
    }
}

/// True when the database answers and every embedded migration is applied.
pub async fn ready(pool: &PgPool) -> bool {
    let applied: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await;
    matches!(applied, Ok(n) if n as usize >= MIGRATOR.iter().count())
}

/// Where `options` point: `host:port` or `socket DIR`, never the user or password.
pub fn describe(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!("socket {}", dir.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}
