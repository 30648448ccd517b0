//! The verdicts of `crowbar doctor`: what each observation of this machine means for
//! `crowbar serve`, and the command that fixes it. Pure functions of what was observed (a
//! PATH string, whether crowbar runs as root, a bind error, the rows of the migrations
//! table), so each verdict is tested without the machine in that state.

use std::{
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::pg::{ClusterLocation, PgError};

/// The oldest PostgreSQL the migrations run on: they call `gen_random_uuid()` without the
/// pgcrypto extension (built in since 13) and use stored generated columns (since 12).
pub const MIN_POSTGRES_MAJOR: u32 = 13;

/// How a check came out. Only `Fail` makes `crowbar doctor` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Present and right.
    Ok,
    /// Not relevant to this configuration (e.g. the demo without `--demo`).
    Skip,
    /// `crowbar serve` works, but an optional feature lacks what it needs, or something
    /// will change at start (pending migrations).
    Warn,
    /// `crowbar serve` would fail (or would not do what its flags ask).
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report: `<status> <subject>: <detail>[ — fix: <command>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    pub subject: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Ok, subject, detail, None)
    }

    pub fn skip(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Skip, subject, detail, None)
    }

    pub fn warn(
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(Status::Warn, subject, detail, Some(fix.into()))
    }

    pub fn fail(
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(Status::Fail, subject, detail, Some(fix.into()))
    }

    fn new(
        status: Status,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Check {
        Check {
            status,
            subject: subject.into(),
            detail: detail.into(),
            fix,
        }
    }
}

impl fmt::Display for Check {
    /// One line, whatever the detail holds: the status in a column of its own, so that
    /// `grep ^FAIL` finds every problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(
            f,
            "{:<6}{}: {}",
            self.status.label(),
            self.subject,
            one_line(&self.detail)
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {}", one_line(fix))?;
        }
        Ok(())
    }
}

/// The last line: how many checks failed or warned.
pub fn summary(checks: &[Check]) -> String {
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    let warnings = match warned {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    match failed {
        0 => format!("everything `crowbar serve` needs is here{warnings}"),
        1 => format!("1 check failed{warnings}: fix the FAIL line above"),
        n => format!("{n} checks failed{warnings}: fix the FAIL lines above"),
    }
}

/// The command that installs a Debian package, with `sudo` when crowbar is not root.
pub fn install(package: &str, is_root: bool) -> String {
    let sudo = if is_root { "" } else { "sudo " };
    format!("{sudo}apt-get install {package}")
}

/// A program crowbar (or one of its features) runs, and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Where to look, in order: a name is searched on PATH, an absolute path is taken as is.
    pub probes: &'static [&'static str],
    /// The Debian package that provides it.
    pub package: &'static str,
}

impl Tool {
    /// The name the report uses: the program's file name.
    pub fn name(&self) -> &'static str {
        let first = self.probes[0];
        first.rsplit('/').next().unwrap_or(first)
    }
}

/// What the demo's namespace nodes run (`demo::nodes` decides whether they can; these lines
/// say which package is missing).
pub const DEMO_TOOLS: [Tool; 5] = [
    Tool {
        probes: &["ip"],
        package: "iproute2",
    },
    Tool {
        probes: &["unshare"],
        package: "util-linux",
    },
    Tool {
        probes: &["ssh-keygen"],
        package: "openssh-client",
    },
    Tool {
        probes: &["jq"],
        package: "jq",
    },
    Tool {
        probes: &["/usr/sbin/sshd"],
        package: "openssh-server",
    },
];

/// A program only some features need, and which.
#[derive(Debug, Clone, Copy)]
pub struct OptionalTool {
    pub tool: Tool,
    pub needed_for: &'static str,
}

/// Programs of optional features: missing ones are warnings, never failures. dnsmasq is run
/// by the operator (crowbar only writes its files and signals it), so it is also looked for
/// in /usr/sbin, which is not on every user's PATH.
pub const OPTIONAL_TOOLS: [OptionalTool; 3] = [
    OptionalTool {
        tool: Tool {
            probes: &["dnsmasq", "/usr/sbin/dnsmasq"],
            package: "dnsmasq",
        },
        needed_for: "DHCP and DNS of provisioned nodes, roles dhcp-database and dns-database",
    },
    OptionalTool {
        tool: Tool {
            probes: &["ipmitool"],
            package: "ipmitool",
        },
        needed_for: "power control through IPMI BMCs",
    },
    OptionalTool {
        tool: Tool {
            probes: &["ansible-playbook"],
            package: "ansible-core",
        },
        needed_for: "roles run as Ansible playbooks",
    },
];

/// Where `tool` is, given the PATH crowbar runs with.
pub fn find_tool(tool: &Tool, path: Option<&str>) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    tool.probes.iter().find_map(|probe| {
        if probe.starts_with('/') {
            Some(PathBuf::from(probe)).filter(|p| p.is_file())
        } else {
            dirs.iter().map(|dir| dir.join(probe)).find(|p| p.is_file())
        }
    })
}

/// The line of a tool: `missing` is the status when it is not found.
pub fn tool_check(
    subject: String,
    tool: &Tool,
    found: Option<&Path>,
    missing: Status,
    consequence: &str,
    is_root: bool,
) -> Check {
    match found {
        Some(path) => Check::ok(subject, path.display().to_string()),
        None => {
            let place = match tool.probes {
                [absolute] if absolute.starts_with('/') => format!("not found at {absolute}"),
                _ => "not found on PATH".to_string(),
            };
            Check::new(
                missing,
                subject,
                format!("{place} (package {}){consequence}", tool.package),
                Some(install(tool.package, is_root)),
            )
        }
    }
}

/// The demo's lines: one per program and one for root, each a warning when missing (the
/// demo then runs on simulated nodes, it does not fail). `unavailable` is what `demo::nodes`
/// itself says; when it objects to something these lines did not flag, its reason is shown.
pub fn demo_checks(
    demo: bool,
    is_root: bool,
    path: Option<&str>,
    unavailable: Option<String>,
) -> Vec<Check> {
    if !demo {
        return vec![Check::skip(
            "demo",
            "--demo not given (it needs root, iproute2, util-linux, openssh-client, jq and \
             openssh-server for namespace nodes)",
        )];
    }
    const SIMULATED: &str = "; the demo runs on simulated nodes instead";
    let mut checks = vec![if is_root {
        Check::ok(
            "demo: root",
            "crowbar runs as root (namespace nodes need it)",
        )
    } else {
        Check::warn(
            "demo: root",
            format!("crowbar does not run as root{SIMULATED}"),
            "run it as root, e.g. `sudo crowbar serve --demo`",
        )
    }];
    for tool in &DEMO_TOOLS {
        let found = find_tool(tool, path);
        checks.push(tool_check(
            format!("demo: {}", tool.name()),
            tool,
            found.as_deref(),
            Status::Warn,
            SIMULATED,
            is_root,
        ));
    }
    let flagged = checks.iter().any(|c| c.status != Status::Ok);
    if let Some(reason) = unavailable
        && !flagged
    {
        checks.push(Check::warn(
            "demo: namespace nodes",
            format!("cannot run here: {reason}{SIMULATED}"),
            "see docs/ui.md for what namespace nodes need",
        ));
    }
    checks
}

/// A server version as `postgres --version` prints it: `postgres (PostgreSQL) 15.8 (Debian
/// 15.8-0+deb12u1)` gives major 15 and text `15.8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgVersion {
    pub major: u32,
    pub text: String,
}

pub fn parse_postgres_version(output: &str) -> Option<PgVersion> {
    let text = output
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_string();
    // since PostgreSQL 10 the major version is the first number (`16beta1` included)
    let major = text
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(PgVersion { major, text })
}

pub const BINARIES: &str = "PostgreSQL server binaries";

/// The private PostgreSQL's binaries: found, answering `--version`, new enough.
pub fn binaries_check(
    located: Result<&Path, &PgError>,
    version: Option<&PgVersion>,
    explicit: bool,
    is_root: bool,
) -> Check {
    let postgresql = install("postgresql", is_root);
    let dir = match located {
        Ok(dir) => dir,
        Err(error) => {
            let looked = match error {
                PgError::NotInstalled { looked } => looked.clone(),
                other => other.to_string(),
            };
            let fix = if explicit {
                format!("{postgresql}, or point --postgres-bin-dir at the directory of `postgres`")
            } else {
                format!("{postgresql} (or pass --database-url to use an existing server)")
            };
            return Check::fail(BINARIES, format!("none found: {looked}"), fix);
        }
    };
    match version {
        None => Check::fail(
            BINARIES,
            format!(
                "{} does not answer `--version` like a PostgreSQL server",
                dir.join("postgres").display()
            ),
            format!("{postgresql} (or point --postgres-bin-dir at a working installation)"),
        ),
        Some(v) if v.major < MIN_POSTGRES_MAJOR => Check::fail(
            BINARIES,
            format!(
                "{} is PostgreSQL {}; crowbar needs {MIN_POSTGRES_MAJOR} or newer",
                dir.display(),
                v.text
            ),
            format!(
                "{postgresql} (Debian 11 and newer ship {MIN_POSTGRES_MAJOR}+), then pass \
                 --postgres-bin-dir /usr/lib/postgresql/<version>/bin"
            ),
        ),
        Some(v) => Check::ok(
            BINARIES,
            format!("{} (PostgreSQL {})", dir.display(), v.text),
        ),
    }
}

/// Who runs the private PostgreSQL: the current user, or `postgres` when crowbar is root.
pub fn postgres_user_check(is_root: bool, location: &Result<ClusterLocation, PgError>) -> Check {
    const SUBJECT: &str = "PostgreSQL user";
    match location {
        Err(PgError::NoUnprivilegedUser) => Check::fail(
            SUBJECT,
            "crowbar runs as root and runs its PostgreSQL as the user `postgres`, which does \
             not exist",
            format!(
                "{} (it creates the user), or `useradd --system --home /var/lib/postgresql postgres`",
                install("postgresql", true)
            ),
        ),
        _ if is_root => Check::ok(
            SUBJECT,
            "`postgres` runs the private PostgreSQL (PostgreSQL refuses to run as root)",
        ),
        _ => Check::ok(
            SUBJECT,
            "the private PostgreSQL runs as the current user (crowbar is not root)",
        ),
    }
}

pub const CLUSTER: &str = "private PostgreSQL cluster";

/// Where the private cluster lives, and whether the binaries can run what is there.
/// `cluster_major` is the cluster's `PG_VERSION` when it exists.
pub fn cluster_check(
    location: &Result<ClusterLocation, PgError>,
    cluster_major: Option<u32>,
    binaries_major: Option<u32>,
    is_root: bool,
) -> Check {
    let location = match location {
        Ok(location) => location,
        Err(PgError::NoUnprivilegedUser) => {
            return Check::skip(CLUSTER, "decided once the `postgres` user exists");
        }
        Err(error) => {
            return Check::fail(
                CLUSTER,
                error.to_string(),
                "pass --data-dir with a directory crowbar can use, e.g. /var/lib/crowbar",
            );
        }
    };
    let dir = location.dir.display();
    let state = match cluster_major {
        Some(major) => format!("exists, PostgreSQL {major}"),
        None => "created at first start".to_string(),
    };
    if let (Some(cluster), Some(binaries)) = (cluster_major, binaries_major)
        && cluster != binaries
    {
        return Check::fail(
            CLUSTER,
            format!(
                "{dir} was made by PostgreSQL {cluster}, the server binaries are {binaries}; \
                 PostgreSQL cannot run a cluster of another major version"
            ),
            format!(
                "{} and pass --postgres-bin-dir /usr/lib/postgresql/{cluster}/bin (or upgrade \
                 the cluster with pg_upgrade, see docs/operations.md)",
                install(&format!("postgresql-{cluster}"), is_root)
            ),
        );
    }
    match &location.relocated {
        Some(why) => Check::ok(
            CLUSTER,
            format!("{dir} ({state}); kept there because {why}"),
        ),
        None => Check::ok(CLUSTER, format!("{dir} ({state})")),
    }
}

/// The data directory: crowbar writes its key, token and cluster there. `nearest` is the
/// directory itself when it exists, else its nearest existing parent (crowbar creates the
/// rest); `writable` whether crowbar may write in `nearest`.
pub fn data_dir_check(dir: &Path, nearest: &Path, is_dir: bool, writable: bool) -> Check {
    const SUBJECT: &str = "data directory";
    let fix = "pass --data-dir with a directory crowbar may write, e.g. /var/lib/crowbar \
               (or fix the owner: `chown -R $(id -un) DIR`)";
    if !is_dir {
        return Check::fail(
            SUBJECT,
            format!("{} exists and is not a directory", nearest.display()),
            fix,
        );
    }
    if !writable {
        return Check::fail(
            SUBJECT,
            format!("{} is not writable by crowbar", nearest.display()),
            fix,
        );
    }
    if nearest == dir {
        Check::ok(SUBJECT, dir.display().to_string())
    } else {
        Check::ok(
            SUBJECT,
            format!("{} (created at first start)", dir.display()),
        )
    }
}

pub const LISTEN: &str = "listen address";

/// Whether `crowbar serve` can listen on `addr`: `bound` is what binding it just did.
pub fn listen_check(addr: SocketAddr, bound: Result<(), io::Error>) -> Check {
    let port = addr.port();
    match bound {
        Ok(()) if port == 0 => Check::ok(LISTEN, format!("{addr}: a free port is picked at start")),
        Ok(()) => Check::ok(LISTEN, format!("{addr} is free")),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Check::fail(
            LISTEN,
            format!("{addr} is taken: another program (probably another crowbar) listens there"),
            format!(
                "pass --listen ADDR:PORT (or set CROWBAR_LISTEN) to use another address; \
                 `ss -ltnp 'sport = :{port}'` shows who listens"
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Check::fail(
            LISTEN,
            format!("{addr}: only root may listen on ports below 1024"),
            "run crowbar as root, or pass --listen ADDR:PORT with a port of 1024 or above",
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Check::fail(
            LISTEN,
            format!("{addr}: no interface of this machine has that address"),
            "pass --listen with an address of this machine (`ip -brief address` lists them)",
        ),
        Err(e) => Check::fail(
            LISTEN,
            format!("cannot listen on {addr}: {e}"),
            "pass --listen ADDR:PORT with another address",
        ),
    }
}

pub use crate::db::schema::MigrationRow;

pub const SCHEMA: &str = "database schema";

/// The applied migrations (`None`: no migrations table yet) against the binary's own.
pub fn schema_check(
    target: &str,
    known: &[MigrationRow],
    applied: Option<&[MigrationRow]>,
) -> Check {
    let applied = applied.unwrap_or_default();
    let latest = known.iter().map(|m| m.version).max().unwrap_or(0);
    let newer: Vec<i64> = applied
        .iter()
        .filter(|a| !known.iter().any(|k| k.version == a.version))
        .map(|a| a.version)
        .collect();
    if !newer.is_empty() {
        return Check::fail(
            SCHEMA,
            format!(
                "{target} has migrations this binary does not know ({}): a newer crowbar \
                 migrated it (this one knows versions up to {latest})",
                list(&newer)
            ),
            "run the newer crowbar (or point --database-url at another database)",
        );
    }
    if let Some(failed) = applied.iter().find(|a| !a.success) {
        return Check::fail(
            SCHEMA,
            format!(
                "{target}: migration {} failed partway and is recorded as unfinished",
                failed.version
            ),
            format!(
                "repair the schema by hand, then `DELETE FROM _sqlx_migrations WHERE version = {}` \
                 and run `crowbar migrate`",
                failed.version
            ),
        );
    }
    let modified: Vec<i64> = applied
        .iter()
        .filter(|a| {
            known
                .iter()
                .any(|k| k.version == a.version && k.checksum != a.checksum)
        })
        .map(|a| a.version)
        .collect();
    if !modified.is_empty() {
        return Check::fail(
            SCHEMA,
            format!(
                "{target}: applied migrations differ from those this binary carries (versions {})",
                list(&modified)
            ),
            "run the crowbar build that migrated this database",
        );
    }
    let pending = known.len() - applied.len();
    match pending {
        0 => Check::ok(SCHEMA, format!("{target}: up to date (version {latest})")),
        n => Check::warn(
            SCHEMA,
            format!(
                "{target}: {n} migration{} pending (the database is at version {}, this binary \
                 at {latest})",
                if n == 1 { "" } else { "s" },
                applied.iter().map(|a| a.version).max().unwrap_or(0)
            ),
            "`crowbar migrate`, or starting `crowbar serve`, applies them",
        ),
    }
}

/// The database server: reachable, and new enough. `version_num` is `server_version_num`.
pub fn server_check(target: &str, version_num: i64, version: &str) -> Check {
    const SUBJECT: &str = "database";
    let major = version_num / 10_000;
    if major < i64::from(MIN_POSTGRES_MAJOR) {
        return Check::fail(
            SUBJECT,
            format!(
                "{target} is PostgreSQL {version}; crowbar needs {MIN_POSTGRES_MAJOR} or newer"
            ),
            format!(
                "upgrade that server to PostgreSQL {MIN_POSTGRES_MAJOR} or newer (Debian: \
                 `apt-get install postgresql` and `pg_upgradecluster`)"
            ),
        );
    }
    Check::ok(SUBJECT, format!("{target} answers (PostgreSQL {version})"))
}

fn list(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_put_the_status_in_a_column_and_the_fix_last() {
        let line = Check::fail("listen address", "taken", "pass --listen").to_string();
        assert_eq!(line, "FAIL  listen address: taken — fix: pass --listen");
        assert_eq!(Check::ok("a", "b").to_string(), "ok    a: b");
        // an error spread over lines still makes one line
        assert_eq!(Check::skip("a", "b\n  c").to_string(), "skip  a: b c");
    }

    #[test]
    fn the_summary_counts_failures_and_warnings() {
        let ok = Check::ok("a", "b");
        let warn = Check::warn("a", "b", "c");
        let fail = Check::fail("a", "b", "c");
        assert_eq!(
            summary(&[ok.clone(), warn.clone()]),
            "everything `crowbar serve` needs is here (1 warning)"
        );
        assert_eq!(
            summary(&[fail.clone(), fail, warn.clone(), warn]),
            "2 checks failed (2 warnings): fix the FAIL lines above"
        );
        assert_eq!(summary(&[ok]), "everything `crowbar serve` needs is here");
    }

    #[test]
    fn postgres_versions_are_read_from_the_version_line() {
        let v = parse_postgres_version("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n");
        assert_eq!(
            v,
            Some(PgVersion {
                major: 15,
                text: "15.8".into()
            })
        );
        assert_eq!(
            parse_postgres_version("postgres (PostgreSQL) 17beta2").map(|v| v.major),
            Some(17)
        );
        assert_eq!(parse_postgres_version("bash: postgres: not found"), None);
    }

    #[test]
    fn missing_or_old_binaries_fail_with_the_package_to_install() {
        let missing = PgError::NotInstalled {
            looked: "looked everywhere".into(),
        };
        let line = binaries_check(Err(&missing), None, false, true).to_string();
        assert!(
            line.starts_with("FAIL  PostgreSQL server binaries: none found"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "fix: apt-get install postgresql (or pass --database-url to use an existing server)"
            ),
            "{line}"
        );
        let line = binaries_check(Err(&missing), None, true, false).to_string();
        assert!(
            line.contains("sudo apt-get install postgresql, or point --postgres-bin-dir"),
            "{line}"
        );

        let dir = Path::new("/usr/lib/postgresql/12/bin");
        let old = parse_postgres_version("postgres (PostgreSQL) 12.19").unwrap();
        let check = binaries_check(Ok(dir), Some(&old), false, true);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("needs 13 or newer"), "{check}");
        let new = parse_postgres_version("postgres (PostgreSQL) 13.0").unwrap();
        assert_eq!(
            binaries_check(Ok(dir), Some(&new), false, true).to_string(),
            "ok    PostgreSQL server binaries: /usr/lib/postgresql/12/bin (PostgreSQL 13.0)"
        );
        assert_eq!(
            binaries_check(Ok(dir), None, false, true).status,
            Status::Fail
        );
    }

    #[test]
    fn clusters_report_where_they_live_and_refuse_another_major_version() {
        let here = Ok(ClusterLocation {
            dir: "/d/postgres".into(),
            relocated: None,
        });
        assert_eq!(
            cluster_check(&here, None, Some(15), true).to_string(),
            "ok    private PostgreSQL cluster: /d/postgres (created at first start)"
        );
        assert_eq!(
            cluster_check(&here, Some(15), Some(15), true).status,
            Status::Ok
        );
        let other = cluster_check(&here, Some(13), Some(15), true);
        assert_eq!(other.status, Status::Fail);
        assert!(
            other
                .fix
                .as_deref()
                .unwrap()
                .starts_with("apt-get install postgresql-13"),
            "{other}"
        );
        let moved = Ok(ClusterLocation {
            dir: "/var/lib/crowbar/postgres-0123456789ab".into(),
            relocated: Some("the `postgres` user cannot reach /root".into()),
        });
        let check = cluster_check(&moved, None, Some(15), true);
        assert_eq!(check.status, Status::Ok);
        assert!(
            check
                .detail
                .contains("/var/lib/crowbar/postgres-0123456789ab"),
            "{check}"
        );
        assert!(check.detail.contains("cannot reach /root"), "{check}");
    }

    #[test]
    fn root_without_a_postgres_user_fails_and_says_how_to_create_it() {
        let location = Err(PgError::NoUnprivilegedUser);
        let user = postgres_user_check(true, &location);
        assert_eq!(user.status, Status::Fail);
        assert!(
            user.fix
                .as_deref()
                .unwrap()
                .contains("apt-get install postgresql")
        );
        assert!(user.fix.as_deref().unwrap().contains("useradd --system"));
        assert_eq!(
            cluster_check(&location, None, None, true).status,
            Status::Skip
        );
    }

    #[test]
    fn data_directories_must_be_writable_directories() {
        let dir = Path::new("/srv/crowbar/var");
        assert_eq!(
            data_dir_check(dir, Path::new("/srv"), true, true).to_string(),
            "ok    data directory: /srv/crowbar/var (created at first start)"
        );
        assert_eq!(data_dir_check(dir, dir, true, true).status, Status::Ok);
        assert_eq!(data_dir_check(dir, dir, true, false).status, Status::Fail);
        assert_eq!(data_dir_check(dir, dir, false, true).status, Status::Fail);
    }

    #[test]
    fn a_taken_address_fails_and_says_to_pass_another() {
        let addr: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let taken = listen_check(addr, Err(io::ErrorKind::AddrInUse.into()));
        assert_eq!(taken.status, Status::Fail);
        assert!(taken.detail.contains("127.0.0.1:3000 is taken"), "{taken}");
        assert!(taken.fix.as_deref().unwrap().contains("--listen ADDR:PORT"));
        assert!(taken.fix.as_deref().unwrap().contains("sport = :3000"));
        assert_eq!(
            listen_check(addr, Ok(())).to_string(),
            "ok    listen address: 127.0.0.1:3000 is free"
        );
        let denied = listen_check(addr, Err(io::ErrorKind::PermissionDenied.into()));
        assert!(denied.detail.contains("below 1024"), "{denied}");
    }

    #[test]
    fn the_demo_is_skipped_without_the_flag_and_warns_per_missing_package() {
        let skipped = demo_checks(false, true, None, None);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].status, Status::Skip);

        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().to_str().unwrap();
        let checks = demo_checks(true, false, Some(path), Some("not running as root".into()));
        assert!(checks.iter().all(|c| c.status != Status::Fail));
        let text: Vec<String> = checks.iter().map(Check::to_string).collect();
        let text = text.join("\n");
        for (program, package) in [
            ("ip", "iproute2"),
            ("unshare", "util-linux"),
            ("ssh-keygen", "openssh-client"),
            ("jq", "jq"),
        ] {
            assert!(
                text.contains(&format!(
                    "warn  demo: {program}: not found on PATH (package {package}); the demo runs \
                     on simulated nodes instead — fix: sudo apt-get install {package}"
                )),
                "{text}"
            );
        }
        assert!(text.contains("warn  demo: root"), "{text}");
        // the demo's own reason, when these lines found nothing wrong
        let all_there = tempfile::tempdir().unwrap();
        for tool in &DEMO_TOOLS[..4] {
            std::fs::write(all_there.path().join(tool.name()), "").unwrap();
        }
        let path = all_there.path().to_str().unwrap();
        let checks = demo_checks(true, true, Some(path), Some("something else".into()));
        // (only sshd, at its fixed place, depends on this machine)
        let sshd_here = Path::new("/usr/sbin/sshd").is_file();
        let own_reason = checks
            .iter()
            .any(|c| c.subject == "demo: namespace nodes" && c.detail.contains("something else"));
        assert_eq!(own_reason, sshd_here, "{checks:?}");
    }

    #[test]
    fn the_demo_programs_are_those_namespace_nodes_need() {
        // with every program of DEMO_TOOLS on PATH, demo::nodes misses none on PATH
        let dir = tempfile::tempdir().unwrap();
        for tool in DEMO_TOOLS.iter().filter(|t| !t.probes[0].starts_with('/')) {
            std::fs::write(dir.path().join(tool.name()), "").unwrap();
        }
        let reason = crate::demo::nodes::namespace_nodes_unavailable(
            true,
            Some(dir.path().to_str().unwrap()),
        );
        assert!(
            !reason
                .as_deref()
                .unwrap_or("")
                .contains("not found on PATH"),
            "{reason:?}"
        );
    }

    #[test]
    fn tools_are_found_on_path_or_at_their_absolute_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ipmitool"), "").unwrap();
        let path = dir.path().to_str().unwrap();
        let ipmitool = &OPTIONAL_TOOLS[1].tool;
        assert_eq!(
            find_tool(ipmitool, Some(path)),
            Some(dir.path().join("ipmitool"))
        );
        assert_eq!(find_tool(ipmitool, None), None);
        let absolute = Tool {
            probes: &["nothing-here", "/bin/sh"],
            package: "dash",
        };
        assert_eq!(
            find_tool(&absolute, Some(path)),
            Some(PathBuf::from("/bin/sh"))
        );
        let check = tool_check("x".into(), ipmitool, None, Status::Warn, "", true);
        assert_eq!(
            check.to_string(),
            "warn  x: not found on PATH (package ipmitool) — fix: apt-get install ipmitool"
        );
    }

    fn rows(versions: &[i64]) -> Vec<MigrationRow> {
        versions
            .iter()
            .map(|&version| MigrationRow {
                version,
                checksum: vec![version as u8],
                success: true,
            })
            .collect()
    }

    #[test]
    fn schemas_are_up_to_date_pending_or_from_a_newer_crowbar() {
        let known = rows(&[1, 2, 3]);
        let db = "db.example.com:5432/crowbar";
        assert_eq!(
            schema_check(db, &known, Some(&rows(&[1, 2, 3]))).to_string(),
            "ok    database schema: db.example.com:5432/crowbar: up to date (version 3)"
        );
        let pending = schema_check(db, &known, Some(&rows(&[1])));
        assert_eq!(pending.status, Status::Warn);
        assert!(pending.detail.contains("2 migrations pending"), "{pending}");
        assert!(pending.fix.as_deref().unwrap().contains("crowbar migrate"));
        let empty = schema_check(db, &known, None);
        assert!(empty.detail.contains("3 migrations pending"), "{empty}");
        let newer = schema_check(db, &known, Some(&rows(&[1, 2, 3, 4])));
        assert_eq!(newer.status, Status::Fail);
        assert!(newer.detail.contains("does not know (4)"), "{newer}");
        assert!(newer.detail.contains("newer crowbar"), "{newer}");
        let mut failed = rows(&[1, 2]);
        failed[1].success = false;
        assert_eq!(schema_check(db, &known, Some(&failed)).status, Status::Fail);
        let mut modified = rows(&[1, 2]);
        modified[0].checksum = vec![9];
        let modified = schema_check(db, &known, Some(&modified));
        assert_eq!(modified.status, Status::Fail);
        assert!(
            modified
                .detail
                .contains("differ from those this binary carries (versions 1)"),
            "{modified}"
        );
    }

    #[test]
    fn old_servers_fail() {
        assert_eq!(
            server_check("h:5432/db", 120_019, "12.19").status,
            Status::Fail
        );
        assert_eq!(
            server_check("h:5432/db", 150_008, "15.8").to_string(),
            "ok    database: h:5432/db answers (PostgreSQL 15.8)"
        );
    }
}
