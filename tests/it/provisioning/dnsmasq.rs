//! The DHCP and DNS databases against a real dnsmasq serving the rig's bridge: namespace
//! nodes get their reserved address and boot file over DHCP, DNS answers their A and AAAA
//! records, and both follow node changes.

use std::{net::Ipv4Addr, path::Path, process::Command, time::Duration};

use axum::http::StatusCode;
use crowbar::{
    domain::ipam,
    hooks::Hooks,
    provisioner::dnsmasq::{self, DnsmasqJig},
};
use serde_json::{Value, json};

use crate::support::{
    app::TestApp,
    nodes::{NodeRig, RigNodeExt},
    site::{Site, site_settings, wait_for},
};

const LIMIT: Duration = Duration::from_secs(60);

/// The configuration an operator gives dnsmasq (docs/provisioning.md), for the rig's subnet.
pub(super) fn dnsmasq_config(rig: &NodeRig, dir: &Path) -> String {
    let (base, netmask) = rig.subnet();
    let me = rig.services_addr();
    let dir = dir.display();
    format!(
        "user=root\ngroup=root\npid-file=\nno-resolv\nno-hosts\nbind-interfaces\n\
         interface=eth0\nlisten-address={me}\nport=53\nlog-queries\nlog-dhcp\n\
         dhcp-authoritative\ndhcp-range={base},static,{netmask}\n\
         dhcp-leasefile={dir}/leases\n\
         dhcp-hostsfile={dir}/dhcp-hosts\naddn-hosts={dir}/hosts\n\
         dhcp-userclass=set:ipxe,iPXE\n\
         dhcp-boot=tag:!ipxe,undionly.kpxe,,{me}\n\
         dhcp-boot=tag:ipxe,http://{me}:3000/boot/${{net0/mac}}\n"
    )
}

/// `dig +short` from the test process to dnsmasq.
fn dig(server: Ipv4Addr, name: &str, kind: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args(["+short", "+time=1", "+tries=1"])
        .arg(format!("@{server}"))
        .args([name, kind])
        .output()
        .expect("run dig (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

async fn dig_is(server: Ipv4Addr, name: &str, kind: &str, want: &str) -> bool {
    let (name, kind) = (name.to_string(), kind.to_string());
    let got = tokio::task::spawn_blocking(move || dig(server, &name, &kind))
        .await
        .unwrap();
    got == [want.to_string()]
}

async fn run_count(pool: &sqlx::PgPool, role: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM run_records rr JOIN roles r ON r.id = rr.role_id WHERE r.name = $1",
    )
    .bind(role)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn create_node(app: &TestApp, name: &str, mac: &str, address: &str) -> Value {
    app.post("/api/v2/nodes")
        .json(json!({"name": name, "mac": mac, "address": address}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnsmasq_serves_reservations_and_records_that_follow_the_nodes() {
    let mut site = Site::unregistered(2, site_settings(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    for file in [dnsmasq::DHCP_HOSTS_FILE, dnsmasq::HOSTS_FILE] {
        std::fs::write(dir.path().join(file), "").unwrap();
    }
    let config = dnsmasq_config(&site.rig, dir.path());
    site.rig
        .start_dnsmasq(&config, &dir.path().join(dnsmasq::PID_FILE));
    let server = site.rig.services_addr();
    let app = TestApp::on(site.pool.clone(), None).await;
    let pool = site.pool.clone();
    let dnsmasq_dir = dir.path().to_path_buf();
    site.start_with(
        move |jigs| jigs.with(DnsmasqJig::new(pool, dnsmasq_dir, dnsmasq::DEFAULT_SETTLE)),
        Hooks::default()
            .with(dnsmasq::DatabaseHooks::dhcp())
            .with(dnsmasq::DatabaseHooks::dns()),
    );

    // the admin network gives every node an IPv6 address (auto prefix)
    app.post("/api/v2/networks")
        .json(json!({"name": "admin"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let (n1, n2) = (site.rig.node(1), site.rig.node(2));
    create_node(&app, n1.name(), &n1.mac(), &n1.addr().to_string()).await;
    create_node(&app, n2.name(), &n2.mac(), &n2.addr().to_string()).await;
    for node in [n1, n2] {
        app.post("/api/v2/networks/admin/allocations")
            .json(json!({"node": node.name()}))
            .send()
            .await
            .status(StatusCode::OK);
    }
    // the databases live on the admin node
    super::databases_on_admin_node(&app).await;

    // DNS: A and AAAA records of both nodes
    let global = {
        let mut conn = site.pool.acquire().await.unwrap();
        crowbar::db::networks::global_id(&mut conn).await.unwrap()
    };
    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM networks WHERE name = 'admin'")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    let prefix = ipam::ula_prefix(global, ipam::subnet_id(admin_id));
    for node in [n1, n2] {
        let (name, a) = (node.name().to_string(), node.addr().to_string());
        wait_for(LIMIT, &format!("A of {name}"), || {
            dig_is(server, &name, "A", &a)
        })
        .await;
        let aaaa = ipam::node_v6_address(prefix, &name).to_string();
        wait_for(LIMIT, &format!("AAAA of {name}"), || {
            dig_is(server, &name, "AAAA", &aaaa)
        })
        .await;
    }

    // DHCP: node 1 gets its reservation and the iPXE boot file
    let lease = |site: &Site| tokio::task::block_in_place(|| site.rig.node(1).dhcp_lease(10));
    let (address, filename) = lease(&site)
        .unwrap_or_else(|| panic!("no DHCP lease for node 1:\n{}", site.rig.dnsmasq_log()));
    assert_eq!(address, n1.addr().to_string());
    assert_eq!(
        filename.as_deref(),
        Some(format!("http://{server}:3000/boot/${{net0/mac}}").as_str())
    );

    // node 1 moves: its reservation and its A record follow
    let (base, _) = site.rig.subnet();
    let moved = Ipv4Addr::from(u32::from(base) + 50).to_string();
    app.put(&format!("/api/v2/nodes/{}", n1.name()))
        .json(json!({"address": moved}))
        .send()
        .await
        .status(StatusCode::OK);
    wait_for(LIMIT, "the new A record", || {
        dig_is(server, n1.name(), "A", &moved)
    })
    .await;
    wait_for(LIMIT, "the new reservation", || async {
        lease(&site).is_some_and(|(address, _)| address == moved)
    })
    .await;

    // a burst of 30 new nodes: few rewrites, on the high-priority lane, all of them served
    let before = run_count(&site.pool, dnsmasq::DNS_ROLE).await;
    let last_before: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM run_records")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    for i in 0..30 {
        create_node(
            &app,
            &format!("burst{i}.example.com"),
            &format!("52:54:00:99:00:{i:02x}"),
            &format!("192.168.77.{}", 10 + i),
        )
        .await;
    }
    wait_for(LIMIT, "the last node of the burst resolves", || {
        dig_is(server, "burst29.example.com", "A", "192.168.77.39")
    })
    .await;
    wait_for(LIMIT, "the databases settle", || async {
        let busy: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
            .fetch_one(&site.pool)
            .await
            .unwrap();
        busy == 0
    })
    .await;
    let runs = run_count(&site.pool, dnsmasq::DNS_ROLE).await - before;
    eprintln!("a burst of 30 node changes: {runs} DNS runs");
    assert!(
        (1..=8).contains(&runs),
        "{runs} DNS runs for a burst of 30 node changes"
    );
    let lanes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT rr.lane FROM run_records rr JOIN roles r ON r.id = rr.role_id
          WHERE r.name = $1 AND rr.id > $2",
    )
    .bind(dnsmasq::DNS_ROLE)
    .bind(last_before)
    .fetch_all(&site.pool)
    .await
    .unwrap();
    assert_eq!(
        lanes,
        ["high"],
        "hook-requested runs use the high-priority lane"
    );
    let hosts = std::fs::read_to_string(dir.path().join(dnsmasq::HOSTS_FILE)).unwrap();
    assert!(
        hosts.contains("192.168.77.39 burst29.example.com burst29"),
        "{hosts}"
    );
    // what the DHCP database wrote is recorded, for the OS-install handshake
    wait_for(LIMIT, "every reservation is recorded", || async {
        let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM dhcp_reservations")
            .fetch_one(&site.pool)
            .await
            .unwrap();
        reserved == 32
    })
    .await;
    site.stop().await;
}
