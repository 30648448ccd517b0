//! A real PostgreSQL database per test.
//!
//! With `DATABASE_URL` set (a role that may create databases) tests use that server;
//! otherwise one throwaway cluster per test process is started with crowbar's own
//! managed-PostgreSQL code and dies with the process. Each test gets a fresh database cloned
//! from a migrated template.

use std::{
    path::PathBuf,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use crowbar::{
    pg::{ManagedPostgres, PgOptions},
    secret::Secret,
};
use sqlx::{PgPool, postgres::PgConnectOptions};

struct Cluster {
    /// URL of a database to run CREATE DATABASE from.
    admin_url: PgConnectOptions,
    template: String,
    /// Kept alive for the whole process; its postmaster dies with the process.
    _managed: Option<ManagedPostgres>,
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub url: Secret,
}

pub async fn test_db() -> TestDb {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let cluster = cluster();
    let name = format!(
        "crowbar_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let admin = PgPool::connect_with(cluster.admin_url.clone())
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {}",
        cluster.template
    )))
    .execute(&admin)
    .await
    .expect("create test database");
    admin.close().await;
    let options = cluster.admin_url.clone().database(&name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.clone())
        .await
        .expect("connect to test database");
    TestDb {
        pool,
        url: Secret::new(url_of(&options)),
        name,
    }
}

/// A fresh database `name` on the test cluster, migrated up to (not including) `version`:
/// its pool and URL.
pub async fn database_before(version: i64, name: &str) -> (PgPool, String) {
    let cluster = cluster();
    let admin = PgPool::connect_with(cluster.admin_url.clone())
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let options = cluster.admin_url.clone().database(name);
    let pool = PgPool::connect_with(options.clone()).await.unwrap();
    let earlier = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let number: i64 = file.split('_').next().unwrap().parse().unwrap();
        if number < version {
            std::fs::copy(&path, earlier.path().join(&file)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    (pool, url_of(&options))
}

/// Drops database `name` (one [`database_before`] made), ending its sessions.
pub async fn drop_database(name: &str) {
    let admin = PgPool::connect_with(cluster().admin_url.clone())
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

fn url_of(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or("postgres");
    let user = options.get_username();
    match options.get_socket() {
        Some(dir) => format!(
            "postgres:///{database}?host={}&port={}&user={user}",
            dir.display(),
            options.get_port()
        ),
        None => format!(
            "postgres://{user}@{}:{}/{database}",
            options.get_host(),
            options.get_port()
        ),
    }
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    // Started on a thread of its own with its own runtime: tests each run their own runtime,
    // and the cluster must outlive all of them.
    CLUSTER.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(start_cluster())
        })
        .join()
        .expect("starting the test cluster panicked")
    })
}

async fn start_cluster() -> Cluster {
    let (admin_url, managed) = match std::env::var("DATABASE_URL") {
        Ok(url) => (
            url.parse().expect("DATABASE_URL is not a postgres URL"),
            None,
        ),
        Err(_) => {
            let dir = scratch_dir();
            let managed = ManagedPostgres::start_with(&dir, PgOptions::throwaway())
                .await
                .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
            let url: PgConnectOptions = managed.url_for("postgres").expose().parse().unwrap();
            (url, Some(managed))
        }
    };
    let template = format!("crowbar_template_{}", std::process::id());
    let admin = PgPool::connect_with(admin_url.clone())
        .await
        .expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {template}"
    )))
    .execute(&admin)
    .await
    .expect("drop old template");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {template}")))
        .execute(&admin)
        .await
        .expect("create template");
    admin.close().await;
    let pool = PgPool::connect_with(admin_url.clone().database(&template))
        .await
        .expect("connect to template");
    crowbar::db::migrate(&pool).await.expect("migrate template");
    pool.close().await;
    Cluster {
        admin_url,
        template,
        _managed: managed,
    }
}

/// `<tmp>/crowbar-test-pg-<pid>`, after removing those of test processes that are gone.
fn scratch_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("crowbar-test-pg-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tmp.join(format!("crowbar-test-pg-{}", std::process::id()))
}
