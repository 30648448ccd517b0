//! `serve --demo` seen from outside: waiting for the demo deployment to converge, and what a
//! demo daemon created on this machine (namespaces, links, processes, files), to check that
//! it is all gone once the daemon stops.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use super::daemon::Daemon;

/// How long the demo has to converge: three nodes, a few seconds of work each.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(60);

/// GET `path` as the daemon's admin (the token in `<data dir>/admin.token`, where the
/// README says it is): the status and the JSON body.
pub async fn admin_get(daemon: &Daemon, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token"))
        .unwrap_or_else(|e| panic!("no admin token in {}: {e}", daemon.data_dir().display()));
    let response = daemon
        .client()
        .get(format!("{}{path}", daemon.url()))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Polls the anneal status of the demo deployment until it is finished (within
/// [`CONVERGE_WAIT`]).
pub async fn wait_demo_finished(daemon: &Daemon) {
    let deadline = Instant::now() + CONVERGE_WAIT;
    loop {
        let (status, body) = admin_get(daemon, "/api/v2/anneal?deployment=demo").await;
        if status == 200 {
            assert_eq!(body["status"], "finished", "{}", daemon.stderr());
            return;
        }
        assert_eq!(status, 202, "{body}");
        assert!(
            Instant::now() < deadline,
            "the demo did not converge: {body}\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The network namespaces whose names carry `pid` (the rig ids of that process).
pub fn namespaces_of(pid: i32) -> Vec<String> {
    let tag = format!("p{pid}-node");
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("crowbar-") && name.contains(&tag))
                .collect()
        })
        .unwrap_or_default()
}

/// A process's start time (field 22 of `/proc/<pid>/stat`): tells it from a later process
/// given the same pid.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)
        .map(String::from)
}

/// What a running demo daemon made on this machine, found by the names carrying its pid.
#[derive(Debug)]
pub struct DemoFootprint {
    pid: i32,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    /// (pid, start time) of every process in the namespaces.
    pub processes: Vec<(u32, String)>,
    /// Where the nodes keep their files.
    pub nodes_dir: PathBuf,
}

impl DemoFootprint {
    /// Reads it, asserting that it is a demo on namespace nodes: three namespaces, a bridge
    /// and three veths, an sshd per node at least.
    pub fn of(daemon: &Daemon) -> DemoFootprint {
        let pid = daemon.pid();
        let namespaces = namespaces_of(pid);
        assert_eq!(namespaces.len(), 3, "{namespaces:?}");
        let links = links_of(pid);
        assert_eq!(links.len(), 4, "a bridge and three veths: {links:?}");
        let processes: Vec<(u32, String)> = crowbar::node_rig::processes_in(&namespaces)
            .into_iter()
            .filter_map(|pid| Some((pid, process_start(pid)?)))
            .collect();
        assert!(
            processes.len() >= 3,
            "an sshd per node at least: {processes:?}"
        );
        DemoFootprint {
            pid,
            namespaces,
            links,
            processes,
            nodes_dir: daemon.data_dir().join("demo-nodes"),
        }
    }

    /// Asserts that nothing of it is left: call once the daemon has stopped.
    pub fn assert_gone(&self) {
        let netns_left: Vec<String> = std::fs::read_dir("/run/netns")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| self.namespaces.contains(name))
            .collect();
        assert!(netns_left.is_empty(), "namespaces left: {netns_left:?}");
        let links_left = links_of(self.pid);
        assert!(links_left.is_empty(), "links left: {links_left:?}");
        for (pid, started) in &self.processes {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A killed session whose parent is gone may stay a zombie until init reaps it.
            let zombie = state
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
            assert!(
                zombie || process_start(*pid).as_ref() != Some(started),
                "process {pid} of a demo node is left: {state}"
            );
        }
        assert!(
            !self.nodes_dir.exists(),
            "{} is left",
            self.nodes_dir.display()
        );
    }
}

/// The bridge and veths of the rigs of process `pid` (`crb<block>p<pid>`,
/// `crv<block>p<pid>n<i>`).
fn links_of(pid: i32) -> Vec<String> {
    let tag = format!("p{pid}");
    crowbar::node_rig::link_names()
        .into_iter()
        .filter(|name| {
            (name.starts_with("crb") || name.starts_with("crv"))
                && (name.ends_with(&tag) || name.contains(&format!("{tag}n")))
        })
        .collect()
}
