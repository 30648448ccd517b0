//! A real high-availability PostgreSQL for failover tests: one etcd (Patroni's store, v3 API)
//! and two PostgreSQL 15 members, `pg1` and `pg2`, each managed by Patroni
//! (`.venv/bin/patroni`, installed by `scripts/python-tools`; etcd by `scripts/system-packages
//! test`), in synchronous mode, all on loopback ports of their own.
//!
//! Everything lives in a fresh `/tmp/crowbar-test-ha-<pid>-<n>/`: `etcd/` (root), and per
//! member `pgN/` (the `postgres` user's: `patroni.yml`, `data/`, `pgpass`, the Unix socket,
//! `patroni.log`). etcd runs as root; Patroni, and the PostgreSQL it starts, as `postgres`.
//!
//! Tuned so that failures are quick and no acknowledged commit is lost:
//! - `primary_start_timeout: 0`: a crashed primary fails over at once instead of being
//!   restarted in place (Patroni's default, 300 s);
//! - `ttl: 20` (Patroni's minimum), `loop_wait: 1`, `retry_timeout: 5`;
//! - `synchronous_mode`: a commit is acknowledged only once the standby has it, so a failover
//!   loses nothing acknowledged. `fsync` is off (a kill -9 keeps the page cache), but not
//!   `synchronous_commit` or `full_page_writes` (pg_rewind needs them).
//!
//! ```ignore
//! let cluster = HaCluster::start().await;
//! let (old, killed_at) = cluster.kill_leader_postmaster().await;
//! let (new, took) = cluster.wait_new_leader(&old, killed_at).await;
//! cluster.stop().await;
//! ```

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::{Pid, User},
};
use rand::Rng;
use serde_json::{Value, json};

use super::python;

/// How long [`HaCluster::start`] waits for a healthy cluster: a cold start took 9–13 s on a
/// loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
const NEW_LEADER_TIMEOUT: Duration = Duration::from_secs(60);
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
const ETCD: &str = "/usr/bin/etcd";
/// Only the `crowbar` role's password is handed out; Patroni's own roles need no secrecy on
/// loopback ports of a throwaway cluster.
const SUPERUSER_PASSWORD: &str = "ha-super";
const REPLICATION_PASSWORD: &str = "ha-repl";
const REWIND_PASSWORD: &str = "ha-rewind";

/// One PostgreSQL member and its Patroni.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// PostgreSQL's port on 127.0.0.1.
    pub port: u16,
    /// Patroni's REST API port on 127.0.0.1.
    pub api_port: u16,
    pub data_dir: PathBuf,
}

pub struct HaCluster {
    dir: PathBuf,
    members: Vec<Member>,
    password: String,
    etcd_port: u16,
    /// etcd, then one Patroni per member.
    processes: Vec<Process>,
    http: reqwest::Client,
}

/// A process we started, in a process group of its own (its pid is the group's id).
struct Process {
    pid: i32,
    exited: Arc<OnceLock<ExitStatus>>,
}

impl HaCluster {
    /// etcd + two Patroni members (pg1, pg2); returns once there is a leader, a streaming
    /// synchronous standby and a `crowbar` database the `crowbar` role can write through the
    /// leader. Panics with the tail of every log when that does not happen in time.
    pub async fn start() -> HaCluster {
        let patroni = python::tool("patroni");
        let bin_dir = crowbar::pg::locate_binaries(None)
            .unwrap_or_else(|e| panic!("no PostgreSQL server binaries: {e}"));
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: run scripts/system-packages --install-if-root test"
        );
        // PostgreSQL refuses to run as root; tests run as root, as CI does.
        let postgres = User::from_name("postgres")
            .ok()
            .flatten()
            .expect("no `postgres` user: install PostgreSQL (scripts/system-packages)");

        remove_stale_clusters();
        let dir = fresh_dir();
        let mut ports = distinct_free_ports(6).into_iter();
        let mut port = || ports.next().unwrap();
        let (etcd_port, etcd_peer) = (port(), port());
        let members: Vec<Member> = ["pg1", "pg2"]
            .into_iter()
            .map(|name| Member {
                name: name.into(),
                port: port(),
                api_port: port(),
                data_dir: dir.join(name).join("data"),
            })
            .collect();
        let password: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let mut cluster = HaCluster {
            dir,
            members,
            password,
            etcd_port,
            processes: Vec::new(),
            http: super::client_builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
        };
        // From here on a panic drops `cluster`, which kills whatever was started.

        let etcd_dir = cluster.dir.join("etcd");
        make_dir(&etcd_dir, 0o700);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut etcd = dying_with_us("SIGKILL");
        etcd.arg(ETCD)
            .args(["--name", "ha", "--data-dir"])
            .arg(etcd_dir.join("data"))
            .args(["--listen-client-urls", &url(etcd_port)])
            .args(["--advertise-client-urls", &url(etcd_port)])
            .args(["--listen-peer-urls", &url(etcd_peer)])
            .args(["--initial-advertise-peer-urls", &url(etcd_peer)])
            .arg("--initial-cluster")
            .arg(format!("ha={}", url(etcd_peer)))
            .args(["--initial-cluster-state", "new"])
            // the default logger (capnslog) adds deprecation noise to every log
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ])
            .current_dir(&etcd_dir);
        cluster.spawn(etcd, &etcd_dir.join("etcd.log"));
        cluster.wait_for_etcd().await;

        for member in cluster.members.clone() {
            let member_dir = cluster.member_dir(&member.name);
            make_dir(&member_dir, 0o700);
            std::os::unix::fs::chown(
                &member_dir,
                Some(postgres.uid.as_raw()),
                Some(postgres.gid.as_raw()),
            )
            .expect("give the member's directory to postgres");
            let bootstrap = member_dir.join("post-bootstrap.sh");
            // Patroni 4 has no `bootstrap.users`: it runs this once, as postgres, on the member
            // that bootstraps, with the superuser's connection string as $1.
            write_owned(
                &bootstrap,
                &format!(
                    "#!/bin/sh\nexec '{}' \"$1\" -X -q -v ON_ERROR_STOP=1 <<'SQL'\n\
                     CREATE ROLE crowbar LOGIN PASSWORD '{}';\n\
                     CREATE DATABASE crowbar OWNER crowbar;\nSQL\n",
                    bin_dir.join("psql").display(),
                    cluster.password
                ),
                0o700,
                &postgres,
            );
            // JSON is YAML too, and keeps 'on' a string where YAML would read a boolean
            let config = member_dir.join("patroni.yml");
            let text = serde_json::to_string_pretty(
                &cluster.patroni_config(&member, &bin_dir, &bootstrap),
            )
            .unwrap();
            write_owned(&config, &text, 0o600, &postgres);
            // As postgres, with supplementary groups dropped and an environment of its own.
            // SIGTERM, not SIGKILL, when we die: Patroni then stops its PostgreSQL, whose
            // postmaster it starts in a session of its own and which would outlive it.
            let mut cmd = dying_with_us("SIGTERM");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
                .args(["--reset-env", "env", "LC_ALL=C", "PYTHONUNBUFFERED=1"])
                .arg(&patroni)
                .arg(&config)
                .current_dir(&member_dir);
            cluster.spawn(cmd, &member_dir.join("patroni.log"));
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let leader = loop {
            if let Some(exited) = cluster.exited() {
                panic!("{exited}\n{}", cluster.logs());
            }
            if let Some(leader) = healthy(&cluster.cluster_state().await) {
                break leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader and streaming sync standby within {START_TIMEOUT:?}: {}\n{}",
                cluster.cluster_state().await,
                cluster.logs()
            );
            tokio::time::sleep(POLL).await;
        };
        // One real write as the application (the role and database come from post_bootstrap,
        // and the commit waits for the sync standby), leaving nothing behind.
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match cluster.probe_write(&leader).await {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "`crowbar` cannot write through {leader}: {last_error}\n{}",
            cluster.logs()
        );
    }

    /// The application password (random per cluster) is inside; the URL lists both members:
    /// `postgres://crowbar:PW@127.0.0.1:P1,127.0.0.1:P2/crowbar?target_session_attrs=read-write`.
    /// A libpq multi-host URL: sqlx's own URL parser takes one host only (see
    /// [`HaCluster::member_url`]).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!(
            "postgres://crowbar:{}@{}/crowbar?target_session_attrs=read-write",
            self.password,
            hosts.join(",")
        )
    }

    /// One member's URL for the `crowbar` role: `postgres://crowbar:PW@127.0.0.1:P/crowbar`.
    pub fn member_url(&self, name: &str) -> String {
        format!(
            "postgres://crowbar:{}@127.0.0.1:{}/crowbar",
            self.password,
            self.member(name).port
        )
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The current leader (role "leader", state "running" in Patroni's `/cluster`); waits up
    /// to [`NEW_LEADER_TIMEOUT`] for there to be one.
    pub async fn leader(&self) -> String {
        self.wait_for("a running leader", NEW_LEADER_TIMEOUT, |state| {
            members_with(state, "leader", "running").into_iter().next()
        })
        .await
    }

    /// The member that is a streaming synchronous standby now, if any.
    pub async fn sync_standby(&self) -> Option<String> {
        members_with(&self.cluster_state().await, "sync_standby", "streaming")
            .into_iter()
            .next()
    }

    /// kill -9 of the leader's postmaster: a crash. Its backends exit on their own, and
    /// Patroni fails over rather than restarting it (`primary_start_timeout: 0`). Returns the
    /// old leader and the moment of the kill.
    pub async fn kill_leader_postmaster(&self) -> (String, Instant) {
        let leader = self.leader().await;
        let data_dir = &self.member(&leader).data_dir;
        let pid = postmaster_pid(data_dir)
            .unwrap_or_else(|| panic!("no running postmaster in {}", data_dir.display()));
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the postmaster");
        (leader, Instant::now())
    }

    /// Waits (60 s) until a member other than `old` is the running leader; returns it and the
    /// time since `since`.
    pub async fn wait_new_leader(&self, old: &str, since: Instant) -> (String, Duration) {
        let leader = self
            .wait_for(
                &format!("a leader other than {old}"),
                NEW_LEADER_TIMEOUT,
                |state| {
                    members_with(state, "leader", "running")
                        .into_iter()
                        .find(|name| name != old)
                },
            )
            .await;
        (leader, since.elapsed())
    }

    /// Waits (90 s) until one member is the running leader and the other its streaming sync
    /// standby, on the same timeline (during a switchover `/cluster` briefly shows the new
    /// leader on the old one).
    pub async fn wait_healthy(&self) {
        self.wait_for("a healthy cluster", HEALTHY_TIMEOUT, healthy)
            .await;
    }

    /// A planned switchover from the leader to the other member (`patronictl switchover`,
    /// which returns once the candidate has taken over); returns (old, new, how long the
    /// command took).
    pub async fn switchover(&self) -> (String, String, Duration) {
        let old = self.leader().await;
        let new = self
            .members
            .iter()
            .find(|m| m.name != old)
            .unwrap()
            .name
            .clone();
        let config = self.member_dir(&self.members[0].name).join("patroni.yml");
        let started = Instant::now();
        let out = tokio::process::Command::new(python::tool("patronictl"))
            .arg("-c")
            .arg(&config)
            .args([
                "switchover",
                "--force",
                "--leader",
                &old,
                "--candidate",
                &new,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(NEW_LEADER_TIMEOUT, out)
            .await
            .unwrap_or_else(|_| panic!("patronictl switchover took over {NEW_LEADER_TIMEOUT:?}"))
            .expect("run patronictl");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "patronictl switchover {old} -> {new}: {}\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        (old, new, took)
    }

    /// Stops everything (SIGKILL: the data is thrown away) and removes the directory.
    pub async fn stop(self) {
        // Drop polls for the processes to go; not on the runtime's thread.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// The tail of etcd's log and of each member's Patroni log (which has PostgreSQL's).
    pub fn logs(&self) -> String {
        let mut logs = vec![self.dir.join("etcd/etcd.log")];
        logs.extend(
            self.members
                .iter()
                .map(|m| self.member_dir(&m.name).join("patroni.log")),
        );
        logs.iter()
            .map(|log| {
                let text = fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                format!("--- {} (tail) ---\n{tail}\n", log.display())
            })
            .collect()
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn member_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn patroni_config(&self, member: &Member, bin_dir: &Path, bootstrap: &Path) -> Value {
        let dir = self.member_dir(&member.name);
        let api = format!("127.0.0.1:{}", member.api_port);
        let pg = format!("127.0.0.1:{}", member.port);
        json!({
            "scope": "crowbar-ha",
            "namespace": "/crowbar-ha/",
            "name": member.name,
            "restapi": {"listen": api, "connect_address": api},
            // etcd 3.4 serves only its v3 API, which the `etcd3` section speaks
            "etcd3": {"hosts": format!("127.0.0.1:{}", self.etcd_port), "protocol": "http"},
            "bootstrap": {
                "dcs": {
                    "ttl": 20,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": 1048576,
                    "primary_start_timeout": 0,
                    "synchronous_mode": true,
                    "synchronous_mode_strict": false,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "use_slots": true,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_connections": 100,
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                            "fsync": "off",
                            "password_encryption": "scram-sha-256",
                        },
                    },
                },
                // plain items become flags: --no-sync halves the time to a first leader
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums", "no-sync"],
                "post_bootstrap": bootstrap,
            },
            "postgresql": {
                // loopback TCP: replication and Patroni need it
                "listen": pg,
                "connect_address": pg,
                "data_dir": member.data_dir,
                "bin_dir": bin_dir,
                // per member: the default, ~postgres/.pgpass, would be shared and clobbered
                "pgpass": dir.join("pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                    "replication": {"username": "replicator", "password": REPLICATION_PASSWORD},
                    "rewind": {"username": "rewinder", "password": REWIND_PASSWORD},
                },
                // not the system cluster's /var/run/postgresql
                "parameters": {"unix_socket_directories": dir},
                // the default "spread" checkpoint makes a new replica wait minutes
                "basebackup": [{"checkpoint": "fast"}],
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
        })
    }

    /// Spawns `cmd` in a process group of its own, output to `log`.
    fn spawn(&mut self, mut cmd: Command, log: &Path) {
        let log = fs::File::create(log).expect("create a log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0);
        let exited = Arc::new(OnceLock::new());
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let exited_tx = exited.clone();
        // The parent-death signal fires when the spawning *thread* exits, so each process is
        // spawned and reaped by a thread that lives exactly as long as it does.
        std::thread::spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id() as i32));
                if let Ok(status) = child.wait() {
                    let _ = exited_tx.set(status);
                }
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
        });
        let pid = pid_rx
            .recv()
            .expect("the spawning thread vanished")
            .unwrap_or_else(|e| panic!("cannot spawn setpriv: {e}"));
        self.processes.push(Process { pid, exited });
    }

    /// Which of our processes has exited, if any: none should while the cluster runs.
    fn exited(&self) -> Option<String> {
        let names = ["etcd", "patroni pg1", "patroni pg2"];
        self.processes
            .iter()
            .zip(names)
            .find_map(|(p, name)| Some(format!("{name} exited ({})", p.exited.get()?)))
    }

    async fn wait_for_etcd(&self) {
        let deadline = Instant::now() + ETCD_TIMEOUT;
        let health = format!("http://127.0.0.1:{}/health", self.etcd_port);
        loop {
            if let Some(exited) = self.exited() {
                panic!("{exited}\n{}", self.logs());
            }
            if let Ok(response) = self.http.get(&health).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["health"] == "true"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within {ETCD_TIMEOUT:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Patroni's `GET /cluster` from the first member that answers; `null` when none does
    /// (each member answers for both).
    async fn cluster_state(&self) -> Value {
        for member in &self.members {
            let url = format!("http://127.0.0.1:{}/cluster", member.api_port);
            if let Ok(response) = self.http.get(&url).send().await
                && let Ok(state) = response.json::<Value>().await
            {
                return state;
            }
        }
        Value::Null
    }

    /// Polls `/cluster` until `check` finds something; panics with the state and the logs
    /// after `timeout`.
    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.cluster_state().await;
            if let Some(found) = check(&state) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}: {state}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn probe_write(&self, member: &str) -> Result<(), String> {
        use sqlx::Connection;
        let connect = sqlx::PgConnection::connect(&self.member_url(member));
        let mut conn = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let write =
            sqlx::raw_sql("CREATE TABLE crowbar_ha_probe (id int); DROP TABLE crowbar_ha_probe")
                .execute(&mut conn);
        let result = tokio::time::timeout(Duration::from_secs(10), write).await;
        let _ = conn.close().await;
        result
            .map_err(|_| "write timed out".to_string())?
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for process in &self.processes {
            if process.exited.get().is_none() {
                let _ = killpg(Pid::from_raw(process.pid), Signal::SIGKILL);
            }
        }
        let _ = remove_cluster(&self.dir);
    }
}

/// The pid in `<data_dir>/postmaster.pid`, if that process is alive and runs in `data_dir`
/// (a stale file can name a pid that is something else now).
fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (cwd == data_dir).then_some(pid)
}

/// Kills every process of the cluster in `dir` and removes it. Patroni starts each postmaster
/// in a session of its own, so a killed Patroni leaves its PostgreSQL running: the postmasters
/// (postmaster.pid) go next, then anything still working in `dir`, such as their backends
/// (each in a session of its own too, and only gone by itself once it notices).
fn remove_cluster(dir: &Path) -> std::io::Result<()> {
    for member in fs::read_dir(dir)?.flatten() {
        if let Some(pid) = postmaster_pid(&member.path().join("data")) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_under(dir);
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::remove_dir_all(dir)
}

/// Live processes working inside `dir`: every process of a cluster, as each is started in its
/// directory (etcd, Patroni and whatever Patroni runs) or changes into its data directory
/// (postmaster, backends). Zombies have no working directory any more.
fn processes_under(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Removes the clusters of test processes that are gone (killed before their Drop ran).
fn remove_stale_clusters() {
    for entry in fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("crowbar-test-ha-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_cluster(&entry.path());
        }
    }
}

/// `/tmp/crowbar-test-ha-<pid>-<n>`, 0755: the `postgres` user must reach its members'
/// directories, so not under a private `$TMPDIR`, and short for the Unix sockets in it.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(format!(
        "/tmp/crowbar-test-ha-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    if dir.exists() {
        let _ = remove_cluster(&dir);
    }
    make_dir(&dir, 0o755);
    dir
}

fn make_dir(dir: &Path, mode: u32) {
    fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_owned(path: &Path, text: &str, mode: u32, owner: &User) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid.as_raw()), Some(owner.gid.as_raw())).unwrap();
}

/// `n` different free loopback ports (each bound and released: another process could take
/// one in between, which is unlikely enough).
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = super::free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// `setpriv --pdeathsig <signal>`: the process gets `signal` when the test process dies
/// without its Drop running. setpriv sets it after any uid change, which would clear it.
fn dying_with_us(signal: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", signal]);
    cmd
}

/// The names of the members in `role` and `state` in a `/cluster` answer.
fn members_with(state: &Value, role: &str, status: &str) -> Vec<String> {
    state["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == role && m["state"] == status)
        .filter_map(|m| Some(m["name"].as_str()?.to_owned()))
        .collect()
}

/// The leader, when there is exactly one running leader and one streaming sync standby on its
/// timeline.
fn healthy(state: &Value) -> Option<String> {
    let members = state["members"].as_array()?;
    let leaders: Vec<&Value> = members
        .iter()
        .filter(|m| m["role"] == "leader" && m["state"] == "running")
        .collect();
    let syncs: Vec<&Value> = members
        .iter()
        .filter(|m| m["role"] == "sync_standby" && m["state"] == "streaming")
        .collect();
    match (leaders.as_slice(), syncs.as_slice()) {
        ([leader], [sync]) if leader["timeline"] == sync["timeline"] => {
            Some(leader["name"].as_str()?.to_owned())
        }
        _ => None,
    }
}
