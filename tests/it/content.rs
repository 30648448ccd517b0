//! The base barclamp's day-one roles (`barclamps/base.yml`, playbooks in
//! `barclamps/base/ansible/`, README "The base barclamp (day-one roles)") run by the real
//! `ansible` jig on namespace nodes: each role goes ACTIVE with the wall the README gives,
//! writes the node's files, which the real tools accept when run inside the node's own
//! namespaces (`chronyd -p`, `rsyslogd -N1` and two foreground rsyslogd passing a message
//! between nodes, `getent` against the dnsmasq the `dns-database` role feeds,
//! `ssh-keygen -l`, a systemd-networkd configuring the node's link), and changes nothing
//! when run again. The graph orders them: a client runs after its server, with the server's
//! address; a client with no server to follow cannot be bound, and network-interfaces
//! refuses an address plan that would cut crowbar's SSH connection. Each node's /etc and
//! /var are overlays; this machine's files are checked untouched.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use crowbar::{
    db::{
        keys::Key,
        networks::{self, NewNetwork, NewRange},
        nodes::{self, NewNode},
    },
    hooks::Hooks,
    jig::{AnsibleJig, AnsibleSettings},
    provisioner::dnsmasq::{self, DnsmasqJig},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{
    nodes::RigNodeExt,
    python,
    site::{Site, site_settings, wait_for},
    world,
};

// A bound, not a measure: the first pass takes about 50 s alone, several times that on a
// machine busy with other suites.
const LIMIT: Duration = Duration::from_secs(600);

/// The roles of the base barclamp, children before parents (the order retries must take:
/// a child cannot be retried while its parent waits to run again).
const ROLES: [&str; 8] = [
    "hostname",
    "admin-ssh-keys",
    "network-interfaces",
    "dns-client",
    "ntp-client",
    "syslog-forward",
    "ntp-server",
    "syslog-server",
];

const CHRONY_CONF: &str = "/etc/chrony/chrony.conf";
const SYSLOG_SERVER_CONF: &str = "/etc/rsyslog.d/30-crowbar-syslog-server.conf";
const SYSLOG_FORWARD_CONF: &str = "/etc/rsyslog.d/50-crowbar-syslog-forward.conf";
const NETWORK_FILE: &str = "/etc/systemd/network/05-crowbar-admin.network";

/// What this machine's configuration looks like: the files the roles write on a node, by
/// sha256, the directories they write into, by listing, and the running hostname.
fn host_state() -> Vec<String> {
    let mut state = Vec::new();
    for file in [
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        CHRONY_CONF,
        "/etc/rsyslog.conf",
    ] {
        let digest = match std::fs::read(file) {
            Ok(bytes) => format!("{:x}", Sha256::digest(&bytes)),
            Err(e) => format!("unreadable ({})", e.kind()),
        };
        state.push(format!("{file} {digest}"));
    }
    for dir in [
        "/etc/rsyslog.d",
        "/etc/systemd/network",
        "/etc/systemd/resolved.conf.d",
        "/etc/chrony",
        "/var/log/crowbar-nodes",
    ] {
        let listing = match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join(" ")
            }
            Err(e) => format!("unreadable ({})", e.kind()),
        };
        state.push(format!("{dir}/: {listing}"));
    }
    let hostname = nix::unistd::gethostname().expect("this machine's hostname");
    state.push(format!("hostname {}", hostname.to_string_lossy()));
    state
}

/// What a command run inside a node said.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(ok: {})\nstdout:\n{}\nstderr:\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// `nsenter` arguments that enter rig node `i`: its mount namespace (its own /etc and /var),
/// hostname and network.
fn enter(site: &Site, i: usize) -> tokio::process::Command {
    let pid = site
        .rig
        .node(i)
        .sshd_pid()
        .unwrap_or_else(|| panic!("the sshd of node {i} runs"));
    let mut cmd = tokio::process::Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-m", "-u", "-n", "--"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `args` inside rig node `i` (see [`enter`]) to the end.
async fn in_node(site: &Site, i: usize, args: &[&str]) -> Ran {
    let out = tokio::time::timeout(Duration::from_secs(60), enter(site, i).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} in node {i} did not finish within 60 s"))
        .expect("run nsenter");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file as node `i` wrote it under its /etc or /var (the upper layer of its overlay):
/// `path` absolute, as the node sees it.
fn node_file(site: &Site, i: usize, path: &str) -> PathBuf {
    let (top, rest) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .expect("an absolute path under /etc or /var");
    assert!(top == "etc" || top == "var", "{path} is not in an overlay");
    site.rig
        .node(i)
        .dir()
        .join("overlay")
        .join(top)
        .join("upper")
        .join(rest)
}

fn read_node_file(site: &Site, i: usize, path: &str) -> String {
    std::fs::read_to_string(node_file(site, i, path))
        .unwrap_or_else(|e| panic!("node {i} did not write {path}: {e}"))
}

async fn bind(site: &Site, node: &str, role: &str, deployment: &str, data: Option<Value>) {
    world::try_bind(&site.pool, node, role, deployment, data.as_ref())
        .await
        .unwrap_or_else(|e| panic!("bind {role} on {node}: {e}"));
}

/// Waits until every noderole is ACTIVE; panics with all of them on an ERROR that nothing
/// runs past, or at the deadline.
async fn all_active(site: &Site, what: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows = site.noderoles().await;
        if rows.iter().all(|r| r.2 == 0) {
            return;
        }
        let busy = rows.iter().any(|r| r.2 == 1 || r.2 == 2);
        if (!busy && rows.iter().any(|r| r.2 == -1)) || Instant::now() > deadline {
            let failed: Vec<_> = rows.iter().filter(|r| r.2 != 0).collect();
            panic!("{what}: not every noderole is ACTIVE:\n{failed:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the process's network namespace has a TCP socket listening on `port`.
fn listens_on_tcp(pid: u32, port: u16) -> bool {
    let port = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
            })
    })
}

/// The network of an address with its prefix: `198.51.100.5/26` -> `198.51.100.0/26`.
fn network_of(cidr: &str) -> String {
    cidr.parse::<ipnet::IpNet>().unwrap().trunc().to_string()
}

/// The fingerprint (`SHA256:...`) of each key `ssh-keygen -l` lists.
fn fingerprints(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect()
}

/// A new key pair in `dir`; its public key line and fingerprint.
fn admin_key(dir: &Path, name: &str, kind: &str) -> (String, String) {
    let file = dir.join(name);
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C"])
        .arg(format!("{name}@admins.example"))
        .arg("-f")
        .arg(&file)
        .status()
        .expect("run ssh-keygen");
    assert!(made.success());
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    let listed = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(file.with_extension("pub"))
        .output()
        .unwrap();
    let fingerprint = fingerprints(&String::from_utf8_lossy(&listed.stdout))
        .into_iter()
        .next()
        .expect("a fingerprint");
    (public.trim().to_string(), fingerprint)
}

/// The edges of the graph: (child node, child role) -> {(parent node, parent role)}.
async fn parents(site: &Site) -> BTreeMap<(String, String), BTreeSet<(String, String)>> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT cn.name, cr.name, pn.name, pr.name FROM noderole_edges e
           JOIN noderoles c ON c.id = e.child_id JOIN nodes cn ON cn.id = c.node_id
           JOIN roles cr ON cr.id = c.role_id
           JOIN noderoles p ON p.id = e.parent_id JOIN nodes pn ON pn.id = p.node_id
           JOIN roles pr ON pr.id = p.role_id",
    )
    .fetch_all(&site.pool)
    .await
    .unwrap();
    let mut graph: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for (child_node, child_role, parent_node, parent_role) in rows {
        graph
            .entry((child_node, child_role))
            .or_default()
            .insert((parent_node, parent_role));
    }
    graph
}

/// Whether a runlog says its run changed nothing (the jig's `<n> task(s) changed` line).
fn changed_nothing(log: &str) -> bool {
    log.lines().any(|l| l == "0 task(s) changed")
}

/// The starting point of a test: `n` rig nodes, alive with their host keys pinned, each with
/// its MAC, and an admin network on the rig's subnet (the bridge its router) whose range
/// gives node `i` the IPv4 address `address(site, i)` (and, as every admin network, an IPv6
/// address). Returns each node's allocations (CIDR, IPv4 then IPv6) by node number.
async fn site_with_admin_network(
    n: usize,
    address: impl Fn(&Site, usize) -> Ipv4Addr,
) -> (Site, Vec<Vec<String>>) {
    let site = Site::new(n, site_settings(Duration::ZERO)).await;
    // first contact: every node alive, its host key pinned
    for outcome in site.prober().round().await.unwrap() {
        assert!(outcome.alive, "{outcome:?}");
    }
    let (base, _) = site.rig.subnet();
    let mut conn = site.pool.acquire().await.unwrap();
    let (first, last) = (address(&site, 1), address(&site, n));
    networks::create(
        &mut conn,
        &NewNetwork {
            name: "admin".into(),
            description: "the rig's subnet".into(),
            deployment: None,
            v6prefix: None,
            v4prefix: Some(format!("{base}/26").parse().unwrap()),
            ranges: vec![NewRange {
                name: "rig".into(),
                first: first.into(),
                last: last.into(),
            }],
            router: Some((site.rig.gateway().into(), 0)),
        },
        &world::admin(),
    )
    .await
    .expect("the admin network");
    let mut allocations = vec![Vec::new()];
    for i in 1..=n {
        let node = site.rig.node(i);
        sqlx::query("UPDATE nodes SET mac = $2::macaddr WHERE name = $1")
            .bind(node.name())
            .bind(node.mac())
            .execute(&mut *conn)
            .await
            .unwrap();
        let got = networks::allocate(
            &mut conn,
            &Key::from("admin"),
            &Key::from(node.name()),
            Some("rig"),
            &world::admin(),
        )
        .await
        .expect("allocate the node's addresses");
        let got: Vec<String> = got.into_iter().map(|a| a.address).collect();
        assert_eq!(got.len(), 2, "an IPv4 and an IPv6 address: {got:?}");
        assert_eq!(
            got[0],
            format!("{}/26", address(&site, i)),
            "the range gives each node its address"
        );
        allocations.push(got);
    }
    (site, allocations)
}

fn ansible_jig(site: &Site) -> AnsibleJig {
    AnsibleJig::new(
        site.access.clone(),
        AnsibleSettings {
            ansible_playbook: python::tool("ansible-playbook"),
            // the three nodes of a role, ready within a second of each other, share a play
            ansible_batch_window: Duration::from_secs(1),
            ..AnsibleSettings::default()
        },
    )
    .expect("the ansible jig")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn day_one_roles_apply_pass_their_tools_follow_the_graph_and_change_nothing_again() {
    let host_before = host_state();
    let started = Instant::now();
    let (mut site, allocations) =
        site_with_admin_network(3, |site, i| site.rig.node(i).addr()).await;
    // by node number (1-based)
    let per_node = |f: &dyn Fn(usize) -> String| -> Vec<String> {
        std::iter::once(String::new())
            .chain((1..=3).map(f))
            .collect()
    };
    let names = per_node(&|i| site.name(i));
    let addrs = per_node(&|i| site.rig.node(i).addr().to_string());
    let macs = per_node(&|i| site.rig.node(i).mac());
    let name = |i: usize| names[i].clone();
    let addr = |i: usize| addrs[i].clone();
    let short = |i: usize| names[i].split('.').next().unwrap().to_string();
    let domain = names[1].split_once('.').unwrap().1.to_string();
    let gateway = site.rig.gateway().to_string();
    let (v4net, v6net) = (
        network_of(&allocations[1][0]),
        network_of(&allocations[1][1]),
    );

    // DNS: a dnsmasq in the rig's services namespace serves the records that dns-database
    // writes; the admin node that role is bound to has that namespace's address.
    let dns_dir = tempfile::tempdir().unwrap();
    std::fs::write(dns_dir.path().join(dnsmasq::HOSTS_FILE), "").unwrap();
    let dns_server = site.rig.services_addr().to_string();
    let config = format!(
        "user=root\ngroup=root\npid-file=\nno-resolv\nno-hosts\nbind-interfaces\n\
         interface=eth0\nlisten-address={dns_server}\nport=53\nlog-queries\n\
         addn-hosts={}/{}\n",
        dns_dir.path().display(),
        dnsmasq::HOSTS_FILE
    );
    let pid_file = dns_dir.path().join(dnsmasq::PID_FILE);
    tokio::task::block_in_place(|| site.rig.start_dnsmasq(&config, &pid_file));
    let admin = format!("admin.{domain}");
    {
        let mut conn = site.pool.acquire().await.unwrap();
        nodes::create(
            &mut conn,
            &NewNode {
                name: admin.clone(),
                address: Some(dns_server.clone()),
                admin: true,
                ..Default::default()
            },
            &world::admin(),
        )
        .await
        .expect("the admin node");
    }
    world::set_alive(&site.pool, &admin, true).await;

    let ansible = ansible_jig(&site);
    let (pool, dir, dns_domain) = (
        site.pool.clone(),
        dns_dir.path().to_path_buf(),
        domain.clone(),
    );
    site.start_with(
        move |jigs| {
            jigs.with(ansible)
                .with(DnsmasqJig::new(pool, dir, dnsmasq::DEFAULT_SETTLE).with_domain(&dns_domain))
        },
        Hooks::default().with(dnsmasq::DatabaseHooks::dns()),
    );

    // Admins' keys: one listed twice is written once.
    let keys_dir = tempfile::tempdir().unwrap();
    let (key1, print1) = admin_key(keys_dir.path(), "admin-one", "ed25519");
    let (key2, print2) = admin_key(keys_dir.path(), "admin-two", "ecdsa");

    bind(&site, &admin, "dns-database", "system", None).await;
    world::commit(&site.pool, "system").await;
    world::deployment(&site.pool, "d").await;
    bind(&site, &name(1), "ntp-server", "d", None).await;
    bind(&site, &name(1), "syslog-server", "d", None).await;
    for i in 1..=3 {
        let hosts_address = if i == 3 { "admin" } else { "127.0.1.1" };
        let hostname = json!({"hostname": {"hosts_address": hosts_address}});
        bind(&site, &name(i), "hostname", "d", Some(hostname)).await;
        let keys = json!({"admin_ssh_keys": {"keys": [key1, key2, key1]}});
        bind(&site, &name(i), "admin-ssh-keys", "d", Some(keys)).await;
        bind(&site, &name(i), "dns-client", "d", None).await;
        bind(&site, &name(i), "network-interfaces", "d", None).await;
    }
    for i in 2..=3 {
        bind(&site, &name(i), "ntp-client", "d", None).await;
        bind(&site, &name(i), "syslog-forward", "d", None).await;
    }

    // The graph: every role hangs under its node's installed-node milestone, and each
    // client also under its server where that was bound (no server of its own is pulled in).
    let graph = parents(&site).await;
    let edge = |node: &str, role: &str| (node.to_string(), role.to_string());
    for i in 1..=3 {
        let installed = edge(&name(i), "crowbar-installed-node");
        for role in ["hostname", "admin-ssh-keys", "network-interfaces"] {
            assert_eq!(
                graph[&edge(&name(i), role)],
                BTreeSet::from([installed.clone()]),
                "{role} on node {i}"
            );
        }
        assert_eq!(
            graph[&edge(&name(i), "dns-client")],
            BTreeSet::from([installed.clone(), edge(&admin, "dns-database")]),
            "dns-client on node {i}"
        );
        if i > 1 {
            assert_eq!(
                graph[&edge(&name(i), "ntp-client")],
                BTreeSet::from([installed.clone(), edge(&name(1), "ntp-server")]),
            );
            assert_eq!(
                graph[&edge(&name(i), "syslog-forward")],
                BTreeSet::from([installed.clone(), edge(&name(1), "syslog-server")]),
            );
        }
    }

    world::commit(&site.pool, "d").await;
    all_active(&site, "the first runs").await;
    let first_pass = started.elapsed();

    // ---- Walls, as barclamps/README.md gives them.
    let wall = |i: usize, role: &'static str| {
        let site = &site;
        async move { site.noderole(i, role).await.3 }
    };
    for i in 1..=3 {
        let hosts_address = if i == 3 { addr(3) } else { "127.0.1.1".into() };
        assert_eq!(
            wall(i, "hostname").await,
            json!({"hostname": {"name": name(i), "short": short(i), "hosts_address": hosts_address}})
        );
        assert_eq!(
            wall(i, "admin-ssh-keys").await,
            json!({"admin_ssh_keys": {"user": "root", "file": "/root/.ssh/authorized_keys", "keys": 2}})
        );
        assert_eq!(
            wall(i, "dns-client").await,
            json!({"dns_client": {"mode": "file", "nameservers": [dns_server], "search": [domain]}})
        );
        let mac = &macs[i];
        assert_eq!(
            wall(i, "network-interfaces").await,
            json!({"network_interfaces": {
                "renderer": "networkd",
                "links": [{
                    "file": NETWORK_FILE,
                    "match": format!("mac:{mac}"),
                    "networks": ["admin"],
                    "addresses": allocations[i],
                    "gateways": [gateway],
                }],
                "networkd": "inactive",
                "reloaded": false,
            }}),
            "systemd does not run networkd on a rig node: the files wait"
        );
    }
    assert_eq!(
        wall(1, "ntp-server").await,
        json!({
            "ntp": {"server": addr(1)},
            "ntp_server": {"upstream": ["pool.ntp.org"], "allow": [v4net, v6net], "config_file": CHRONY_CONF},
        })
    );
    assert_eq!(
        wall(1, "syslog-server").await,
        json!({
            "syslog": {"server": addr(1), "port": 514},
            "syslog_server": {
                "allow": [v4net, v6net],
                "directory": "/var/log/crowbar-nodes",
                "config_file": SYSLOG_SERVER_CONF,
            },
        })
    );
    for i in 2..=3 {
        assert_eq!(
            wall(i, "ntp-client").await,
            json!({"ntp_client": {"servers": [addr(1)], "config_file": CHRONY_CONF}}),
            "the client follows the server's published address"
        );
        assert_eq!(
            wall(i, "syslog-forward").await,
            json!({"syslog_forward": {"server": addr(1), "port": 514, "protocol": "tcp"}})
        );
    }

    // ---- Ordering: each client ran after its server had finished, with its address.
    let (dns_wall,): (Value,) = sqlx::query_as(
        "SELECT nr.wall FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id WHERE n.name = $1 AND r.name = 'dns-database'",
    )
    .bind(&admin)
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(
        dns_wall["dns"],
        json!({"server": dns_server, "domain": domain}),
        "dns-database publishes its node's address and the domain"
    );
    for (server_node, server, client) in [
        (name(1), "ntp-server", "ntp-client"),
        (name(1), "syslog-server", "syslog-forward"),
        (admin.clone(), "dns-database", "dns-client"),
    ] {
        let server_runs = site.run_times(&server_node, server).await;
        assert!(!server_runs.is_empty(), "{server} ran");
        let clients = if server == "dns-database" {
            1..=3
        } else {
            2..=3
        };
        for i in clients {
            let client_runs = site.run_times(&name(i), client).await;
            assert_eq!(
                client_runs.len(),
                1,
                "{client} on node {i}: {client_runs:?}"
            );
            assert!(
                client_runs[0].0 >= server_runs[0].1,
                "{client} on node {i} started before {server} finished: {server_runs:?} {client_runs:?}"
            );
        }
    }

    // ---- hostname: the running name, /etc/hostname, and /etc/hosts through getent.
    for i in 1..=3 {
        let running = in_node(&site, i, &["hostname"]).await;
        assert_eq!(running.stdout.trim(), name(i), "{running}");
        assert_eq!(
            read_node_file(&site, i, "/etc/hostname"),
            format!("{}\n", name(i))
        );
        let hosts = read_node_file(&site, i, "/etc/hosts");
        let mapped = if i == 3 { addr(3) } else { "127.0.1.1".into() };
        let line = format!("{mapped} {} {} # crowbar: role hostname", name(i), short(i));
        assert_eq!(
            hosts
                .lines()
                .filter(|l| l.contains(&name(i)))
                .collect::<Vec<_>>(),
            [line.as_str()],
            "{hosts}"
        );
        assert!(
            hosts.lines().any(|l| l.starts_with("127.0.0.1")),
            "the other lines stay: {hosts}"
        );
        for looked_up in [name(i), short(i)] {
            let found = in_node(&site, i, &["getent", "ahostsv4", &looked_up]).await;
            assert_eq!(
                found.stdout.split_whitespace().next(),
                Some(mapped.as_str()),
                "getent ahostsv4 {looked_up} on node {i}: {found}"
            );
        }
    }

    // ---- admin-ssh-keys: ssh-keygen reads both keys (once each) in the node's root's file.
    for i in 1..=3 {
        let listed = in_node(
            &site,
            i,
            &["ssh-keygen", "-l", "-f", "/root/.ssh/authorized_keys"],
        )
        .await;
        assert!(listed.ok, "{listed}");
        assert_eq!(listed.stdout.lines().count(), 2, "{listed}");
        assert_eq!(
            fingerprints(&listed.stdout),
            BTreeSet::from([print1.clone(), print2.clone()]),
            "{listed}"
        );
        let home = site.rig.node(i).dir().join("root");
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(home.join(".ssh")), 0o700);
        assert_eq!(mode(home.join(".ssh/authorized_keys")), 0o600);
    }

    // ---- ntp-server and ntp-client: chronyd parses each config (-p prints it and exits).
    let chrony = |i: usize| {
        let site = &site;
        async move {
            assert!(
                node_file(site, i, CHRONY_CONF).exists(),
                "node {i} wrote its own {CHRONY_CONF}"
            );
            let parsed = in_node(site, i, &["chronyd", "-p", "-f", CHRONY_CONF]).await;
            assert!(parsed.ok, "chronyd -p on node {i}: {parsed}");
            parsed.stdout
        }
    };
    let server = chrony(1).await;
    for line in [
        "pool pool.ntp.org iburst".to_string(),
        format!("allow {v4net}"),
        format!("allow {v6net}"),
        "local stratum 10 orphan".into(),
    ] {
        assert!(server.lines().any(|l| l == line), "no `{line}`:\n{server}");
    }
    for i in 2..=3 {
        let client = chrony(i).await;
        let sources: Vec<&str> = client
            .lines()
            .filter(|l| {
                l.starts_with("server ") || l.starts_with("pool ") || l.starts_with("peer ")
            })
            .collect();
        assert_eq!(
            sources,
            [format!("server {} iburst prefer", addr(1))],
            "the server's address is the client's only source:\n{client}"
        );
        assert!(
            !client
                .lines()
                .any(|l| l.starts_with("allow") || l.starts_with("local")),
            "a client serves no time:\n{client}"
        );
    }

    // ---- dns-client: resolv.conf points at the dnsmasq; getent resolves the other nodes
    // through it (by full name and by the search domain).
    for i in 1..=3 {
        let resolv = read_node_file(&site, i, "/etc/resolv.conf");
        assert_eq!(
            resolv
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                format!("search {domain}"),
                format!("nameserver {dns_server}")
            ],
            "{resolv}"
        );
        let other = i % 3 + 1;
        for looked_up in [name(other), short(other)] {
            let found = in_node(&site, i, &["getent", "ahostsv4", &looked_up]).await;
            assert_eq!(
                found.stdout.split_whitespace().next(),
                Some(addr(other).as_str()),
                "getent ahostsv4 {looked_up} on node {i}: {found}\ndnsmasq:\n{}",
                site.rig.dnsmasq_log()
            );
        }
    }

    // ---- syslog-server and syslog-forward: rsyslogd -N1 validates each node's whole
    // configuration (rsyslog.conf with rsyslog.d).
    for i in 1..=3 {
        let checked = in_node(&site, i, &["rsyslogd", "-N1", "-f", "/etc/rsyslog.conf"]).await;
        let said = format!("{}{}", checked.stdout, checked.stderr).to_lowercase();
        assert!(
            checked.ok && !said.contains("error") && !said.contains("warning"),
            "rsyslogd -N1 on node {i}: {checked}"
        );
    }
    let receiving = read_node_file(&site, 1, SYSLOG_SERVER_CONF);
    let v6_sender = v6net.replacen('/', "]/", 1);
    for line in [
        format!("$AllowedSender UDP, {v4net}, [{v6_sender}"),
        format!("$AllowedSender TCP, {v4net}, [{v6_sender}"),
        "input(type=\"imtcp\" port=\"514\" ruleset=\"crowbarNodes\")".into(),
    ] {
        assert!(
            receiving.lines().any(|l| l == line),
            "no `{line}`:\n{receiving}"
        );
    }
    for i in 2..=3 {
        let forwarding = read_node_file(&site, i, SYSLOG_FORWARD_CONF);
        assert!(
            forwarding.contains(&format!(
                "target=\"{}\" port=\"514\" protocol=\"tcp\"",
                addr(1)
            )),
            "{forwarding}"
        );
        assert!(!node_file(&site, i, SYSLOG_SERVER_CONF).exists());
    }
    syslog_passes_a_message(&site, 1, 2).await;

    // ---- network-interfaces: systemd-networkd configures node 3's link from the file.
    for i in 1..=3 {
        let file = read_node_file(&site, i, NETWORK_FILE);
        for line in [
            format!("MACAddress={}", macs[i]),
            format!("Address={}", allocations[i][0]),
            format!("Address={}", allocations[i][1]),
            format!("Gateway={gateway}"),
            "KeepConfiguration=static".into(),
        ] {
            assert!(file.lines().any(|l| l == line), "no `{line}`:\n{file}");
        }
    }
    networkd_configures_the_link(&site, 3, &allocations[3], &gateway).await;

    // ---- The second run of every role changes nothing (and crowbar still reaches node 3,
    // whose link networkd configured).
    let checks_done = started.elapsed();
    let before: Vec<(i64, String, String, i32, Value)> = sqlx::query_as(
        "SELECT nr.id, n.name, r.name, nr.run_count, nr.wall FROM noderoles nr
           JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
          WHERE r.name = ANY($1)",
    )
    .bind(ROLES)
    .fetch_all(&site.pool)
    .await
    .unwrap();
    assert_eq!(before.len(), 4 * 3 + 2 * 2 + 2);
    let mut ordered = before.clone();
    ordered.sort_by_key(|r| ROLES.iter().position(|role| *role == r.2));
    let mut tx = site.pool.begin().await.unwrap();
    for (id, ..) in &ordered {
        crowbar::db::node_roles::retry(&mut tx, *id, &world::admin())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let ran_before: BTreeMap<i64, i32> = before.iter().map(|r| (r.0, r.3)).collect();
    wait_for(LIMIT, "every role ran again", || async {
        let now: Vec<(i64, i32)> =
            sqlx::query_as("SELECT id, run_count FROM noderoles WHERE id = ANY($1)")
                .bind(ran_before.keys().copied().collect::<Vec<_>>())
                .fetch_all(&site.pool)
                .await
                .unwrap();
        now.iter().all(|(id, count)| *count > ran_before[id])
    })
    .await;
    all_active(&site, "the second runs").await;
    for (_, node, role, _, wall) in &before {
        let i = (1..=3).find(|&i| name(i) == *node).unwrap();
        let (_, _, log, again) = site.noderole(i, role).await;
        assert!(
            changed_nothing(&log),
            "{role} on {node} changed something the second time:\n{log}"
        );
        assert_eq!(&again, wall, "{role} on {node}: the same wall");
    }
    // the servers ran again first: their clients were held until then
    for (server, client) in [
        ("ntp-server", "ntp-client"),
        ("syslog-server", "syslog-forward"),
    ] {
        let server_runs = site.run_times(&name(1), server).await;
        for i in 2..=3 {
            let client_runs = site.run_times(&name(i), client).await;
            assert_eq!((server_runs.len(), client_runs.len()), (2, 2));
            assert!(
                client_runs[1].0 >= server_runs[1].1,
                "{client} on node {i} ran again before {server}: {server_runs:?} {client_runs:?}"
            );
        }
    }
    site.stop().await;
    eprintln!(
        "day-one roles: first runs {first_pass:?}, checks until {checks_done:?}, second runs until {:?}",
        started.elapsed()
    );
    drop(site);
    assert_eq!(host_state(), host_before, "this machine's files changed");
}

/// End to end: a foreground rsyslogd in node `server` with only the syslog-server role's
/// file, one in node `client` with only the syslog-forward role's file (and a TCP input of
/// its own); a message handed to the client's reaches the server's per-host file. Neither
/// loads imuxsock or imklog, so neither touches /dev/log or the kernel log; their pid files
/// are in a directory of the test.
async fn syslog_passes_a_message(site: &Site, server: usize, client: usize) {
    let dir = tempfile::tempdir().unwrap();
    let spool = "global(workDirectory=\"/var/spool/rsyslog\")\n";
    let server_conf = dir.path().join("server.conf");
    std::fs::write(
        &server_conf,
        format!("{spool}$IncludeConfig {SYSLOG_SERVER_CONF}\n"),
    )
    .unwrap();
    let client_conf = dir.path().join("client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "{spool}module(load=\"imptcp\")\ninput(type=\"imptcp\" port=\"10514\")\n\
             $IncludeConfig {SYSLOG_FORWARD_CONF}\n"
        ),
    )
    .unwrap();
    let start = |i: usize, conf: &Path, name: &str| {
        let out = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = enter(site, i);
        cmd.args(["rsyslogd", "-n", "-i"])
            .arg(dir.path().join(format!("{name}.pid")))
            .arg("-f")
            .arg(conf)
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // nsenter execs rsyslogd (no PID namespace: no fork), so this is rsyslogd's pid
        cmd.spawn().expect("start rsyslogd")
    };
    let logs = || {
        ["server", "client"]
            .map(|n| {
                std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default()
            })
            .join("\n---\n")
    };
    let mut receiving = start(server, &server_conf, "server");
    let receiving_pid = receiving.id().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the server's rsyslogd listens",
        || async { listens_on_tcp(receiving_pid, 514) },
    )
    .await;
    let mut forwarding = start(client, &client_conf, "client");
    let forwarding_pid = forwarding.id().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the client's rsyslogd listens",
        || async { listens_on_tcp(forwarding_pid, 10514) },
    )
    .await;
    let message = format!("crowbar content test {}", std::process::id());
    let sent = in_node(
        site,
        client,
        &[
            "logger",
            "--server",
            "127.0.0.1",
            "--port",
            "10514",
            "--tcp",
            "--rfc3164",
            "-t",
            "crowbartest",
            &message,
        ],
    )
    .await;
    assert!(sent.ok, "{sent}");
    let received = node_file(site, server, "/var/log/crowbar-nodes");
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        let found = std::fs::read_dir(&received).ok().and_then(|entries| {
            entries.flatten().find(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains(&message))
            })
        });
        if let Some(found) = found {
            break found.file_name().to_string_lossy().into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the message did not reach node {server}'s rsyslogd:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for child in [&mut forwarding, &mut receiving] {
        child.kill().await.unwrap();
    }
    assert_eq!(
        file,
        format!("{}.log", site.name(client).split('.').next().unwrap()),
        "each sender's messages go to a file named after it"
    );
}

/// The real systemd-networkd, in node `i`'s namespaces with a private /run (a tmpfs: this
/// machine's /run is not touched) and a fresh read-only /sys (so that it does not wait for udev),
/// reads the role's file and puts the node's addresses and default route on its link, found
/// by MAC; it is stopped once they are there. The node's own address stays throughout.
async fn networkd_configures_the_link(site: &Site, i: usize, addresses: &[String], gateway: &str) {
    const SCRIPT: &str = r#"set -eu
mount -t tmpfs tmpfs /run
umount -l /sys
mount -t sysfs -o ro sysfs /sys
mkdir -p /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-networkd >/run/networkd.log 2>&1 &
networkd=$!
deadline=$(($(date +%s) + 30))
until ip -o addr show dev eth0 | grep -qF " $1 " && ip route show default | grep -qF "via $2 dev eth0"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "eth0 not configured in time"; break; }
    sleep 0.1
done
kill "$networkd"
wait "$networkd" || true
echo "--- networkd"
cat /run/networkd.log
echo "--- addresses"
ip -o addr show dev eth0
echo "--- routes"
ip route show
"#;
    let ran = in_node(
        site,
        i,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
            &addresses[1],
            gateway,
        ],
    )
    .await;
    assert!(ran.ok, "{ran}");
    let (log, rest) = ran
        .stdout
        .split_once("--- addresses")
        .expect("the script's output");
    assert!(
        log.contains(&format!("eth0: Configuring with {NETWORK_FILE}")),
        "{ran}"
    );
    // What networkd says about a file it cannot use entirely is a `<file>:<line>: ...`
    // diagnostic. Under gVisor (runsc), networkd may keep re-requesting the node's live
    // IPv4 address, which the rig configured without a broadcast address, until it gives
    // up on the link with ERANGE: the sandbox's netlink, not the file (the addresses and
    // the route are there all the same, checked below). Any other failure counts.
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("{NETWORK_FILE}:"))
                || (l.to_lowercase().contains("fail")
                    && !l.starts_with("lo: ")
                    && ![
                        "eth0: Failed to configure address: Numerical result out of range",
                        "eth0: Failed",
                    ]
                    .contains(l))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "networkd complains: {complaints:?}\n{ran}"
    );
    let (addrs, routes) = rest.split_once("--- routes").unwrap();
    for address in addresses {
        assert!(
            addrs.contains(&format!(" {address} ")),
            "{address} not on eth0:\n{ran}"
        );
    }
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&format!("default via {gateway} dev eth0"))),
        "no default route:\n{ran}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn network_interfaces_refuses_to_cut_crowbar_off_and_a_client_needs_a_server() {
    let host_before = host_state();
    // crowbar's address for the node (.42 of the block) is not the one it reaches it at
    let (mut site, allocations) = site_with_admin_network(1, |site, _| {
        let (base, _) = site.rig.subnet();
        Ipv4Addr::from(u32::from(base) + 42)
    })
    .await;
    let node = site.name(1);
    let reached = site.rig.node(1).addr().to_string();
    assert_ne!(allocations[1][0], format!("{reached}/26"));
    let ansible = ansible_jig(&site);
    site.start_with(move |jigs| jigs.with(ansible), Hooks::default());
    world::deployment(&site.pool, "d").await;

    // ntp-client without an ntp-server in reach pulls one onto its own node, which it
    // conflicts with: the bind is refused and nothing is bound.
    let refused = world::try_bind(&site.pool, &node, "ntp-client", "d", None)
        .await
        .expect_err("ntp-client needs an ntp-server on another node");
    let refused = refused.to_string();
    assert!(
        refused.contains("`ntp-client` conflicts with `ntp-server`"),
        "{refused}"
    );
    assert!(
        !site
            .noderoles()
            .await
            .iter()
            .any(|r| r.1.starts_with("ntp-")),
        "nothing of the refused bind stays"
    );

    bind(&site, &node, "network-interfaces", "d", None).await;
    world::commit(&site.pool, "d").await;
    wait_for(LIMIT, "network-interfaces fails", || async {
        site.noderole(1, "network-interfaces").await.0 == -1
    })
    .await;
    let (_, _, log, _) = site.noderole(1, "network-interfaces").await;
    assert!(
        log.contains(&format!(
            "crowbar reaches this node at {reached}, which the new configuration"
        )) && log.contains("nothing was written"),
        "{log}"
    );
    assert!(
        !node_file(&site, 1, "/etc/systemd/network").exists()
            || std::fs::read_dir(node_file(&site, 1, "/etc/systemd/network"))
                .unwrap()
                .next()
                .is_none(),
        "a refused run wrote a file"
    );
    // and crowbar still reaches the node
    for outcome in site.prober().round().await.unwrap() {
        assert!(outcome.alive, "{outcome:?}");
    }
    site.stop().await;
    drop(site);
    assert_eq!(host_state(), host_before, "this machine's files changed");
}
