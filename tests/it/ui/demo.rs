//! `crowbar serve --demo`'s deployment: seeded once, and it converges by itself.

use std::time::{Duration, Instant};

use crowbar::{db, http::AppState};

use crate::support::{
    daemon::{Daemon, DaemonOptions, DataDir},
    ui_site::UiSite,
};

#[tokio::test]
async fn the_demo_deployment_converges_by_itself_and_is_seeded_once() {
    let site = UiSite::start().await;
    let state = AppState::new(site.pool.clone());
    assert!(crowbar::demo::seed(&state).await.unwrap());
    assert!(!crowbar::demo::seed(&state).await.unwrap(), "seeded once");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = db::anneal::status(&site.pool, Some(crowbar::demo::DEPLOYMENT))
            .await
            .unwrap();
        if status.status == "finished" {
            break;
        }
        assert_ne!(status.status, "failed", "{status:?}");
        assert!(Instant::now() < deadline, "not converged: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id
          WHERE d.name = 'demo' AND nr.state = 0",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert!(
        active >= 6,
        "the bound roles and their parents ran: {active}"
    );
    site.stop().await;
}

/// GET `path` as the daemon's admin: the status and the JSON body.
async fn admin_get(daemon: &Daemon, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token")).unwrap();
    let response = daemon
        .client()
        .get(format!("{}{path}", daemon.url()))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Polls the anneal status of the demo deployment until it is finished (within a minute).
async fn wait_demo_finished(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
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
fn namespaces_of(pid: i32) -> Vec<String> {
    let tag = format!("p{pid}-node");
    std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("crowbar-") && name.contains(&tag))
        .collect()
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

/// As root (the test machine), `serve --demo` runs the demo on namespace nodes with sshd:
/// the script roles really run there, and SIGTERM leaves nothing behind.
#[tokio::test]
async fn serve_with_demo_converges_on_namespace_nodes_and_removes_them_on_sigterm() {
    let mut daemon = Daemon::start(DaemonOptions::default().arg("--demo")).await;
    wait_demo_finished(&daemon).await;
    assert!(
        daemon.stdout().contains("/deployments/demo"),
        "{}",
        daemon.stdout()
    );
    let log = daemon.stderr();
    assert!(log.contains("demo on namespace nodes"), "{log}");

    // The script roles ran on the nodes, each in its own hostname and state directory.
    let nodes = daemon.data_dir().join("demo-nodes");
    let state = |i: usize, role: &str| {
        std::fs::read_to_string(nodes.join(format!("node{i}/state/demo/{role}")))
            .unwrap_or_else(|e| panic!("node{i} has no {role} file: {e}"))
    };
    assert_eq!(
        state(1, "demo-database"),
        "database on demo-1.example.com\n"
    );
    assert_eq!(
        state(2, "demo-app"),
        "app on demo-2.example.com using the database on demo-1.example.com\n"
    );
    assert_eq!(state(3, "demo-web"), "web on demo-3.example.com\n");

    // What the daemon created, found by the names carrying its pid.
    let tag = format!("p{}", daemon.pid());
    let namespaces = namespaces_of(daemon.pid());
    assert_eq!(namespaces.len(), 3, "{namespaces:?}");
    let ours = |name: &String| {
        (name.starts_with("crb") || name.starts_with("crv"))
            && (name.ends_with(&tag) || name.contains(&format!("{tag}n")))
    };
    let links: Vec<String> = crowbar::netns::link_names()
        .into_iter()
        .filter(ours)
        .collect();
    assert_eq!(links.len(), 4, "a bridge and three veths: {links:?}");
    let processes: Vec<(u32, String)> = crowbar::netns::processes_in(&namespaces)
        .into_iter()
        .filter_map(|pid| Some((pid, process_start(pid)?)))
        .collect();
    assert!(
        processes.len() >= 3,
        "an sshd per node at least: {processes:?}"
    );

    assert!(daemon.stop().await.success());
    let log = daemon.stderr();
    assert!(log.contains("demo namespace nodes removed"), "{log}");
    let netns_left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| namespaces.contains(name))
        .collect();
    assert!(netns_left.is_empty(), "namespaces left: {netns_left:?}");
    let links_left: Vec<String> = crowbar::netns::link_names()
        .into_iter()
        .filter(ours)
        .collect();
    assert!(links_left.is_empty(), "links left: {links_left:?}");
    for (pid, started) in processes {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A killed session whose parent is gone may stay a zombie until init reaps it.
        let zombie = state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z');
        assert!(
            zombie || process_start(pid).as_ref() != Some(&started),
            "process {pid} of a demo node is left: {state}"
        );
    }
    assert!(!nodes.exists(), "{} is left", nodes.display());
}

/// A crashed demo daemon leaves its namespace nodes; the next start removes them, runs new
/// ones and points the kept `demo` deployment's nodes at them.
#[tokio::test]
async fn the_next_demo_start_removes_what_a_crashed_one_left() {
    let data = DataDir::new();
    let options = DaemonOptions::default().data_dir(data.path()).arg("--demo");
    let mut crashed = Daemon::start(options.clone()).await;
    wait_demo_finished(&crashed).await;
    let left = namespaces_of(crashed.pid());
    assert_eq!(left.len(), 3, "{left:?}");
    crashed.kill();

    let mut daemon = Daemon::start(options).await;
    let log = daemon.stderr();
    assert!(log.contains("removing namespace nodes left by"), "{log}");
    let listed = namespaces_of(crashed.pid());
    assert!(listed.is_empty(), "left by the crashed daemon: {listed:?}");
    assert_eq!(namespaces_of(daemon.pid()).len(), 3);
    assert!(
        !daemon.stdout().contains("Demo deployment committed"),
        "seeded once: {}",
        daemon.stdout()
    );
    let (_, node) = admin_get(&daemon, "/api/v2/nodes/demo-1.example.com").await;
    let addr = node["address"].as_str().unwrap_or_default().to_string();
    let node1 = namespaces_of(daemon.pid())
        .into_iter()
        .find(|name| name.ends_with("-node1"))
        .unwrap();
    let in_namespace = std::process::Command::new("ip")
        .args(["-n", &node1, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&in_namespace.stdout).contains(&format!(" {addr}/26")),
        "demo-1 points at {addr}: {}",
        String::from_utf8_lossy(&in_namespace.stdout)
    );
    assert!(daemon.stop().await.success());
    assert!(namespaces_of(daemon.pid()).is_empty());
}
