//! The README's commands, literally, where a newcomer runs them: the daemon started the
//! way `scripts/run` starts it (the checkout as working directory, no `--data-dir`), as
//! root, from a checkout inside a private (0700) directory such as `/root`.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::support::{
    daemon::{Daemon, DaemonOptions},
    demo::{DemoFootprint, admin_get, wait_demo_finished},
};

/// A checkout directory inside a directory only root may enter, and the private
/// PostgreSQL's files, which crowbar keeps elsewhere for such a checkout: both removed
/// when dropped (after the daemon, which is declared after it).
struct PrivateCheckout {
    _home: tempfile::TempDir,
    checkout: PathBuf,
}

impl PrivateCheckout {
    fn new() -> PrivateCheckout {
        let home = tempfile::Builder::new()
            .prefix("crowbar-it-home-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let checkout = home.path().join("crowbar");
        std::fs::create_dir(&checkout).unwrap();
        PrivateCheckout {
            _home: home,
            checkout,
        }
    }

    fn path(&self) -> &Path {
        &self.checkout
    }

    /// Where the private PostgreSQL of `<checkout>/var` lives.
    fn cluster(&self) -> crowbar::pg::ClusterLocation {
        crowbar::pg::cluster_location(&self.checkout.join("var")).unwrap()
    }
}

impl Drop for PrivateCheckout {
    fn drop(&mut self) {
        let cluster = self.cluster();
        if cluster.relocated.is_some() {
            let _ = std::fs::remove_dir_all(&cluster.dir);
        }
    }
}

/// The private PostgreSQL runs, in a place its user can reach, and the user's own
/// directory keeps its permissions.
fn assert_cluster_relocated(checkout: &PrivateCheckout, daemon: &Daemon) {
    let cluster = checkout.cluster();
    assert!(cluster.relocated.is_some(), "{cluster:?}");
    assert!(
        cluster.dir.starts_with(crowbar::pg::RELOCATED_CLUSTERS),
        "{cluster:?}"
    );
    assert!(cluster.dir.join("PG_VERSION").is_file(), "{cluster:?}");
    let log = daemon.stderr();
    assert!(
        log.contains(&format!(
            "the private PostgreSQL keeps its files in {}",
            cluster.dir.display()
        )),
        "{log}"
    );
    let home = checkout.path().parent().unwrap();
    let mode = std::fs::metadata(home).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the private directory stays private");
}

/// `scripts/run --demo`: the demo converges on namespace nodes (their sshds given absolute
/// paths), no node is ever marked dead on the way, and stopping leaves nothing behind.
#[tokio::test]
async fn run_demo_from_a_private_checkout_converges_and_leaves_nothing() {
    let checkout = PrivateCheckout::new();
    let mut daemon = Daemon::start(
        DaemonOptions::default()
            .checkout(checkout.path())
            .arg("--demo"),
    )
    .await;
    assert_cluster_relocated(&checkout, &daemon);
    wait_demo_finished(&daemon).await;
    let log = daemon.stderr();
    assert!(log.contains("demo on namespace nodes"), "{log}");
    let died: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("node aliveness changed") && line.contains("alive=false"))
        .collect();
    assert!(died.is_empty(), "demo nodes marked dead: {died:?}");
    let (status, node) = admin_get(&daemon, "/api/v2/nodes/demo-1.example.com").await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["alive"], true, "{node}");

    let footprint = DemoFootprint::of(&daemon);
    assert!(daemon.stop().await.success());
    footprint.assert_gone();
}

/// `scripts/run`: the API answers, and the admin token is in `./var/admin.token`.
#[tokio::test]
async fn run_from_a_private_checkout_serves_with_the_token_where_the_readme_says() {
    let checkout = PrivateCheckout::new();
    let mut daemon = Daemon::start(DaemonOptions::default().checkout(checkout.path())).await;
    let token_file = checkout.path().join("var/admin.token");
    assert!(token_file.is_file(), "no {}", token_file.display());
    assert!(
        daemon
            .stdout()
            .contains(std::fs::read_to_string(&token_file).unwrap().trim()),
        "the token is printed once at the first start"
    );
    assert_cluster_relocated(&checkout, &daemon);
    let (status, body) = admin_get(&daemon, "/api/v2/anneal").await;
    assert!(status.is_success(), "{status} {body}");
    let unauthenticated = daemon.get("/api/v2/nodes").await;
    assert_eq!(unauthenticated.status(), 401);
    assert!(daemon.stop().await.success());

    // The next start finds the same cluster and the same token.
    let mut again = Daemon::start(DaemonOptions::default().checkout(checkout.path())).await;
    let (status, _) = admin_get(&again, "/api/v2/anneal").await;
    assert!(status.is_success());
    assert!(again.stderr().contains("admin token read from its file"));
    assert!(again.stop().await.success());
}
