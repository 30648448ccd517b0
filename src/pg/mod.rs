//! The private PostgreSQL behind zero-configuration `crowbar serve` (and the test harness).
//!
//! A cluster lives in one directory, is reachable only through a Unix socket that only its
//! owner (and root) can open, and runs as an unprivileged user: `postgres` when crowbar runs
//! as root (PostgreSQL refuses root), the current user otherwise. The postmaster is a child of
//! a dedicated thread and gets SIGINT if crowbar dies, so a crash never leaves it behind.
//!
//! One cluster directory, one user: crowbar holds an exclusive `flock` on the directory and
//! hands that lock down to initdb and the postmaster, so the directory stays locked until the
//! last process of the cluster is gone, even after crowbar itself crashed. A second crowbar on
//! the same directory is refused; one started while what a crashed crowbar left is still
//! winding down waits for it (up to 30 s).

use std::{
    fs,
    os::{
        fd::{AsRawFd, RawFd},
        unix::{
            fs::{OpenOptionsExt, PermissionsExt},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Gid, Pid, Uid, User},
};
use tokio::sync::watch;

use crate::secret::Secret;

/// The superuser and database crowbar creates in its private cluster.
pub const DATABASE: &str = "crowbar";
const SOCKET_PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes; leave room for `/.s.PGSQL.5432`.
const MAX_SOCKET_DIR: usize = 90;
/// How long a new start waits for the cluster of a crashed crowbar to finish shutting down.
const ORPHAN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "no PostgreSQL server binaries found ({looked}).\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql`) or point --postgres-bin-dir at them, \
         or pass --database-url postgres://USER@HOST/DB (or set CROWBAR_DATABASE_URL) to use an existing server"
    )]
    NotInstalled { looked: String },
    #[error(
        "crowbar runs as root, so it runs its private PostgreSQL as the unprivileged user `postgres`, which does not exist.\n\
         Install the postgresql package (it creates that user) or create it: `useradd --system --home /var/lib/postgresql postgres`"
    )]
    NoUnprivilegedUser,
    #[error(
        "PostgreSQL is already running on {dir}{}: another crowbar is probably using this data directory.\n\
         Stop it, or pass --data-dir to use another directory",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    AlreadyRunning { dir: PathBuf, pid: Option<i32> },
    #[error("{what} failed in {dir}: {detail}")]
    Failed {
        what: &'static str,
        dir: PathBuf,
        detail: String,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a cluster is tuned.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Off only for throwaway clusters (tests, benchmarks): faster, unsafe on power loss.
    pub durable: bool,
    pub max_connections: u32,
    /// Where `postgres` and `initdb` are; `None` searches (see [`find_binaries`]).
    pub bin_dir: Option<PathBuf>,
    /// More server settings (`name`, `value`), e.g. a benchmark's
    /// `shared_preload_libraries`.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            durable: true,
            max_connections: 100,
            bin_dir: None,
            settings: Vec::new(),
        }
    }
}

impl PgOptions {
    /// Settings for test and benchmark clusters: no fsync, many connections.
    pub fn throwaway() -> Self {
        Self {
            durable: false,
            max_connections: 300,
            bin_dir: None,
            settings: Vec::new(),
        }
    }
}

/// A running private cluster. Call [`ManagedPostgres::stop`] to shut it down cleanly.
#[derive(Debug)]
pub struct ManagedPostgres {
    dir: PathBuf,
    socket_dir: PathBuf,
    /// Whether the socket directory is a temporary one of its own, removed on stop.
    temporary_socket_dir: bool,
    pid: Pid,
    exited: watch::Receiver<bool>,
    url: Secret,
    /// The open cluster directory, `flock`ed; initdb and the postmaster inherit it.
    lock: fs::File,
}

impl ManagedPostgres {
    /// Starts (initializing on first use) the cluster in `dir` with production settings.
    pub async fn start(dir: &Path) -> Result<Self, PgError> {
        Self::start_with(dir, PgOptions::default()).await
    }

    pub async fn start_with(dir: &Path, options: PgOptions) -> Result<Self, PgError> {
        let dir = absolute(dir)?;
        let bin = locate_binaries(options.bin_dir.as_deref())?;
        let owner = Owner::for_postgres()?;
        prepare_dir(&dir, &owner)?;
        let lock = lock_cluster(&dir).await?;
        if !dir.join("PG_VERSION").exists() {
            tracing::info!(dir = %dir.display(), bin = %bin.display(), "initializing the private PostgreSQL cluster");
            initdb(&bin, &dir, &owner, &options, lock.as_raw_fd()).await?;
        }
        clear_stale_pid_file(&dir)?;
        let (socket_dir, temporary_socket_dir) = socket_dir_for(&dir, &owner)?;
        let (pid, exited) =
            spawn_postmaster(&bin, &dir, &socket_dir, &owner, &options, lock.as_raw_fd())?;
        let url = Secret::new(format!(
            "postgres:///{DATABASE}?host={}&port={SOCKET_PORT}&user={DATABASE}",
            socket_dir.display()
        ));
        let pg = ManagedPostgres {
            dir,
            socket_dir,
            temporary_socket_dir,
            pid,
            exited,
            url,
            lock,
        };
        if let Err(e) = pg.wait_ready().await {
            pg.stop().await;
            return Err(e);
        }
        tracing::info!(dir = %pg.dir.display(), pid = pid.as_raw(), "private PostgreSQL is up");
        Ok(pg)
    }

    /// The connection URL of the `crowbar` database (Unix socket, trust auth).
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// The URL of another database in the same cluster.
    pub fn url_for(&self, database: &str) -> Secret {
        Secret::new(format!(
            "postgres:///{database}?host={}&port={SOCKET_PORT}&user={DATABASE}",
            self.socket_dir.display()
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Fast shutdown (SIGINT: abort sessions, checkpoint), escalating if it hangs.
    pub async fn stop(mut self) {
        for (signal, grace) in [
            (Signal::SIGINT, Duration::from_secs(30)),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if *self.exited.borrow() {
                break;
            }
            let _ = kill(self.pid, signal);
            let _ = tokio::time::timeout(grace, self.exited.wait_for(|done| *done)).await;
        }
        if self.temporary_socket_dir {
            let _ = fs::remove_dir_all(&self.socket_dir);
        }
        // Closing our descriptor leaves the lock to any straggler that still holds it.
        drop(self.lock);
        tracing::info!(dir = %self.dir.display(), "private PostgreSQL stopped");
    }

    /// Waits until the server accepts connections (one attempt at a time, so that a server
    /// that exits is noticed at once), then creates the `crowbar` database if needed.
    async fn wait_ready(&self) -> Result<(), PgError> {
        use sqlx::Connection;
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_url = self.url_for("postgres");
        let mut conn = loop {
            if *self.exited.borrow() {
                return Err(self.failed("starting PostgreSQL", "the server exited"));
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::PgConnection::connect(admin_url.expose()),
            )
            .await;
            match attempt {
                Ok(Ok(conn)) => break conn,
                Ok(Err(e)) if Instant::now() > deadline => {
                    return Err(self.failed("waiting for PostgreSQL", &e.to_string()));
                }
                Err(_) if Instant::now() > deadline => {
                    return Err(self.failed("waiting for PostgreSQL", "connecting timed out"));
                }
                _ => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| self.failed("checking the crowbar database", &e.to_string()))?;
        if !exists {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&mut conn)
                .await
                .map_err(|e| self.failed("creating the crowbar database", &e.to_string()))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    fn failed(&self, what: &'static str, detail: &str) -> PgError {
        PgError::Failed {
            what,
            dir: self.dir.clone(),
            detail: format!("{detail}\n{}", log_tail(&self.dir)),
        }
    }
}

/// Where root keeps the clusters of data directories that `postgres` cannot reach.
pub const RELOCATED_CLUSTERS: &str = "/var/lib/crowbar";

/// Where the private cluster of a data directory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLocation {
    /// The cluster directory (absolute).
    pub dir: PathBuf,
    /// Why it is not `<data dir>/postgres`, when it is not.
    pub relocated: Option<String>,
}

/// Where the private cluster of `data_dir` lives: `<data dir>/postgres`, unless crowbar runs
/// as root and the `postgres` user cannot reach that place (a checkout under `/root`, mode
/// 0700, is the usual case). Then it lives in [`RELOCATED_CLUSTERS`]`/postgres-<hash of the
/// data directory's path>`, so the user's directories keep their permissions. A cluster
/// already in `<data dir>/postgres` always stays there. Creates nothing.
pub fn cluster_location(data_dir: &Path) -> Result<ClusterLocation, PgError> {
    let data_dir = absolute(data_dir)?;
    let preferred = data_dir.join("postgres");
    let owner = Owner::for_postgres()?;
    if !owner.switch || preferred.join("PG_VERSION").exists() {
        return Ok(ClusterLocation {
            dir: preferred,
            relocated: None,
        });
    }
    // The nearest directory that exists: crowbar creates the rest, traversable by all.
    let existing = preferred
        .ancestors()
        .find(|dir| dir.is_dir())
        .unwrap_or(Path::new("/"));
    if owner.passes("-x", existing) {
        return Ok(ClusterLocation {
            dir: preferred,
            relocated: None,
        });
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    Ok(ClusterLocation {
        dir: Path::new(RELOCATED_CLUSTERS).join(format!("postgres-{}", hex::encode(&digest[..6]))),
        relocated: Some(format!(
            "the `postgres` user cannot reach {} (a parent directory is private)",
            existing.display()
        )),
    })
}

/// Creates `parent` ([`RELOCATED_CLUSTERS`]) as root's, mode 0755, and refuses it when it
/// is not a plain directory that only root owns and may write: nobody else may put or
/// change anything where root keeps clusters.
fn prepare_relocated_parent(parent: &Path) -> Result<(), PgError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new().mode(0o755).create(parent) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(io_err(parent)(e));
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(parent).map_err(io_err(parent))?;
    if !meta.file_type().is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(PgError::Failed {
            what: "preparing the directory of relocated clusters",
            dir: parent.to_path_buf(),
            detail: "expected a directory owned by root and writable only by root (not a \
                     symbolic link); move it away and start again"
                .into(),
        });
    }
    Ok(())
}

/// The server binaries to use: only `explicit` when given, else what [`find_binaries`] finds.
pub fn locate_binaries(explicit: Option<&Path>) -> Result<PathBuf, PgError> {
    match explicit {
        Some(dir) => {
            let dir = absolute(dir)?;
            if has_server(&dir) {
                Ok(dir)
            } else {
                Err(PgError::NotInstalled {
                    looked: format!(
                        "no `postgres` and `initdb` in {}, the given PostgreSQL bin directory",
                        dir.display()
                    ),
                })
            }
        }
        None => find_binaries().ok_or_else(|| PgError::NotInstalled {
            looked: "looked for `postgres` and `initdb` via pg_config, in /usr/lib/postgresql/*/bin and on PATH".into(),
        }),
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

/// Where the server binaries live: next to `pg_config --bindir`, the newest
/// /usr/lib/postgresql/<ver>/bin, or on PATH.
pub fn find_binaries() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| has_server(dir))
}

/// The account PostgreSQL runs as.
#[derive(Debug, Clone)]
struct Owner {
    uid: Uid,
    gid: Gid,
    /// Whether crowbar must switch to this account to run PostgreSQL.
    switch: bool,
}

impl Owner {
    fn for_postgres() -> Result<Self, PgError> {
        if !Uid::effective().is_root() {
            return Ok(Owner {
                uid: Uid::effective(),
                gid: Gid::effective(),
                switch: false,
            });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(PgError::NoUnprivilegedUser)?;
        Ok(Owner {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// Whether this account passes `test <flag> <path>` (`-x`: may open files under a
    /// directory, every directory on the way searchable; `-w`: may write it), asked of the
    /// kernel as that account.
    fn passes(&self, flag: &str, path: &Path) -> bool {
        let probe = self
            .command(PathBuf::from("/bin/test"))
            .arg(flag)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        matches!(probe, Ok(s) if s.success())
    }

    fn command(&self, program: PathBuf) -> Command {
        let mut cmd = Command::new(program);
        if self.switch {
            let (uid, gid) = (self.uid.as_raw(), self.gid.as_raw());
            // SAFETY: only async-signal-safe calls. Dropping supplementary groups must happen
            // before the uid switch, which std's `Command::uid` would do first.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(1, &gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, PgError> {
    std::path::absolute(dir).map_err(|source| PgError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PgError + '_ {
    move |source| PgError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn prepare_dir(dir: &Path, owner: &Owner) -> Result<(), PgError> {
    if owner.switch && dir.parent() == Some(Path::new(RELOCATED_CLUSTERS)) {
        prepare_relocated_parent(Path::new(RELOCATED_CLUSTERS))?;
    } else if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    own_dir(dir, owner, 0o700)?;
    // The unprivileged user must be able to reach the directory through its parents.
    if owner.switch && !owner.passes("-w", dir) {
        return Err(PgError::Failed {
            what: "preparing the data directory",
            dir: dir.to_path_buf(),
            detail: "the `postgres` user cannot reach it (a parent directory is private); \
                     pass --data-dir with a directory it can reach, e.g. /var/lib/crowbar"
                .into(),
        });
    }
    Ok(())
}

async fn initdb(
    bin: &Path,
    dir: &Path,
    owner: &Owner,
    options: &PgOptions,
    lock: RawFd,
) -> Result<(), PgError> {
    let mut cmd = owner.command(bin.join("initdb"));
    cmd.arg("-D")
        .arg(dir)
        .args(["-U", DATABASE, "-A", "trust", "-E", "UTF8", "--locale=C"])
        .current_dir(dir)
        .stdin(Stdio::null())
        // a terminal's Ctrl-C reaches crowbar only, which lets initdb finish
        .process_group(0)
        // initdb fsyncs file by file, which takes seconds; one syncfs below is as durable
        .arg("--no-sync");
    inherit_fd(&mut cmd, lock);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| PgError::Failed {
            what: "initdb",
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        })?
        .map_err(io_err(dir))?;
    if !out.status.success() {
        return Err(PgError::Failed {
            what: "initdb",
            dir: dir.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    if options.durable {
        // SAFETY: syncfs on a descriptor we own; no memory is involved.
        if unsafe { libc::syncfs(lock) } != 0 {
            return Err(PgError::Failed {
                what: "syncing the new cluster to disk",
                dir: dir.to_path_buf(),
                detail: std::io::Error::last_os_error().to_string(),
            });
        }
    }
    Ok(())
}

/// Takes the cluster directory's lock. While the cluster of a running crowbar holds it,
/// fails at once; while it is held by what a dead crowbar left (a server that is stopping
/// because its parent died, its last children, an initdb finishing), waits for it.
async fn lock_cluster(dir: &Path) -> Result<fs::File, PgError> {
    let file = fs::File::open(dir).map_err(io_err(dir))?;
    let deadline = Instant::now() + ORPHAN_WAIT;
    let mut waiting = false;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(PgError::Io {
                path: dir.to_path_buf(),
                source: error,
            });
        }
        let postmaster = PidFile::read(dir);
        let owned_by_a_live_crowbar = postmaster.as_ref().is_some_and(|pm| {
            is_alive(pm.pid) && pm.status != "stopping" && parent_runs_this_program(pm.pid)
        });
        if owned_by_a_live_crowbar || Instant::now() > deadline {
            return Err(PgError::AlreadyRunning {
                dir: dir.to_path_buf(),
                pid: postmaster.map(|pm| pm.pid),
            });
        }
        if !waiting {
            tracing::warn!(dir = %dir.display(), "waiting for the PostgreSQL of a previous crowbar to shut down");
            waiting = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the parent of `pid` runs the same executable as this process: a postmaster
/// whose crowbar died has been handed to init (or a subreaper) and fails this test.
fn parent_runs_this_program(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let identity = |path: String| fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let ppid = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("PPid:"))
                .and_then(|ppid| ppid.trim().parse::<i32>().ok())
        });
    match ppid {
        Some(ppid) if ppid > 1 => {
            let parent = identity(format!("/proc/{ppid}/exe"));
            parent.is_some() && parent == identity("/proc/self/exe".into())
        }
        _ => false,
    }
}

/// What `postmaster.pid` says: line 1 the pid, line 8 the status (PostgreSQL 10+).
struct PidFile {
    pid: i32,
    status: String,
}

impl PidFile {
    fn read(dir: &Path) -> Option<PidFile> {
        let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let status = lines.nth(6).unwrap_or_default().trim().to_owned();
        Some(PidFile { pid, status })
    }
}

/// With the lock held, a postmaster.pid is a crash's leftover, unless its pid is a live
/// postgres serving this very directory (one started by hand): then crowbar stays away.
fn clear_stale_pid_file(dir: &Path) -> Result<(), PgError> {
    let pid_file = dir.join("postmaster.pid");
    if !pid_file.exists() {
        return Ok(());
    }
    if let Some(pm) = PidFile::read(dir)
        && is_postmaster_of(pm.pid, dir)
    {
        return Err(PgError::AlreadyRunning {
            dir: dir.to_path_buf(),
            pid: Some(pm.pid),
        });
    }
    tracing::warn!(file = %pid_file.display(), "removing a stale PostgreSQL pid file left by a crash");
    match fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&pid_file)(e)),
        _ => Ok(()),
    }
}

/// True while `pid` names a process that is not a zombie.
fn is_alive(pid: i32) -> bool {
    // The state follows the command name, which is in parentheses and may contain anything.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 1..)?;
            rest.split_whitespace()
                .next()
                .map(|state| !matches!(state, "Z" | "X"))
        })
        .unwrap_or(false)
}

/// Whether `pid` is a live postgres whose working directory is `dir` (a postmaster changes
/// into its data directory). When we may not read its working directory, assume it is; a
/// process in the middle of exiting has none any more and is not.
fn is_postmaster_of(pid: i32, dir: &Path) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !is_alive(pid) || !comm.trim().starts_with("postgres") {
        return false;
    }
    match fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => fs::canonicalize(dir).is_ok_and(|dir| dir == cwd),
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// Lets `cmd` inherit `fd` (std opens everything close-on-exec).
fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    // SAFETY: fcntl is async-signal-safe and only touches the child's descriptor table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The socket lives in `<dir>/run`, or, when that path would be too long for a Unix socket,
/// in a fresh directory of a random name under the temporary directory (`mkdtemp`: created
/// atomically, never through a link; `temporary` says which, for [`ManagedPostgres::stop`]
/// to remove it). The directory belongs to this cluster alone, so with the cluster locked a
/// socket or socket lock file in it is a crash's leftover (whose postmaster may linger as a
/// zombie that PostgreSQL's own check takes for alive).
fn socket_dir_for(dir: &Path, owner: &Owner) -> Result<(PathBuf, bool), PgError> {
    let socket_dir = dir.join("run");
    if socket_dir.as_os_str().len() > MAX_SOCKET_DIR {
        let template = std::env::temp_dir().join("crowbar-pg-XXXXXX");
        let socket_dir = nix::unistd::mkdtemp(&template).map_err(|e| PgError::Io {
            path: template.clone(),
            source: e.into(),
        })?;
        own_dir(&socket_dir, owner, 0o700)?;
        return Ok((socket_dir, true));
    }
    own_dir(&socket_dir, owner, 0o700)?;
    for leftover in [
        format!(".s.PGSQL.{SOCKET_PORT}.lock"),
        format!(".s.PGSQL.{SOCKET_PORT}"),
    ] {
        let path = socket_dir.join(leftover);
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), "removed a stale PostgreSQL socket file left by a crash")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok((socket_dir, false))
}

/// Makes `path` a directory of the server's user with `mode`, creating it when missing.
/// Never through a symbolic link: it is opened without following links and changed
/// through that descriptor, so a link planted where it should be (by whoever may write the
/// parent, such as the `postgres` user in its own cluster directory) fails the start
/// instead of making root hand the link's target to `postgres`.
fn own_dir(path: &Path, owner: &Owner, mode: u32) -> Result<(), PgError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_err(path)(e)),
        _ => {}
    }
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| not_plain(path, "directory", e))?;
    own(&dir, path, owner, mode)
}

/// Opens (creating it when missing) the file at `path` for appending, as a file of the
/// server's user with `mode`; never through a symbolic link (see [`own_dir`]).
fn own_file(path: &Path, owner: &Owner, mode: u32) -> Result<fs::File, PgError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| not_plain(path, "file", e))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(not_plain(
            path,
            "file",
            std::io::Error::other("not a regular file"),
        ));
    }
    own(&file, path, owner, mode)?;
    Ok(file)
}

/// Gives the open `file` to the server's user (when crowbar switches to it) with `mode`.
fn own(file: &fs::File, path: &Path, owner: &Owner, mode: u32) -> Result<(), PgError> {
    if owner.switch {
        std::os::unix::fs::fchown(file, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
            .map_err(io_err(path))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path))
}

fn not_plain(path: &Path, what: &str, e: std::io::Error) -> PgError {
    // With O_NOFOLLOW a link fails with ELOOP, or ENOTDIR when O_DIRECTORY is asked too.
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let why = match e.raw_os_error() {
        _ if is_link => "it is a symbolic link".to_string(),
        Some(libc::ENOTDIR) => "it is not a directory".to_string(),
        _ => e.to_string(),
    };
    PgError::Failed {
        what: "preparing the private PostgreSQL's files",
        dir: path.to_path_buf(),
        detail: format!(
            "expected a plain {what} there, but {why}; crowbar never changes owners or modes \
             through links: move it away and start again"
        ),
    }
}

fn spawn_postmaster(
    bin: &Path,
    dir: &Path,
    socket_dir: &Path,
    owner: &Owner,
    options: &PgOptions,
    lock: RawFd,
) -> Result<(Pid, watch::Receiver<bool>), PgError> {
    let log_path = dir.join("postgres.log");
    // the server's user owns it like every other file of the cluster, so that PostgreSQL's
    // own tools can use it
    let log = own_file(&log_path, owner, 0o600)?;
    let log_err = log.try_clone().map_err(io_err(&log_path))?;
    let mut cmd = owner.command(bin.join("postgres"));
    cmd.arg("-D")
        .arg(dir)
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .args(["-c", "unix_socket_permissions=0700"])
        .arg("-c")
        .arg(format!("port={SOCKET_PORT}"))
        .arg("-c")
        .arg(format!("max_connections={}", options.max_connections))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // its own process group: a terminal's Ctrl-C reaches crowbar, which stops it last
        .process_group(0);
    if !options.durable {
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
    }
    for (name, value) in &options.settings {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    // SAFETY: prctl is async-signal-safe; it runs after the uid switch, which would
    // otherwise clear the parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    inherit_fd(&mut cmd, lock);
    let (exited_tx, exited_rx) = watch::channel(false);
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let dir_for_thread = dir.to_path_buf();
    // The parent-death signal fires when the spawning *thread* exits, so the postmaster is
    // spawned and reaped by a thread that lives exactly as long as it does.
    std::thread::Builder::new()
        .name("postgres-reaper".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id()));
                let status = child.wait();
                tracing::debug!(dir = %dir_for_thread.display(), ?status, "postgres exited");
                let _ = exited_tx.send(true);
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
                let _ = exited_tx.send(true);
            }
        })
        .map_err(io_err(dir))?;
    let pid = pid_rx
        .recv()
        .map_err(|_| PgError::Failed {
            what: "starting PostgreSQL",
            dir: dir.to_path_buf(),
            detail: "the reaper thread vanished".into(),
        })?
        .map_err(io_err(dir))?;
    Ok((Pid::from_raw(pid as i32), exited_rx))
}

fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    format!(
        "last lines of {}:\n{tail}",
        dir.join("postgres.log").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_give_pid_and_status() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PidFile::read(dir.path()).is_none());
        fs::write(
            dir.path().join("postmaster.pid"),
            "4242\n/d\n1700000000\n5432\n/d/run\n\n  5432001         0\nstopping\n",
        )
        .unwrap();
        let pm = PidFile::read(dir.path()).unwrap();
        assert_eq!((pm.pid, pm.status.as_str()), (4242, "stopping"));
        // a server that has not written its status yet
        fs::write(dir.path().join("postmaster.pid"), "4242\n/d\n").unwrap();
        assert_eq!(PidFile::read(dir.path()).unwrap().status, "");
    }

    /// An owner that is this process's user, as for a crowbar not running as root.
    fn myself() -> Owner {
        Owner {
            uid: Uid::effective(),
            gid: Gid::effective(),
            switch: false,
        }
    }

    #[test]
    fn files_of_the_cluster_are_never_changed_through_links() {
        use std::os::unix::fs::{MetadataExt, symlink};
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, "keep").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o777;

        // a directory that is a planted link
        let run = tmp.path().join("run");
        symlink(&target, &run).unwrap();
        let refused = own_dir(&run, &myself(), 0o700).unwrap_err().to_string();
        assert!(refused.contains("symbolic link"), "{refused}");
        assert_eq!(mode(&target), 0o755, "the link's target is untouched");
        // a file where a directory should be
        assert!(own_dir(&secret, &myself(), 0o700).is_err());
        // a log file that is a planted link
        let log = tmp.path().join("postgres.log");
        symlink(&secret, &log).unwrap();
        assert!(own_file(&log, &myself(), 0o600).is_err());
        assert_eq!(mode(&secret), 0o644);
        assert_eq!(fs::read_to_string(&secret).unwrap(), "keep");

        // the plain cases
        let fresh = tmp.path().join("fresh");
        own_dir(&fresh, &myself(), 0o700).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        own_dir(&fresh, &myself(), 0o700).unwrap();
        let file = fresh.join("postgres.log");
        own_file(&file, &myself(), 0o600).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_long_cluster_path_gets_a_fresh_private_socket_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("d".repeat(MAX_SOCKET_DIR));
        fs::create_dir(&long).unwrap();
        let (first, temporary) = socket_dir_for(&long, &myself()).unwrap();
        assert!(temporary);
        assert!(
            first.starts_with(std::env::temp_dir()),
            "{}",
            first.display()
        );
        let (second, _) = socket_dir_for(&long, &myself()).unwrap();
        assert_ne!(first, second, "not a name anyone can predict and plant");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&first).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir(&first).unwrap();
        fs::remove_dir(&second).unwrap();
        let (short, temporary) = socket_dir_for(tmp.path(), &myself()).unwrap();
        assert_eq!((short, temporary), (tmp.path().join("run"), false));
    }

    #[test]
    fn the_parent_of_relocated_clusters_is_roots_alone() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("crowbar");
        let is_root = Uid::effective().is_root();
        assert_eq!(prepare_relocated_parent(&parent).is_ok(), is_root);
        if is_root {
            fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).unwrap();
            assert!(
                prepare_relocated_parent(&parent).is_err(),
                "writable by all"
            );
        }
        let linked = tmp.path().join("linked");
        symlink(tmp.path(), &linked).unwrap();
        assert!(prepare_relocated_parent(&linked).is_err());
    }

    #[test]
    fn liveness_and_parentage_come_from_proc() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(is_alive(pid));
        // its parent is this very program; this program's parent (the test runner) is not
        assert!(parent_runs_this_program(pid));
        assert!(!parent_runs_this_program(std::process::id() as i32));
        assert!(!is_postmaster_of(pid, Path::new("/")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}
