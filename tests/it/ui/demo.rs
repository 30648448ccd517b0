//! `crowbar serve --demo`'s deployment: seeded once, and it converges by itself.

use std::time::{Duration, Instant};

use crowbar::{db, http::AppState};

use crate::support::ui_site::UiSite;

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
    use crate::support::daemon::{Daemon, DaemonOptions};
    let mut daemon = Daemon::start(DaemonOptions::default().arg("--demo")).await;
    let token = std::fs::read_to_string(daemon.data_dir().join("admin.token")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = daemon
            .client()
            .get(format!("{}/api/v2/anneal?deployment=demo", daemon.url()))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        if status == 200 {
            assert_eq!(body["status"], "finished", "{}", daemon.stderr());
            break;
        }
        assert_eq!(status, 202, "{body}");
        assert!(
            Instant::now() < deadline,
            "the demo did not converge: {body}\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("crowbar-") && name.contains(&format!("{tag}-node")))
        .collect();
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
    let processes = crowbar::netns::processes_in(&namespaces);
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
    for pid in processes {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of a demo node is left"
        );
    }
    assert!(!nodes.exists(), "{} is left", nodes.display());
}
