//! The provisioner as `crowbar serve` wires it: the DHCP and DNS databases, their hooks and
//! `/boot/{mac}` in a real daemon process, with a real dnsmasq to reload (serving nothing:
//! it only has to take the signal), and the failure when dnsmasq is gone.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crowbar::provisioner::dnsmasq::{DHCP_HOSTS_FILE, DHCP_ROLE, DNS_ROLE, HOSTS_FILE, PID_FILE};
use serde_json::{Value, json};

use super::ADMIN;
use crate::support::{
    daemon::{Daemon, DaemonOptions},
    db::test_db,
    site::wait_for,
};

const TOKEN: &str = "provisioner-daemon-test-token";

async fn call(daemon: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let (status, reply) = daemon.call(TOKEN, method.clone(), path, body).await;
    assert!(status.is_success(), "{method} {path}: {status}");
    reply
}

async fn dhcp_noderole(pool: &sqlx::PgPool) -> (i16, String) {
    sqlx::query_as(
        "SELECT nr.state, nr.runlog FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE r.name = $1",
    )
    .bind(DHCP_ROLE)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Kills and reaps the child when dropped, a failed assertion included.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_daemon_keeps_dnsmasq_in_step_and_says_so_when_it_cannot() {
    let db = test_db().await;
    let dir = tempfile::tempdir().unwrap();
    // a dnsmasq without DNS or DHCP service: something real to reload
    let dnsmasq = Command::new("/usr/sbin/dnsmasq")
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let dnsmasq = Reaped(dnsmasq);
    std::fs::write(dir.path().join(PID_FILE), dnsmasq.0.id().to_string()).unwrap();
    let daemon = Daemon::start(
        DaemonOptions::default()
            .arg("--sweep-interval")
            .arg("1s")
            .arg("--dnsmasq-dir")
            .arg(dir.path().display().to_string())
            .arg("--provisioner-url")
            .arg("http://198.51.100.9:3000")
            .env("CROWBAR_DATABASE_URL", db.url.expose())
            .env("CROWBAR_ADMIN_TOKEN", TOKEN),
    )
    .await;
    use reqwest::Method;
    call(
        &daemon,
        Method::POST,
        "/api/v2/nodes",
        Some(json!({"name": ADMIN, "admin": true})),
    )
    .await;
    call(
        &daemon,
        Method::PUT,
        &format!("/api/v2/nodes/{ADMIN}"),
        Some(json!({"alive": true})),
    )
    .await;
    for role in [DHCP_ROLE, DNS_ROLE] {
        let bind = json!({"node": ADMIN, "role": role, "deployment": "system"});
        call(&daemon, Method::POST, "/api/v2/node_roles", Some(bind)).await;
    }
    call(
        &daemon,
        Method::PUT,
        &format!("/api/v2/nodes/{ADMIN}/commit"),
        None,
    )
    .await;
    let node =
        json!({"name": "n1.example.com", "mac": "52:54:00:00:00:01", "address": "198.51.100.21"});
    call(&daemon, Method::POST, "/api/v2/nodes", Some(node)).await;

    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap_or_default();
    wait_for(
        Duration::from_secs(60),
        "the reservation and the A record are written",
        || async {
            read(DHCP_HOSTS_FILE) == "52:54:00:00:00:01,198.51.100.21,n1\n"
                && read(HOSTS_FILE) == "198.51.100.21 n1.example.com n1\n"
        },
    )
    .await;
    let script = daemon
        .get("/boot/52:54:00:00:00:01")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        script.contains("crowbar.url=http://198.51.100.9:3000"),
        "{script}"
    );

    // dnsmasq gone: the next change fails the DHCP database, saying why
    drop(dnsmasq);
    let node =
        json!({"name": "n2.example.com", "mac": "52:54:00:00:00:02", "address": "198.51.100.22"});
    call(&daemon, Method::POST, "/api/v2/nodes", Some(node)).await;
    wait_for(
        Duration::from_secs(60),
        "the DHCP database fails",
        || async { dhcp_noderole(&db.pool).await.0 == -1 },
    )
    .await;
    let (_, runlog) = dhcp_noderole(&db.pool).await;
    assert!(runlog.contains("cannot signal dnsmasq"), "{runlog}");
}

/// `/boot/{mac}` and `/discover` take no token, so each source address may call them only
/// so often: past `--boot-rate` / `--discover-rate` a minute, 429 with Retry-After. The
/// source is the TCP peer: a forged X-Forwarded-For changes nothing, another address has
/// its own quota.
#[tokio::test]
async fn the_boot_time_routes_are_rate_limited_per_source() {
    let db = test_db().await;
    let daemon = Daemon::start(
        DaemonOptions::default()
            .arg("--boot-rate")
            .arg("5")
            .env("CROWBAR_DISCOVER_RATE", "3")
            .env("CROWBAR_DATABASE_URL", db.url.expose())
            .env("CROWBAR_ADMIN_TOKEN", TOKEN),
    )
    .await;
    let from = |source: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .local_address(std::net::IpAddr::from(source))
            .build()
            .unwrap()
    };
    let (one, other) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let boot = |client: &reqwest::Client| {
        client
            .get(format!("{}/boot/52:54:00:00:00:01", daemon.url()))
            .header("X-Forwarded-For", "198.51.100.99")
    };
    // no network is configured: every registration is refused, and still counts
    let discover = |client: &reqwest::Client| {
        client
            .post(format!("{}/discover", daemon.url()))
            .json(&json!({"mac": "52:54:00:00:00:01", "address": "198.51.100.9"}))
    };
    type Request<'a> = &'a dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder;
    let routes: [(&str, usize, Request); 2] = [("/boot", 5, &boot), ("/discover", 3, &discover)];
    for (what, limit, request) in routes {
        for i in 0..limit {
            let status = request(&one).send().await.unwrap().status();
            assert_ne!(status, 429, "{what} request {i} of the quota");
        }
        let refused = request(&one).send().await.unwrap();
        assert_eq!(refused.status(), 429, "{what} past the quota");
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        // another source is not held back by the first one's quota
        let status = request(&other).send().await.unwrap().status();
        assert_ne!(status, 429, "{what} from another source");
    }
    let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(nodes, 0);
}
