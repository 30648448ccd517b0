//! Which nodes the demo runs on, and starting them: namespace nodes with sshd when this
//! machine can run them, simulated ones otherwise. The log says which and why.

use std::{
    env,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    http::{ApiError, AppState},
    node_rig::{NodeRig, RigSpec},
    ssh::{ClientKey, HostKeyPin, SshClient, SshTimeouts},
};

/// The programs namespace nodes need (the script jig runs `jq` on the node), and where sshd
/// must be.
const PROGRAMS: [&str; 4] = ["ip", "unshare", "ssh-keygen", "jq"];
const SSHD: &str = "/usr/sbin/sshd";
/// How long to wait for an address block the tests may be holding; then simulate.
const BLOCK_WAIT: Duration = Duration::from_secs(10);
/// How long the started nodes have to answer over SSH; then simulate.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// Why namespace nodes cannot run here, or `None` when they can.
pub fn namespace_nodes_unavailable(is_root: bool, path: Option<&str>) -> Option<String> {
    if !is_root {
        return Some("not running as root".into());
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| env::split_paths(p).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = PROGRAMS
        .into_iter()
        .filter(|program| !dirs.iter().any(|dir| dir.join(program).is_file()))
        .collect();
    if !missing.is_empty() {
        return Some(format!("{} not found on PATH", missing.join(", ")));
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} not found (openssh-server)"));
    }
    None
}

/// Seeds the demo: on namespace nodes (returned; dropping them tears them down) when this
/// machine can run them and they answer, on simulated nodes otherwise. `key` is the
/// daemon's SSH key, which the nodes authorize; the nodes keep their files under `dir`.
pub async fn start(
    state: &AppState,
    key: &ClientKey,
    timeouts: SshTimeouts,
    dir: &Path,
) -> Result<(bool, Option<NodeRig>), ApiError> {
    let unavailable = namespace_nodes_unavailable(
        nix::unistd::geteuid().is_root(),
        env::var("PATH").ok().as_deref(),
    );
    let rig = match unavailable {
        Some(reason) => {
            tracing::info!("demo on simulated nodes: {reason}");
            None
        }
        None => start_rig(key, timeouts, dir).await,
    };
    let Some(rig) = rig else {
        return Ok((super::seed(state).await?, None));
    };
    let nodes = [1, 2, 3].map(|i| super::NamespaceNode {
        address: rig.node(i).addr().to_string(),
        host_key: rig.node(i).host_key_openssh().to_string(),
    });
    tracing::info!(
        rig = rig.id(),
        bridge = rig.bridge(),
        addresses = ?nodes.iter().map(|n| &n.address).collect::<Vec<_>>(),
        "demo on namespace nodes with sshd (running as root)"
    );
    match super::seed_namespace_nodes(state, &nodes).await {
        Ok(seeded) => Ok((seeded, Some(rig))),
        Err(e) => {
            tokio::task::spawn_blocking(move || drop(rig)).await.ok();
            Err(e)
        }
    }
}

/// Starts the namespace nodes and waits until each answers; `None` (saying why) when they
/// do not, with whatever was started removed again.
async fn start_rig(key: &ClientKey, timeouts: SshTimeouts, dir: &Path) -> Option<NodeRig> {
    let mut spec = RigSpec::new(super::NODES.len(), &key.public_openssh());
    spec.names = super::NODES.map(String::from).to_vec();
    spec.dir = Some(dir.to_path_buf());
    spec.block_wait = BLOCK_WAIT;
    let rig = match tokio::task::spawn_blocking(move || NodeRig::start(&spec)).await {
        Ok(Ok(rig)) => rig,
        Ok(Err(e)) => {
            tracing::warn!("demo on simulated nodes: namespace nodes did not start: {e:#}");
            return None;
        }
        Err(e) => {
            tracing::warn!("demo on simulated nodes: starting namespace nodes failed: {e}");
            return None;
        }
    };
    let client = SshClient::new(key.clone(), timeouts);
    match wait_answering(&rig, &client).await {
        Ok(()) => Some(rig),
        Err(e) => {
            tracing::warn!("demo on simulated nodes: {e:#}");
            tokio::task::spawn_blocking(move || drop(rig)).await.ok();
            None
        }
    }
}

/// Waits (up to [`ANSWER_WAIT`]) until every node of `rig` answers: an SSH login with the
/// daemon's key, the node presenting the host key the rig generated, and a command that
/// succeeds. Listening is not enough: an sshd that cannot load its keys accepts
/// connections and drops them. The demo commits only after this, so its first runs find
/// their nodes up.
async fn wait_answering(rig: &NodeRig, client: &SshClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_WAIT;
    for node in rig.nodes() {
        loop {
            let pin = HostKeyPin::Expect(node.host_key().clone());
            let answer = match client.connect(node.ssh_addr(), pin).await {
                Ok(session) => {
                    let ran = session.exec("true", None).await;
                    session.close().await;
                    ran.map_err(anyhow::Error::from).and_then(|out| {
                        anyhow::ensure!(out.success(), "`true` failed: {:?}", out.status);
                        Ok(())
                    })
                }
                Err(e) => Err(e.into()),
            };
            match answer {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => anyhow::bail!(
                    "namespace node {} does not answer over SSH after {ANSWER_WAIT:?}: {e:#}\n\
                     its sshd said:\n{}",
                    node.name(),
                    node.sshd_log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_nodes_need_root_and_the_programs() {
        assert_eq!(
            namespace_nodes_unavailable(false, Some("/usr/sbin:/usr/bin")).as_deref(),
            Some("not running as root")
        );
        let empty = tempfile::tempdir().unwrap();
        let reason =
            namespace_nodes_unavailable(true, Some(empty.path().to_str().unwrap())).unwrap();
        assert_eq!(reason, "ip, unshare, ssh-keygen, jq not found on PATH");
    }
}
