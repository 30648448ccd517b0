//! `crowbar doctor`: checks what `crowbar serve` needs on this machine, with the same
//! settings, and says how to fix what is missing or wrong. One line per check (see
//! [`checks::Check`]); exit 0 unless a check failed. It changes nothing: it starts no
//! PostgreSQL, creates no directory and holds the listen address only for a moment.
//!
//! This file observes the machine (files, PATH, processes, sockets, the database); what the
//! observations mean is decided in `checks`.

mod checks;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};

use self::checks::{Check, Status};
use crate::{
    config::Settings,
    db::{self, schema},
    pg,
};

/// How long the database may take to answer before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check, prints one line each and a summary, and exits 1 when one failed.
pub async fn run(settings: Settings) -> ExitCode {
    let checks = gather(settings).await;
    for check in &checks {
        println!("{check}");
    }
    println!("{}", checks::summary(&checks));
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What this machine has, in the order `crowbar serve` needs it.
async fn gather(settings: Settings) -> Vec<Check> {
    let settings = match settings.with_absolute_paths() {
        Ok(absolute) => absolute,
        Err(e) => {
            return vec![Check::fail(
                "working directory",
                format!("cannot resolve the configured paths against it: {e}"),
                "run crowbar from an existing directory, or pass absolute paths",
            )];
        }
    };
    let is_root = nix::unistd::geteuid().is_root();
    let path = std::env::var("PATH").ok();
    let mut checks = Vec::new();
    checks.push(data_dir(&settings.data_dir));
    match &settings.database_url {
        Some(url) => checks.extend(external_database(url.expose()).await),
        None => checks.extend(private_postgres(&settings, is_root).await),
    }
    checks.push(checks::listen_check(
        settings.listen,
        TcpListener::bind(settings.listen).map(drop),
    ));
    let unavailable = settings
        .demo
        .then(|| crate::demo::nodes::namespace_nodes_unavailable(is_root, path.as_deref()))
        .flatten();
    checks.extend(checks::demo_checks(
        settings.demo,
        is_root,
        path.as_deref(),
        unavailable,
    ));
    checks.extend(optional_tools(&settings, is_root, path.as_deref()));
    checks
}

/// The data directory, or the nearest parent that exists when it does not yet.
fn data_dir(dir: &Path) -> Check {
    let nearest = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let writable = nix::unistd::access(
        nearest,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok();
    checks::data_dir_check(dir, nearest, nearest.is_dir(), writable)
}

/// The private PostgreSQL: its binaries, its user, its cluster, and the schema of the
/// `crowbar` database when a crowbar is running it now.
async fn private_postgres(settings: &Settings, is_root: bool) -> Vec<Check> {
    let explicit = settings.postgres_bin_dir.is_some();
    let located = pg::locate_binaries(settings.postgres_bin_dir.as_deref());
    let version = match &located {
        Ok(dir) => postgres_version(dir).await,
        Err(_) => None,
    };
    let location = pg::cluster_location(&settings.data_dir);
    let cluster_major = location.as_ref().ok().and_then(|l| cluster_version(&l.dir));
    let mut checks = vec![
        checks::binaries_check(located.as_deref(), version.as_ref(), explicit, is_root),
        checks::postgres_user_check(is_root, &location),
        checks::cluster_check(
            &location,
            cluster_major,
            version.as_ref().map(|v| v.major),
            is_root,
        ),
    ];
    let running = location.as_ref().ok().and_then(|l| running_cluster(&l.dir));
    checks.extend(match running {
        Some(url) => database(&url, "the private PostgreSQL").await,
        None => vec![Check::skip(
            checks::SCHEMA,
            "the private PostgreSQL is not running; `crowbar serve` starts it and applies \
             the migrations",
        )],
    });
    checks
}

/// What `<bin>/postgres --version` says, if it says anything a server would.
async fn postgres_version(bin: &Path) -> Option<checks::PgVersion> {
    let out = tokio::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    checks::parse_postgres_version(&String::from_utf8_lossy(&out.stdout))
}

/// The major version that made the cluster in `dir` (its `PG_VERSION`), if there is one.
fn cluster_version(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The URL of the `crowbar` database when a postmaster serves the cluster in `dir`: its
/// `postmaster.pid` names a live process (line 1), its port (line 4) and socket directory
/// (line 5), and says `ready` (line 8). A cluster that is not running stays untouched.
fn running_cluster(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let pid: i32 = lines.first()?.parse().ok()?;
    let port: u16 = lines.get(3)?.parse().ok()?;
    let socket_dir = PathBuf::from(lines.get(4)?);
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    (alive && lines.get(7) == Some(&"ready") && socket_dir.is_absolute()).then(|| {
        format!(
            "postgres:///{db}?host={}&port={port}&user={db}",
            socket_dir.display(),
            db = pg::DATABASE
        )
    })
}

/// The server named by `--database-url`: reachable, new enough, and its schema.
async fn external_database(url: &str) -> Vec<Check> {
    let mut checks = vec![Check::skip(
        checks::BINARIES,
        "a database URL is given: crowbar runs no PostgreSQL of its own",
    )];
    checks.extend(database(url, "").await);
    checks
}

/// Connects to `url` (never printed: it may hold a password) and checks the server and the
/// schema. `name` names the server in the lines; empty: its host or socket.
async fn database(url: &str, name: &str) -> Vec<Check> {
    const SUBJECT: &str = "database";
    let hosts = match db::primary::Target::parse(url) {
        Ok(hosts) => hosts,
        Err(e) => {
            return vec![Check::fail(
                SUBJECT,
                e,
                "pass --database-url postgres://USER:PASSWORD@HOST:PORT/DATABASE (several \
                 hosts: HOST1:PORT,HOST2:PORT)",
            )];
        }
    };
    let mut checks = Vec::new();
    let options = if hosts.wants_primary {
        let answers = hosts.ask_all().await;
        let primaries: Vec<&PgConnectOptions> = hosts
            .members
            .iter()
            .zip(&answers)
            .filter(|(_, a)| **a == db::primary::Answer::Primary)
            .map(|(m, _)| m)
            .collect();
        let said = hosts.explain(&answers);
        match primaries.as_slice() {
            [one] => {
                checks.push(Check::ok("database members", said));
                (*one).clone()
            }
            [] => {
                checks.push(Check::fail(
                    "database members",
                    format!("no member accepts writes: {said}"),
                    "check the failover manager (e.g. `patronictl list`); crowbar waits for a primary",
                ));
                return checks;
            }
            [first, ..] => {
                checks.push(Check::warn(
                    "database members",
                    format!("more than one member accepts writes (split brain?): {said}"),
                    "check the failover manager at once (e.g. `patronictl list`)",
                ));
                (*first).clone()
            }
        }
    } else {
        hosts.members[0].clone()
    };
    let target = if name.is_empty() {
        describe(&options)
    } else {
        name.to_string()
    };
    let connected =
        tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            checks.push(unreachable(&target, &e.to_string()));
            return checks;
        }
        Err(_) => {
            checks.push(unreachable(
                &target,
                &format!("no answer within {CONNECT_TIMEOUT:?}"),
            ));
            return checks;
        }
    };
    checks.extend(match inspect(&mut conn, &target).await {
        Ok(checks) => checks,
        Err(e) => vec![Check::fail(
            SUBJECT,
            format!("{target} answers, but reading its version and migrations failed: {e}"),
            "check that the URL's user may read the database (GRANT, or the database owner)",
        )],
    });
    let _ = conn.close().await;
    checks
}

fn unreachable(target: &str, why: &str) -> Check {
    Check::fail(
        "database",
        format!("cannot reach PostgreSQL at {target}: {why}"),
        "start that server (Debian: `apt-get install postgresql`), or correct --database-url \
         (CROWBAR_DATABASE_URL)",
    )
}

/// The server's version and the schema against the migrations this binary carries.
async fn inspect(conn: &mut PgConnection, target: &str) -> db::Result<Vec<Check>> {
    let (version_num, version) = schema::server_version(conn).await?;
    let applied = schema::applied_migrations(conn).await?;
    Ok(vec![
        checks::server_check(target, version_num, &version),
        checks::schema_check(target, &schema::known_migrations(), applied.as_deref()),
    ])
}

/// `host:port/database` or `socket DIR, database D`: never the user or password.
fn describe(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or("(the user's database)");
    match options.get_socket() {
        Some(_) => format!("{}, database {database}", db::describe(options)),
        None => format!("{}/{database}", db::describe(options)),
    }
}

/// The programs of optional features; dnsmasq's line also says whether it runs with the
/// pid file crowbar signals.
fn optional_tools(settings: &Settings, is_root: bool, path: Option<&str>) -> Vec<Check> {
    let dnsmasq_dir = settings
        .provisioner
        .dnsmasq_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("dnsmasq"));
    checks::OPTIONAL_TOOLS
        .iter()
        .map(|optional| {
            let tool = &optional.tool;
            let found = checks::find_tool(tool, path);
            let mut check = checks::tool_check(
                format!("{} (optional: {})", tool.name(), optional.needed_for),
                tool,
                found.as_deref(),
                Status::Warn,
                "",
                is_root,
            );
            if tool.package == "dnsmasq" && check.status == Status::Ok {
                check.detail.push_str(&dnsmasq_state(&dnsmasq_dir));
            }
            check
        })
        .collect()
}

/// `, running (pid N)` when the pid file crowbar signals names a live process, else where
/// that pid file is expected.
fn dnsmasq_state(dir: &Path) -> String {
    let pid_file = dir.join(crate::provisioner::dnsmasq::PID_FILE);
    let pid = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists());
    match pid {
        Some(pid) => format!(", running (pid {pid} in {})", pid_file.display()),
        None => format!(", not running (no live pid in {})", pid_file.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_targets_never_show_credentials() {
        let options: PgConnectOptions = "postgres://crowbar:s3cret@db.example.com:6543/site"
            .parse()
            .unwrap();
        assert_eq!(describe(&options), "db.example.com:6543/site");
        let options: PgConnectOptions = "postgres:///crowbar?host=/run/pg&user=crowbar"
            .parse()
            .unwrap();
        assert_eq!(describe(&options), "socket /run/pg, database crowbar");
    }

    #[test]
    fn only_a_ready_live_postmaster_counts_as_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_cluster(dir.path()), None);
        let me = std::process::id();
        let pid_file = |status: &str| {
            format!("{me}\n/d\n1700000000\n5432\n/d/run\n\n  5432001         0\n{status}\n")
        };
        fs::write(dir.path().join("postmaster.pid"), pid_file("ready")).unwrap();
        assert_eq!(
            running_cluster(dir.path()).as_deref(),
            Some("postgres:///crowbar?host=/d/run&port=5432&user=crowbar")
        );
        fs::write(dir.path().join("postmaster.pid"), pid_file("stopping")).unwrap();
        assert_eq!(running_cluster(dir.path()), None);
    }

    #[test]
    fn cluster_versions_come_from_pg_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cluster_version(dir.path()), None);
        fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(cluster_version(dir.path()), Some(15));
    }
}
