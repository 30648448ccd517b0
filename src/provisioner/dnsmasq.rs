//! The DHCP and DNS databases (SEMANTICS.md §10): the `dnsmasq` jig writes what dnsmasq
//! must know about the nodes into its directory and has dnsmasq reload it, and hooks re-run
//! the database roles on the high-priority lane whenever a node changes.
//!
//! Files, each replaced atomically (written aside, then renamed):
//! - `dhcp-hosts` (dnsmasq `--dhcp-hostsfile`): `<mac>,<ipv4>,<host>` for every node with a
//!   MAC and an IPv4 admin address — its reservation;
//! - `hosts` (dnsmasq `--addn-hosts`): `<address> <fqdn> <host>` for every address of every
//!   node (admin address and allocations, IPv4 and IPv6) — its A and AAAA records.
//!
//! dnsmasq rereads both on SIGHUP; its pid is read from `dnsmasq.pid` in the directory, and
//! signalled only if that process is a dnsmasq. A burst of node changes coalesces: requests
//! while a run is queued only refresh it, the run waits a short settle time before reading
//! the nodes, and a file whose content did not change is neither rewritten nor reloaded.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures::future::BoxFuture;
use nix::{sys::signal, unistd::Pid};
use serde_json::json;
use sqlx::PgPool;

use super::{Error, PidFileProblem};
use crate::{
    db::{self, dnsmasq::Reservation},
    hooks::{HookContext, HookResult, NodeEvent, RoleHooks},
    jig::{Jig, JigJob, JigOutput},
};

pub const DHCP_ROLE: &str = "dhcp-database";
pub const DNS_ROLE: &str = "dns-database";
pub const DHCP_HOSTS_FILE: &str = "dhcp-hosts";
pub const HOSTS_FILE: &str = "hosts";
pub const PID_FILE: &str = "dnsmasq.pid";
/// How long a run waits for more changes of a burst before it reads the nodes.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(200);

/// The `dnsmasq` jig.
pub struct DnsmasqJig {
    pool: PgPool,
    dir: PathBuf,
    settle: Duration,
    domain: String,
}

impl DnsmasqJig {
    pub fn new(pool: PgPool, dir: impl Into<PathBuf>, settle: Duration) -> Self {
        Self {
            pool,
            dir: dir.into(),
            settle,
            domain: String::new(),
        }
    }

    /// The nodes' DNS domain, which `dns-database` publishes (`dns/domain`) for clients'
    /// search lists.
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_string();
        self
    }
}

impl Jig for DnsmasqJig {
    fn name(&self) -> &'static str {
        "dnsmasq"
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(async move {
            tokio::time::sleep(self.settle).await;
            match self.write(job).await {
                Ok(output) => output,
                Err(e) => JigOutput::failed(e.to_string()),
            }
        })
    }
}

impl DnsmasqJig {
    #[tracing::instrument(skip_all, fields(role = %job.role))]
    async fn write(&self, job: &JigJob) -> Result<JigOutput, Error> {
        let (file, content, reservations) = match job.role.as_str() {
            DHCP_ROLE => {
                let rows = db::dnsmasq::reservations(&self.pool)
                    .await
                    .map_err(Error::ReadNodes)?;
                (DHCP_HOSTS_FILE, dhcp_hosts(&rows), Some(rows))
            }
            DNS_ROLE => {
                let rows = db::dnsmasq::records(&self.pool)
                    .await
                    .map_err(Error::ReadNodes)?;
                (HOSTS_FILE, hosts(&rows), None)
            }
            other => return Err(Error::NoDnsmasqFile(other.to_string())),
        };
        let path = self.dir.join(file);
        let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str());
        if changed {
            write_atomically(&path, &content).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            reload(&self.dir)?;
        }
        if let Some(rows) = reservations {
            db::dnsmasq::record_reservations(&self.pool, &rows)
                .await
                .map_err(Error::RecordReservations)?;
        }
        let entries = content.lines().count();
        let log = if changed {
            format!(
                "{} written ({entries} entries); dnsmasq reloaded",
                path.display()
            )
        } else {
            format!("{} unchanged ({entries} entries)", path.display())
        };
        let mut wall = json!({"dnsmasq": {"file": file, "entries": entries, "rewritten": changed}});
        if job.role == DNS_ROLE {
            // where nodes resolve each other: the node this role runs on (the admin node,
            // whose dnsmasq serves the records), for dns-client's wanted attribs
            let server = crate::domain::data::get_path(&job.input, "crowbar/node/address")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            wall["dns"] = json!({"server": server, "domain": self.domain});
        }
        Ok(JigOutput::ok(Some(wall), log))
    }
}

/// `<mac>,<ipv4>,<host>` lines; the host is the name's first label (names are checked by
/// the database, so nothing else can reach the file).
fn dhcp_hosts(rows: &[Reservation]) -> String {
    rows.iter()
        .map(|r| format!("{},{},{}\n", r.mac, r.address, short(&r.name)))
        .collect()
}

/// `<address> <fqdn> <host>` lines.
fn hosts(rows: &[(String, String)]) -> String {
    rows.iter()
        .map(|(name, address)| {
            if short(name) == name {
                format!("{address} {name}\n")
            } else {
                format!("{address} {name} {}\n", short(name))
            }
        })
        .collect()
}

fn short(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let aside = path.with_extension("crowbar-new");
    std::fs::write(&aside, content)?;
    std::fs::rename(&aside, path)
}

/// SIGHUP to the dnsmasq of `dir/dnsmasq.pid`: it rereads its hosts files.
fn reload(dir: &Path) -> Result<(), Error> {
    let pid_file = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&pid_file).map_err(|source| Error::NoPidFile {
        pid_file: pid_file.clone(),
        source,
    })?;
    let pid = dnsmasq_pid(&text, Path::new("/proc")).map_err(|why| {
        let error = Error::NotDnsmasq {
            pid_file: pid_file.clone(),
            why,
        };
        tracing::warn!(pid_file = %pid_file.display(), "{error}");
        error
    })?;
    signal::kill(pid, signal::Signal::SIGHUP).map_err(|source| Error::Signal { pid, source })
}

/// The pid in a pid file's `text`, if it is a dnsmasq's. We run as root and the file is
/// only data: `kill(-1)` would signal every process, `0` our own process group, `1` init,
/// and any other pid whatever process has it now. So only a pid above 1 whose process
/// (`<proc>/<pid>/comm`) is dnsmasq is signalled.
fn dnsmasq_pid(text: &str, proc: &Path) -> Result<Pid, PidFileProblem> {
    let text = text.trim();
    let pid: i32 = text
        .parse()
        .map_err(|_| PidFileProblem::NoPid(text.to_string()))?;
    if pid <= 1 {
        return Err(PidFileProblem::NotOneProcess(pid));
    }
    let comm = std::fs::read_to_string(proc.join(pid.to_string()).join("comm"))
        .map_err(|_| PidFileProblem::NoProcess(pid))?;
    if comm.trim_end() != "dnsmasq" {
        return Err(PidFileProblem::OtherProcess {
            pid,
            comm: comm.trim_end().to_string(),
        });
    }
    Ok(Pid::from_raw(pid))
}

/// Re-runs the noderoles of a database role on the high-priority lane when nodes come, go,
/// or change what the database holds about them.
pub struct DatabaseHooks {
    role: &'static str,
}

impl DatabaseHooks {
    pub fn dhcp() -> Self {
        Self { role: DHCP_ROLE }
    }
    pub fn dns() -> Self {
        Self { role: DNS_ROLE }
    }

    async fn refresh(&self, ctx: &HookContext) -> HookResult {
        let noderoles = db::dnsmasq::runnable_noderoles_of(&ctx.pool, self.role)
            .await
            .map_err(|e| e.to_string())?;
        for id in noderoles {
            ctx.request_run(id).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Whether a node change touches what DHCP or DNS hold (alive and available do not). A
/// bootenv change counts: the OS-install handshake waits for the DHCP database to confirm
/// it has run since.
fn relevant(changes: &serde_json::Value) -> bool {
    ["address", "addresses", "mac", "name", "bootenv"]
        .iter()
        .any(|field| changes.get(field).is_some())
}

impl RoleHooks for DatabaseHooks {
    fn role(&self) -> &str {
        self.role
    }

    fn on_node_create<'a>(
        &'a self,
        ctx: &'a HookContext,
        _node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(self.refresh(ctx))
    }

    fn on_node_change<'a>(
        &'a self,
        ctx: &'a HookContext,
        node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(async move {
            if relevant(&node.changes) {
                self.refresh(ctx).await
            } else {
                Ok(())
            }
        })
    }

    fn on_node_delete<'a>(
        &'a self,
        ctx: &'a HookContext,
        _node: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        Box::pin(self.refresh(ctx))
    }
}

/// The hooks and jig of the DHCP and DNS databases, for a daemon.
pub fn register(
    hooks: crate::hooks::Hooks,
    jigs: crate::jig::JigRegistry,
    pool: &PgPool,
    dir: &Path,
    domain: &str,
) -> (crate::hooks::Hooks, crate::jig::JigRegistry) {
    (
        hooks.with(DatabaseHooks::dhcp()).with(DatabaseHooks::dns()),
        jigs.with(DnsmasqJig::new(pool.clone(), dir, DEFAULT_SETTLE).with_domain(domain)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_dnsmasq_formats() {
        let rows = vec![Reservation {
            node_id: 1,
            read_at: chrono::Utc::now(),
            name: "n1.example.com".into(),
            mac: "52:54:00:00:00:01".into(),
            address: "198.51.100.5".into(),
        }];
        assert_eq!(dhcp_hosts(&rows), "52:54:00:00:00:01,198.51.100.5,n1\n");
        let records = vec![
            ("n1.example.com".to_string(), "198.51.100.5".to_string()),
            ("n1.example.com".to_string(), "fd00::1".to_string()),
            ("solo".to_string(), "198.51.100.6".to_string()),
        ];
        assert_eq!(
            hosts(&records),
            "198.51.100.5 n1.example.com n1\nfd00::1 n1.example.com n1\n198.51.100.6 solo\n"
        );
    }

    #[test]
    fn only_a_dnsmasq_pid_is_signalled() {
        let proc = Path::new("/proc");
        for text in ["-1", "0", "1", " 1\n", "", "abc", "12x", "99999999999"] {
            assert!(dnsmasq_pid(text, proc).is_err(), "`{text}` was accepted");
        }
        // a live process that is not dnsmasq: this test itself
        let own = std::process::id().to_string();
        let why = dnsmasq_pid(&own, proc).unwrap_err().to_string();
        assert!(why.contains("not dnsmasq"), "{why}");
        // a process whose name is dnsmasq
        let fake = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fake.path().join("4242")).unwrap();
        std::fs::write(fake.path().join("4242/comm"), "dnsmasq\n").unwrap();
        assert_eq!(
            dnsmasq_pid("4242\n", fake.path()).unwrap(),
            Pid::from_raw(4242)
        );
        assert!(
            dnsmasq_pid("4243", fake.path())
                .unwrap_err()
                .to_string()
                .contains("not running")
        );
    }

    #[test]
    fn only_address_changes_matter() {
        assert!(relevant(
            &json!({"address": {"from": null, "to": "198.51.100.5"}})
        ));
        assert!(relevant(&json!({"addresses": {"network": "admin"}})));
        assert!(!relevant(&json!({"alive": {"from": false, "to": true}})));
        assert!(relevant(&json!({"bootenv": {"from": "a", "to": "b"}})));
        assert!(!relevant(
            &json!({"available": {"from": true, "to": false}})
        ));
    }
}
