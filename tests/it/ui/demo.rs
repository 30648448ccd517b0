//! `crowbar serve --demo`'s deployment: seeded once, and it converges by itself.

use std::time::{Duration, Instant};

use crowbar::{db, http::AppState};

use crate::support::{
    daemon::{Daemon, DaemonOptions, DataDir},
    demo::{DemoFootprint, admin_get, namespaces_of, wait_demo_finished},
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

    let footprint = DemoFootprint::of(&daemon);

    assert!(daemon.stop().await.success());
    let log = daemon.stderr();
    assert!(log.contains("demo namespace nodes removed"), "{log}");
    footprint.assert_gone();
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
