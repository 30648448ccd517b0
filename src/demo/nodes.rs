//! Which nodes the demo runs on, and starting them: namespace nodes with sshd when this
//! machine can run them, simulated ones otherwise. The log says which and why.

use std::{
    env,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    http::{ApiError, AppState},
    netns::{NodeRig, RigSpec},
};

/// The programs namespace nodes need (the script jig runs `jq` on the node), and where sshd
/// must be.
const PROGRAMS: [&str; 4] = ["ip", "unshare", "ssh-keygen", "jq"];
const SSHD: &str = "/usr/sbin/sshd";
/// How long to wait for an address block the tests may be holding; then simulate.
const BLOCK_WAIT: Duration = Duration::from_secs(10);

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
/// machine can run them, on simulated nodes otherwise. `authorized_key` is the daemon's SSH
/// public key; the nodes keep their files under `dir`.
pub async fn start(
    state: &AppState,
    authorized_key: &str,
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
        None => {
            let mut spec = RigSpec::new(super::NODES.len(), authorized_key);
            spec.names = super::NODES.map(String::from).to_vec();
            spec.dir = Some(dir.to_path_buf());
            spec.block_wait = BLOCK_WAIT;
            match tokio::task::spawn_blocking(move || NodeRig::start(&spec)).await {
                Ok(Ok(rig)) => Some(rig),
                Ok(Err(e)) => {
                    tracing::warn!("demo on simulated nodes: namespace nodes did not start: {e:#}");
                    None
                }
                Err(e) => {
                    tracing::warn!("demo on simulated nodes: starting namespace nodes failed: {e}");
                    None
                }
            }
        }
    };
    let Some(rig) = rig else {
        return Ok((super::seed(state).await?, None));
    };
    let addresses = [1, 2, 3].map(|i| rig.node(i).addr().to_string());
    tracing::info!(
        rig = rig.id(),
        bridge = rig.bridge(),
        ?addresses,
        "demo on namespace nodes with sshd (running as root)"
    );
    match super::seed_namespace_nodes(state, &addresses).await {
        Ok(seeded) => Ok((seeded, Some(rig))),
        Err(e) => {
            tokio::task::spawn_blocking(move || drop(rig)).await.ok();
            Err(e)
        }
    }
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
