//! The `ansible` jig: a role's playbook (`<barclamp>/ansible/<role>.yml`, SEMANTICS.md §1)
//! run by `ansible-playbook` on crowbar's machine against the node over SSH, with crowbar's
//! key and the node's pinned host key (docs/ansible.md).
//!
//! **Cohorts.** Runs of one role that start within `--ansible-batch-window` of each other
//! (the annealer dispatches a role's runnable noderoles together) are gathered into one
//! `ansible-playbook` over all their nodes (forks = the batch, at most
//! `--ansible-batch-max`), and each host's outcome is mapped back to its own run: one host
//! failing fails only its noderole. Every run stays a run of its own — claimed, capped and
//! recorded by the runner exactly like any other; batching only shares the process.
//!
//! **Data stays data.** Each host's input reaches the play as variables from a file of its
//! own (`host_vars/<node>.json`), every string marked unsafe so that Ansible never
//! templates it ([`vars`]); nothing of the input is on a command line. The wall is the
//! `crowbar_wall` fact a play sets; the runlog is one line per task of that host, bounded
//! (`jigs/ansible/crowbar_results.py`, the callback plugin that collects them).
//!
//! **Pinned keys.** Before the play, each node is pinged and its pinned SSH connection
//! opened (pinning on first contact), as the script jig does; the key it presented goes into
//! the run's `known_hosts`, and ssh runs with `StrictHostKeyChecking=yes` against that file
//! alone. A node that cannot be reached is marked dead (§6) instead of failing.

mod vars;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use super::{Jig, JigJob, JigOutput};
use crate::{
    access::{NodeAccess, NodeRef},
    barclamps::{ScriptFile, ansible_tree},
    domain::data::get_path,
    units::parse_duration,
};

/// The jig's name, as barclamps declare it.
pub use crate::barclamps::ANSIBLE_JIG as JIG;
/// The callback plugin that reports each host's outcome.
const CALLBACK: &str = include_str!("../../../jigs/ansible/crowbar_results.py");
/// Who the node history names when a run finds its node unreachable.
pub const JIG_ACTOR: &str = "jig:ansible";
/// How much of ansible-playbook's own output a failed batch shows.
const OUTPUT_TAIL: usize = 8 * 1024;

/// How the `ansible` jig runs ansible-playbook.
#[derive(Debug, Clone, clap::Args)]
pub struct AnsibleSettings {
    /// The ansible-playbook program (ansible-core; `scripts/python-tools` installs it into
    /// .venv/bin, which `scripts/run` puts on the PATH).
    #[arg(
        long,
        env = "CROWBAR_ANSIBLE_PLAYBOOK",
        default_value = "ansible-playbook"
    )]
    pub ansible_playbook: PathBuf,
    /// How long runs of one role are gathered into one ansible-playbook after the first.
    #[arg(long, env = "CROWBAR_ANSIBLE_BATCH_WINDOW", default_value = "250ms", value_parser = parse_duration)]
    pub ansible_batch_window: Duration,
    /// The most nodes one ansible-playbook runs against (its forks); 1 runs every node
    /// in a process of its own.
    #[arg(long, env = "CROWBAR_ANSIBLE_BATCH_MAX", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ansible_batch_max: u32,
}

impl Default for AnsibleSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

/// Whether ansible-playbook can be run: its version line, or what to do.
pub async fn installed(settings: &AnsibleSettings) -> Result<String, String> {
    let program = &settings.ansible_playbook;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let missing = |why: String| {
        format!(
            "{} cannot be run ({why}): roles on the ansible jig will fail. Install ansible-core \
             (scripts/python-tools puts it in .venv/bin, which scripts/run adds to the PATH; \
             or pip install ansible-core) or give its path with --ansible-playbook",
            program.display()
        )
    };
    match out {
        Err(_) => Err(missing("no answer to --version within 60 s".into())),
        Ok(Err(e)) => Err(missing(e.to_string())),
        Ok(Ok(out)) if !out.status.success() => Err(missing(format!("{}", out.status))),
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()),
    }
}

pub struct AnsibleJig {
    inner: Arc<Inner>,
}

struct Inner {
    access: Arc<NodeAccess>,
    settings: AnsibleSettings,
    cohorts: Mutex<HashMap<Cohort, Gathering>>,
    /// ssh's connection sharing sockets: kept across batches (a node's connection is reused
    /// by the next batch for a minute), private to this daemon.
    control_dir: tempfile::TempDir,
}

/// Runs that may share one ansible-playbook: the same role from the same barclamp file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Cohort {
    source: String,
    barclamp: String,
    role: String,
}

#[derive(Default)]
struct Gathering {
    runs: Vec<Waiting>,
    full: Arc<Notify>,
}

struct Waiting {
    job: JigJob,
    reply: oneshot::Sender<JigOutput>,
}

impl AnsibleJig {
    pub fn new(access: Arc<NodeAccess>, settings: AnsibleSettings) -> std::io::Result<Self> {
        let control_dir = tempfile::Builder::new()
            .prefix("crowbar-ansible-")
            .tempdir()?;
        Ok(Self {
            inner: Arc::new(Inner {
                access,
                settings,
                cohorts: Mutex::new(HashMap::new()),
                control_dir,
            }),
        })
    }
}

impl Jig for AnsibleJig {
    fn name(&self) -> &'static str {
        JIG
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(self.inner.clone().join(job.clone()))
    }
}

impl Inner {
    fn cohorts(&self) -> std::sync::MutexGuard<'_, HashMap<Cohort, Gathering>> {
        self.cohorts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the run to its cohort's next batch (starting one if none gathers) and waits for
    /// its own outcome.
    async fn join(self: Arc<Self>, job: JigJob) -> JigOutput {
        let cohort = Cohort {
            source: job.barclamp_source.clone(),
            barclamp: job.barclamp.clone(),
            role: job.role.clone(),
        };
        let (reply, outcome) = oneshot::channel();
        let first = {
            let mut cohorts = self.cohorts();
            let gathering = cohorts.entry(cohort.clone()).or_default();
            gathering.runs.push(Waiting { job, reply });
            if gathering.runs.len() >= self.settings.ansible_batch_max as usize {
                gathering.full.notify_one();
            }
            gathering.runs.len() == 1
        };
        if first {
            tokio::spawn(self.clone().gather(cohort));
        }
        outcome.await.unwrap_or_else(|_| {
            JigOutput::failed("ansible jig: the run's batch ended without its outcome")
        })
    }

    /// Waits for the batch window (or a full batch), takes the batch and runs it; runs
    /// beyond the batch's size start the next one at once.
    /// (Boxed: it spawns itself.)
    fn gather(self: Arc<Self>, cohort: Cohort) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let full = self.cohorts().get(&cohort).map(|g| g.full.clone());
            if let Some(full) = full {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.ansible_batch_window) => {}
                    _ = full.notified() => {}
                }
            }
            let (batch, more) = {
                let mut cohorts = self.cohorts();
                let Some(gathering) = cohorts.get_mut(&cohort) else {
                    return;
                };
                let take = gathering
                    .runs
                    .len()
                    .min(self.settings.ansible_batch_max as usize);
                let batch: Vec<Waiting> = gathering.runs.drain(..take).collect();
                let more = !gathering.runs.is_empty();
                if !more {
                    cohorts.remove(&cohort);
                }
                (batch, more)
            };
            if more {
                tokio::spawn(self.clone().gather(cohort.clone()));
            }
            self.run_batch(&cohort, batch).await;
        })
    }

    #[tracing::instrument(skip_all, fields(role = %cohort.role, nodes = batch.len()))]
    async fn run_batch(&self, cohort: &Cohort, batch: Vec<Waiting>) {
        let tree = {
            let (source, barclamp) = (cohort.source.clone(), cohort.barclamp.clone());
            tokio::task::spawn_blocking(move || ansible_tree(&source, &barclamp)).await
        };
        let playbook = format!("{}.yml", cohort.role);
        let tree = match tree {
            Ok(Ok(tree)) if tree.iter().any(|f| f.name == playbook) => tree,
            Ok(Ok(_)) => {
                return fail_all(
                    batch,
                    &format!(
                        "barclamp {} has no playbook ansible/{playbook} for role {}",
                        cohort.barclamp, cohort.role
                    ),
                );
            }
            Ok(Err(e)) => {
                return fail_all(batch, &format!("cannot read the barclamp's ansible/: {e}"));
            }
            Err(e) => return fail_all(batch, &format!("reading ansible/ failed: {e}")),
        };

        // Reach every node (pinning its key on first contact), together.
        let reached = futures::future::join_all(batch.into_iter().map(|run| async move {
            let Some(addr) = get_path(&run.job.input, "crowbar/node/address")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
            else {
                let message = format!(
                    "ansible jig: node {} has no address to reach it by; give it one \
                     (PUT /api/v2/nodes/{} {{\"address\": ...}})",
                    run.job.node, run.job.node
                );
                let _ = run.reply.send(JigOutput::failed(message));
                return None;
            };
            let node = NodeRef {
                id: run.job.node_id,
                name: run.job.node.clone(),
                addr,
            };
            match self.access.reach(&node).await {
                Ok(session) => {
                    let key = session.host_key().to_openssh().unwrap_or_default();
                    Some((run, node, key))
                }
                Err(e) => {
                    let line = self
                        .access
                        .unreachable(&node, JIG_ACTOR, &run.job.role, e, "before the run")
                        .await;
                    let _ = run
                        .reply
                        .send(JigOutput::failed(format!("ansible jig: {line}")));
                    None
                }
            }
        }))
        .await;
        let hosts: Vec<Host> = reached
            .into_iter()
            .flatten()
            .map(|(run, node, key)| Host { run, node, key })
            .collect();
        if hosts.is_empty() {
            return;
        }
        let outcome = self.play(cohort, &tree, &playbook, &hosts).await;
        for host in hosts {
            let output = match &outcome {
                Ok(play) => self.outcome_of(&host, play).await,
                Err(message) => JigOutput::failed(format!("ansible jig: {message}")),
            };
            let _ = host.run.reply.send(output);
        }
    }

    /// Runs the playbook over `hosts` in a private directory; what each host came to.
    async fn play(
        &self,
        cohort: &Cohort,
        tree: &[ScriptFile],
        playbook: &str,
        hosts: &[Host],
    ) -> Result<Play, String> {
        let dir = tempfile::Builder::new()
            .prefix("crowbar-ansible-run-")
            .tempdir()
            .map_err(|e| format!("cannot make the run's directory: {e}"))?;
        let dropped = self
            .prepare(dir.path(), tree, hosts)
            .map_err(|e| format!("cannot write the run's files: {e}"))?;
        // Our own limit ends just before the runner's, so the processes are killed.
        let limit = hosts
            .iter()
            .map(|h| h.run.job.timeout)
            .min()
            .unwrap_or_default()
            .max(Duration::from_secs(2))
            - Duration::from_secs(1);
        let log = std::fs::File::create(dir.path().join("ansible.log"))
            .map_err(|e| format!("cannot make the run's log: {e}"))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("cannot make the run's log: {e}"))?;
        let results = dir.path().join("results.json");
        // Nothing of the daemon's environment (its database URL, say) reaches the play.
        let mut child = tokio::process::Command::new(&self.settings.ansible_playbook)
            .arg(Path::new("playbook").join(playbook))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", dir.path())
            .env("ANSIBLE_CONFIG", dir.path().join("ansible.cfg"))
            .env("ANSIBLE_HOME", dir.path().join(".ansible"))
            .env("CROWBAR_RESULTS", &results)
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!(
                    "{} cannot be run ({e}); install ansible-core (scripts/python-tools) or \
                     give its path with --ansible-playbook",
                    self.settings.ansible_playbook.display()
                )
            })?;
        let pid = child.id();
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.map_err(|e| format!("waiting for ansible-playbook: {e}"))?,
            Err(_) => {
                if let Some(pid) = pid {
                    // the whole group: ansible-playbook's workers and their ssh
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait().await;
                return Err(format!(
                    "{} on {} node(s) did not finish within {limit:?}; it was killed",
                    cohort.role,
                    hosts.len()
                ));
            }
        };
        let output = tail(&std::fs::read(dir.path().join("ansible.log")).unwrap_or_default());
        let reports: HashMap<String, HostReport> = match std::fs::read(&results) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the results of ansible-playbook are unreadable: {e}"))?,
            Err(_) => {
                return Err(format!(
                    "ansible-playbook ended ({status}) without running the play:\n{output}"
                ));
            }
        };
        Ok(Play {
            success: status.success(),
            output,
            reports,
            dropped,
        })
    }

    /// The run's directory: configuration, inventory, each host's variables, the pinned
    /// keys, the callback plugin and the barclamp's `ansible/` folder as `playbook/`.
    fn prepare(
        &self,
        dir: &Path,
        tree: &[ScriptFile],
        hosts: &[Host],
    ) -> std::io::Result<HashMap<String, Vec<String>>> {
        let write = |path: PathBuf, contents: &[u8]| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, contents)
        };
        for file in tree {
            // names come from a directory walk or the binary: no `..`, but make sure
            if file
                .name
                .split('/')
                .any(|part| part == ".." || part.is_empty())
            {
                continue;
            }
            write(dir.join("playbook").join(&file.name), &file.contents)?;
        }
        write(
            dir.join("callback_plugins/crowbar_results.py"),
            CALLBACK.as_bytes(),
        )?;
        let mut inventory = String::from("all:\n  hosts:\n");
        let mut known_hosts = String::new();
        let mut dropped = HashMap::new();
        for host in hosts {
            let addr = host.node.ssh_addr();
            inventory.push_str(&format!(
                "    {}:\n      ansible_host: \"{}\"\n      ansible_port: {}\n",
                Value::String(host.node.name.clone()),
                addr.ip(),
                addr.port()
            ));
            let pattern = if addr.port() == 22 {
                addr.ip().to_string()
            } else {
                format!("[{}]:{}", addr.ip(), addr.port())
            };
            known_hosts.push_str(&format!("{pattern} {}\n", host.key));
            let (json, left_out) = vars::host_vars(&host.run.job.input);
            write(
                dir.join("host_vars")
                    .join(format!("{}.yml", host.node.name)),
                json.as_bytes(),
            )?;
            dropped.insert(host.node.name.clone(), left_out);
        }
        write(dir.join("inventory.yml"), inventory.as_bytes())?;
        write(dir.join("known_hosts"), known_hosts.as_bytes())?;
        let timeouts = self.access.settings().ssh_timeouts();
        let config = format!(
            "[defaults]\n\
             inventory = {dir}/inventory.yml\n\
             forks = {forks}\n\
             remote_user = root\n\
             private_key_file = {key}\n\
             host_key_checking = True\n\
             callbacks_enabled = crowbar_results\n\
             callback_plugins = {dir}/callback_plugins\n\
             retry_files_enabled = False\n\
             interpreter_python = auto_silent\n\
             timeout = {connect}\n\
             local_tmp = {dir}/.ansible/tmp\n\
             nocows = True\n\
             \n\
             [ssh_connection]\n\
             ssh_args = -o ControlMaster=auto -o ControlPersist=60s \
             -o UserKnownHostsFile={dir}/known_hosts -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes\n\
             control_path_dir = {control}\n\
             pipelining = True\n",
            dir = dir.display(),
            forks = hosts.len().max(1),
            key = self.access.client_key().path().display(),
            connect = timeouts.connect.as_secs().max(1),
            control = self.control_dir.path().display(),
        );
        write(dir.join("ansible.cfg"), config.as_bytes())?;
        Ok(dropped)
    }

    /// One host's outcome as its run's output.
    async fn outcome_of(&self, host: &Host, play: &Play) -> JigOutput {
        let name = &host.node.name;
        let mut log: Vec<String> = Vec::new();
        if let Some(dropped) = play.dropped.get(name).filter(|d| !d.is_empty()) {
            log.push(format!(
                "ansible jig: left out of the play's variables (Ansible's own names): {}",
                dropped.join(", ")
            ));
        }
        let Some(report) = play.reports.get(name) else {
            if play.success {
                log.push("ansible jig: the play ran no task on this node".into());
                return JigOutput::ok(Some(Value::Object(Default::default())), log.join("\n"));
            }
            log.push(format!(
                "ansible jig: the play did not reach this node:\n{}",
                play.output
            ));
            return JigOutput::failed(log.join("\n"));
        };
        log.extend(report.log.iter().cloned());
        if report.cut > 0 {
            log.push(format!("({} more task lines cut)", report.cut));
        }
        log.push(format!("{} task(s) changed", report.changed));
        match report.status.as_str() {
            "ok" => match &report.wall {
                None | Some(Value::Null) => {
                    JigOutput::ok(Some(Value::Object(Default::default())), log.join("\n"))
                }
                Some(wall @ Value::Object(_)) => JigOutput::ok(Some(wall.clone()), log.join("\n")),
                Some(other) => {
                    log.push(format!(
                        "ansible jig: crowbar_wall must be an object, not {other:.100}"
                    ));
                    JigOutput::failed(log.join("\n"))
                }
            },
            "unreachable" => {
                let reason = format!(
                    "unreachable during {}: {}",
                    host.run.job.role,
                    report.message.as_deref().unwrap_or_default()
                );
                if let Err(e) = self
                    .access
                    .mark_dead(host.node.id, JIG_ACTOR, &reason)
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "cannot mark the node dead");
                }
                log.push(format!("ansible jig: {name} is {reason}; marked dead"));
                JigOutput::failed(log.join("\n"))
            }
            _ => {
                log.push(format!(
                    "ansible jig: task `{}` failed on {name}: {}",
                    report.failed_task.as_deref().unwrap_or("?"),
                    report.message.as_deref().unwrap_or_default()
                ));
                JigOutput::failed(log.join("\n"))
            }
        }
    }
}

/// One node of a batch: its run, how to reach it, the host key it presented (pinned).
struct Host {
    run: Waiting,
    node: NodeRef,
    key: String,
}

/// What one ansible-playbook came to.
struct Play {
    success: bool,
    output: String,
    reports: HashMap<String, HostReport>,
    dropped: HashMap<String, Vec<String>>,
}

/// One host's lines of `results.json` (the callback plugin's).
#[derive(Debug, Deserialize)]
struct HostReport {
    status: String,
    changed: u64,
    log: Vec<String>,
    cut: u64,
    wall: Option<Value>,
    failed_task: Option<String>,
    message: Option<String>,
}

fn fail_all(batch: Vec<Waiting>, message: &str) {
    for run in batch {
        let _ = run
            .reply
            .send(JigOutput::failed(format!("ansible jig: {message}")));
    }
}

/// The end of ansible-playbook's output, for a batch that failed as a whole.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]);
    if start > 0 {
        format!("[... {start} bytes cut]\n{text}")
    } else {
        text.into_owned()
    }
}
