//! The `script` jig: runs a role's shell scripts on the node over SSH.
//!
//! For a run of role R on node N it ships, in one tar stream on the command's stdin, a
//! fresh temporary directory's content to N: the node-side runner and helper library
//! (`jigs/script/runner.sh`, `jigs/script/lib.sh`), the run's frozen input data as
//! `input.json`, and R's scripts (`barclamps/<barclamp>/roles/<R>/*`) in `scripts/`. The
//! command itself is a constant: no value of the data, not even a file name, is ever part
//! of a command line. The runner runs the scripts in name order under `bash -e`, the exit
//! status decides success, what they print becomes the runlog (its tail, saying what was
//! cut) and the wall they build with `write_attribute` comes back as JSON on stdout. The
//! directory is removed whatever happens. See `docs/nodes.md` for the contract.
//!
//! Before each run the node is pinged and its (cached, host-key pinned) connection opened;
//! if the node cannot be reached — before or during the run — it is marked dead (the death
//! ripple of SEMANTICS.md §6) instead of failing the noderole: the run is then judged by the
//! death (§5) and runs again when the node is back.

mod archive;

use std::{net::IpAddr, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde_json::Value;

use self::archive::Archive;
use super::{Jig, JigJob, JigOutput};
use crate::{
    access::{AccessError, NodeAccess, NodeRef},
    barclamps::{ScriptFile, role_scripts},
    domain::data::get_path,
    ssh::{ExitStatus, SshError},
};

/// The node-side runner (see the file for its contract).
pub const RUNNER: &str = include_str!("../../jigs/script/runner.sh");
/// The helpers scripts use to read their data and return wall data.
pub const LIBRARY: &str = include_str!("../../jigs/script/lib.sh");

/// What runs on the node: unpack the stream into a fresh private directory, hand over to
/// the runner (which removes the directory). A constant, on purpose.
const BOOTSTRAP: &str = r#"umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/crowbar-run.XXXXXXXXXX") || exit 90; if ! tar -x -f - -C "$d"; then rm -rf -- "$d"; echo "crowbar: cannot unpack the run into $d" >&2; exit 91; fi; exec bash "$d/runner.sh" "$d""#;

/// Who the node history names when a run finds its node unreachable.
pub const JIG_ACTOR: &str = "jig:script";

pub struct ScriptJig {
    access: Arc<NodeAccess>,
}

impl ScriptJig {
    pub fn new(access: Arc<NodeAccess>) -> Self {
        Self { access }
    }
}

impl Jig for ScriptJig {
    fn name(&self) -> &'static str {
        "script"
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(self.execute(job))
    }
}

impl ScriptJig {
    #[tracing::instrument(skip_all, fields(run = job.run_id, node = %job.node, role = %job.role))]
    async fn execute(&self, job: &JigJob) -> JigOutput {
        let Some(addr) = get_path(&job.input, "crowbar/node/address")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            return JigOutput::failed(format!(
                "script jig: node {} has no address to reach it by; give it one \
                 (PUT /api/v2/nodes/{} {{\"address\": ...}})",
                job.node, job.node
            ));
        };
        let node = NodeRef {
            id: job.node_id,
            name: job.node.clone(),
            addr,
        };
        let scripts = match load_scripts(job).await {
            Ok(scripts) => scripts,
            Err(message) => return JigOutput::failed(format!("script jig: {message}")),
        };
        let stream = match bundle(&job.node, &job.role, &job.input, &scripts) {
            Ok(stream) => stream,
            Err(message) => return JigOutput::failed(format!("script jig: {message}")),
        };

        // The check before the run: ping, and a connection that passes the pinned key.
        let session = match self.access.reach(&node).await {
            Ok(session) => session,
            Err(e) => {
                return self
                    .unreachable(&node, &job.role, e, "before the run")
                    .await;
            }
        };
        // Our own limit ends just before the runner's, so the node's processes are killed.
        let limit = job.timeout.max(Duration::from_secs(2)) - Duration::from_secs(1);
        let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
        tracing::debug!(scripts = ?names, "running");
        match session
            .exec_with_timeout(BOOTSTRAP, Some(&stream), limit)
            .await
        {
            Ok(out) => {
                let log = out.stderr_lossy();
                if !out.success() {
                    let how = match &out.status {
                        ExitStatus::Code(code) => format!("exit status {code}"),
                        ExitStatus::Signal { name, .. } => format!("signal {name}"),
                    };
                    return JigOutput::failed(format!(
                        "{log}script jig: {} on {} failed ({how})",
                        job.role, job.node
                    ));
                }
                match serde_json::from_slice::<Value>(&out.stdout) {
                    Ok(wall @ Value::Object(_)) => JigOutput::ok(Some(wall), log),
                    _ => JigOutput::failed(format!(
                        "{log}script jig: the runner returned no wall (stdout: {:.200})",
                        out.stdout_lossy()
                    )),
                }
            }
            Err(e @ SshError::OutputTooLarge { .. }) => JigOutput::failed(format!(
                "script jig: {} on {}: {e}; its processes on the node were killed (the limit \
                 is --ssh-output-limit)",
                job.role, job.node
            )),
            Err(SshError::CommandTimeout { after, .. }) => JigOutput::failed(format!(
                "script jig: the scripts of {} did not finish within {after:?}; their processes \
                 on {} were killed",
                job.role, job.node
            )),
            Err(e) => {
                self.unreachable(&node, &job.role, AccessError::Ssh(e), "during the run")
                    .await
            }
        }
    }

    /// The node could not be reached: it is dead (§6), unless the failure was ours.
    async fn unreachable(
        &self,
        node: &NodeRef,
        role: &str,
        error: AccessError,
        when: &str,
    ) -> JigOutput {
        let line = self
            .access
            .unreachable(node, JIG_ACTOR, role, error, when)
            .await;
        JigOutput::failed(format!("script jig: {line}"))
    }
}

async fn load_scripts(job: &JigJob) -> Result<Vec<ScriptFile>, String> {
    let (source, barclamp, role) = (
        job.barclamp_source.clone(),
        job.barclamp.clone(),
        job.role.clone(),
    );
    let scripts = tokio::task::spawn_blocking(move || role_scripts(&source, &barclamp, &role))
        .await
        .map_err(|e| format!("reading the role's scripts failed: {e}"))?
        .map_err(|e| format!("cannot read the role's scripts: {e}"))?;
    for script in &scripts {
        if !valid_script_name(&script.name) {
            return Err(format!(
                "script file name {:?} is not allowed (letters, digits, '.', '_' and '-', \
                 not starting with '.', at most 90)",
                script.name
            ));
        }
    }
    Ok(scripts)
}

fn valid_script_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 90
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The tar stream of one run: runner, library, input data, scripts.
fn bundle(
    node: &str,
    role: &str,
    input: &Value,
    scripts: &[ScriptFile],
) -> Result<Vec<u8>, String> {
    let data = serde_json::to_vec(input).map_err(|e| format!("cannot encode the input: {e}"))?;
    let mut archive = Archive::new();
    archive.file("runner.sh", 0o700, RUNNER.as_bytes());
    archive.file("lib.sh", 0o600, LIBRARY.as_bytes());
    archive.file("input.json", 0o600, &data);
    archive.file("node", 0o600, node.as_bytes());
    archive.file("role", 0o600, role.as_bytes());
    archive.dir("scripts", 0o700);
    for script in scripts {
        archive.file(&format!("scripts/{}", script.name), 0o700, &script.contents);
    }
    Ok(archive.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_are_plain_file_names() {
        assert!(valid_script_name("10-hostname.sh"));
        assert!(valid_script_name("20_keys"));
        assert!(!valid_script_name(".hidden"));
        assert!(!valid_script_name("a b"));
        assert!(!valid_script_name("a;b"));
        assert!(!valid_script_name("$(x)"));
        assert!(!valid_script_name(""));
    }

    #[test]
    fn the_command_is_a_constant_without_data() {
        // The whole point: what reaches the node's shell as a command is this text only.
        assert!(!BOOTSTRAP.contains('\n'));
        assert!(BOOTSTRAP.contains("tar -x -f -"));
    }

    /// The bootstrap, runner and library run locally like on a node: hostile values go in
    /// and come back unchanged, and nothing of them is executed.
    #[test]
    fn the_runner_round_trips_hostile_values_locally() {
        let marker = std::env::temp_dir().join(format!("crowbar-pwned-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let hostile = [
            format!("$(touch {})", marker.display()),
            format!("`touch {}`", marker.display()),
            format!("'; touch {} #", marker.display()),
            "line one\nline two".to_string(),
            "cafe".to_string(),
            "42".to_string(),
        ];
        let input = serde_json::json!({
            "crowbar": {"node": {"name": "n1.example.com"}, "noderole": {"role": "r"}},
            "v": hostile,
        });
        let script = ScriptFile {
            name: "10-echo.sh".into(),
            contents: std::borrow::Cow::Borrowed(
                b"for i in $(get_keys v); do write_attribute \"out/$i\" \"$(read_attribute v/$i)\"; done\necho done $CROWBAR_NODE $CROWBAR_ROLE\n",
            ),
        };
        let stream = bundle("n1.example.com", "r", &input, &[script]).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(BOOTSTRAP)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("done n1.example.com r"), "{log}");
        let wall: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (i, value) in hostile.iter().enumerate() {
            assert_eq!(wall["out"][i.to_string()], Value::String(value.clone()));
        }
        assert!(!marker.exists(), "a hostile value was executed");
    }
}
