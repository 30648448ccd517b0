//! The tests' namespace nodes: [`crowbar::node_rig::NodeRig`] (one implementation for the
//! tests and `crowbar serve --demo`; see there for the address blocks, names and teardown)
//! plus what only tests need: a services namespace running dnsmasq, DHCP requests from a
//! node, unplugging and pausing nodes, and checking that a rig left nothing behind.

use std::{
    collections::HashSet,
    fs::{self, OpenOptions},
    net::Ipv4Addr,
    ops::Deref,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crowbar::node_rig::{self, RigSpec};
pub use crowbar::node_rig::{MAX_NODES, NODE_STATE_MOUNT, RigNode};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// A set of nodes, and maybe a services namespace. Dropping it removes every trace of it.
pub struct NodeRig {
    /// The services namespace (`node0`: dnsmasq), when started. Gone before the rig.
    services: Option<Services>,
    rig: node_rig::NodeRig,
}

/// The namespace of the rig's services (dnsmasq).
struct Services {
    netns: String,
    veth: String,
    dnsmasq: Child,
}

/// Host offset of the services namespace in a block (`.62` of a /26).
const SERVICES_OFFSET: usize = 62;

/// Everything a rig created that must be gone after teardown.
#[derive(Debug, Clone)]
pub struct RigFootprint {
    pub netns: Vec<String>,
    pub links: Vec<String>,
    pub sshd_pids: Vec<u32>,
    pub dir: PathBuf,
}

impl Deref for NodeRig {
    type Target = node_rig::NodeRig;

    fn deref(&self) -> &node_rig::NodeRig {
        &self.rig
    }
}

impl NodeRig {
    /// Starts `n` nodes (1..=61) that accept root logins with `authorized_key` (one
    /// `authorized_keys` line). Returns when every sshd listens. Blocking.
    pub fn start(n: usize, authorized_key: &str) -> NodeRig {
        let rig = node_rig::NodeRig::start(&RigSpec::new(n, authorized_key))
            .unwrap_or_else(|e| panic!("starting a rig of {n} nodes: {e:#}"));
        NodeRig {
            services: None,
            rig,
        }
    }

    /// The address of the services namespace on the bridge: the block's last usable one,
    /// which a rig of at most 60 nodes leaves free.
    pub fn services_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway()) + SERVICES_OFFSET as u32 - 1)
    }

    /// The rig's subnet (`<base>/26`) as `(base, netmask)`.
    pub fn subnet(&self) -> (Ipv4Addr, &'static str) {
        (
            Ipv4Addr::from(u32::from(self.gateway()) - 1),
            "255.255.255.192",
        )
    }

    /// Starts dnsmasq with `config` (lines of a dnsmasq configuration file) in a namespace
    /// of its own on the bridge, at [`services_addr`](Self::services_addr), and writes its
    /// pid to `pid_file`. Returns once it answers DNS. Stopped on teardown.
    pub fn start_dnsmasq(&mut self, config: &str, pid_file: &Path) {
        assert!(self.services.is_none(), "dnsmasq runs already");
        assert!(
            self.nodes().len() < MAX_NODES,
            "the services namespace needs a rig of at most {} nodes",
            MAX_NODES - 1
        );
        let netns = format!("crowbar-{}-node0", self.id());
        let veth = format!("crv{}n0", self.id());
        let addr = self.services_addr();
        node_rig::ip_batch(
            None,
            &format!(
                "netns add {netns}\nlink add {veth} type veth peer name eth0 netns {netns}\nlink set {veth} master {br} up\n",
                br = self.bridge()
            ),
        )
        .unwrap_or_else(|e| panic!("creating the services namespace: {e:#}"));
        // Registered before anything else can fail, so teardown removes it.
        let conf = self.dir().join("dnsmasq.conf");
        fs::write(&conf, config).expect("write dnsmasq.conf");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("dnsmasq.log"))
            .expect("open dnsmasq log");
        node_rig::ip_batch(
            Some(&netns),
            &format!("link set lo up\naddr add {addr}/26 dev eth0\nlink set eth0 up\n"),
        )
        .unwrap_or_else(|e| panic!("configuring the services namespace: {e:#}"));
        // `ip netns exec` execs dnsmasq: the child's pid is dnsmasq's own.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "/usr/sbin/dnsmasq",
                "--keep-in-foreground",
                "--log-facility=-",
            ])
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        fs::write(pid_file, format!("{}\n", child.id())).expect("write the dnsmasq pid file");
        let pid = child.id();
        self.services = Some(Services {
            netns,
            veth,
            dnsmasq: child,
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listens_on_udp(pid, 53) {
            assert!(
                Instant::now() < deadline,
                "dnsmasq does not listen:\n{}",
                self.dnsmasq_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What dnsmasq logged.
    pub fn dnsmasq_log(&self) -> String {
        fs::read_to_string(self.dir().join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn footprint(&self) -> RigFootprint {
        let mut links: Vec<String> = self.nodes().iter().map(|n| n.veth().to_string()).collect();
        links.push(self.bridge().to_string());
        RigFootprint {
            netns: self.nodes().iter().map(|n| n.netns().to_string()).collect(),
            links,
            sshd_pids: self.nodes().iter().filter_map(|n| n.sshd_pid()).collect(),
            dir: self.dir().to_path_buf(),
        }
    }
}

impl Drop for NodeRig {
    fn drop(&mut self) {
        // The services namespace first; the nodes and the bridge go when `rig` drops.
        if let Some(mut services) = self.services.take() {
            let _ = services.dnsmasq.kill();
            let _ = services.dnsmasq.wait();
            node_rig::kill_processes_in(std::slice::from_ref(&services.netns));
            let _ = node_rig::ip_batch(
                None,
                &format!("link del {}\nnetns del {}\n", services.veth, services.netns),
            );
        }
    }
}

impl std::fmt::Debug for NodeRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.rig.fmt(f)
    }
}

/// What tests do to a node besides logging in.
pub trait RigNodeExt {
    /// The MAC address of the node's `eth0` (lower case, colons).
    fn mac(&self) -> String;
    /// Asks for a DHCP lease on the node's `eth0` as an iPXE client would (user class
    /// `iPXE`), configuring nothing: returns the offered address and boot file name, or
    /// `None` when no server answered within `timeout_secs`.
    fn dhcp_lease(&self, timeout_secs: u32) -> Option<(String, Option<String>)>;
    /// SIGSTOP: the kernel still accepts TCP connections, sshd answers nothing.
    fn pause_sshd(&self);
    /// SIGCONT after [`pause_sshd`](Self::pause_sshd).
    fn resume_sshd(&self);
    /// Unplugs the node: its veth goes down, packets to it are dropped.
    fn link_down(&self);
    fn link_up(&self);
    /// Runs `sh -c cmd` in the node's network namespace (not its hostname or mounts).
    fn exec_in_netns(&self, cmd: &str) -> Output;
    /// `(pid, command name)` of every process running in the node's network namespace.
    fn processes(&self) -> Vec<(u32, String)>;
}

impl RigNodeExt for RigNode {
    fn mac(&self) -> String {
        let out = self.exec_in_netns("cat /sys/class/net/eth0/address");
        assert!(out.status.success(), "no eth0 in {}", self.netns());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn dhcp_lease(&self, timeout_secs: u32) -> Option<(String, Option<String>)> {
        let conf = self.dir().join("dhclient.conf");
        let leases = self.dir().join("dhclient.leases");
        let pid = self.dir().join("dhclient.pid");
        fs::write(
            &conf,
            format!("send user-class \"iPXE\";\ntimeout {timeout_secs};\nretry 1;\n"),
        )
        .expect("write dhclient.conf");
        let _ = fs::remove_file(&leases);
        let dhclient = |release: bool| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", self.netns(), "dhclient"]);
            cmd.arg(if release { "-r" } else { "-1" });
            // `-sf /bin/true`: the lease is only recorded, nothing on the machine is touched
            cmd.args(["-sf", "/bin/true"])
                .arg("-cf")
                .arg(&conf)
                .arg("-lf")
                .arg(&leases)
                .arg("-pf")
                .arg(&pid)
                .arg("eth0")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run dhclient (isc-dhcp-client)")
                .success()
        };
        let got = dhclient(false);
        // dhclient stays to renew the lease: release it (the server forgets it, so the
        // next attempt starts afresh) and stop it
        let text = fs::read_to_string(&leases).unwrap_or_default();
        dhclient(true);
        if !got {
            return None;
        }
        let lease = text.rsplit("lease {").next()?;
        let field = |name: &str| {
            lease.lines().find_map(|line| {
                line.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim().trim_end_matches(';').trim_matches('"').to_string())
            })
        };
        Some((field("fixed-address ")?, field("filename ")))
    }

    fn pause_sshd(&self) {
        signal_sshd(self, Signal::SIGSTOP);
    }

    fn resume_sshd(&self) {
        signal_sshd(self, Signal::SIGCONT);
    }

    fn link_down(&self) {
        run_checked(Command::new("ip").args(["link", "set", self.veth(), "down"]));
    }

    fn link_up(&self) {
        run_checked(Command::new("ip").args(["link", "set", self.veth(), "up"]));
    }

    fn exec_in_netns(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.netns(), "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.netns()))
    }

    fn processes(&self) -> Vec<(u32, String)> {
        node_rig::processes_in(&[self.netns().to_string()])
            .into_iter()
            .map(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_string())
            })
            .collect()
    }
}

fn signal_sshd(node: &RigNode, signal: Signal) {
    let pid = node
        .sshd_pid()
        .unwrap_or_else(|| panic!("sshd of {} is not running", node.name()));
    kill(Pid::from_raw(pid as i32), signal)
        .unwrap_or_else(|e| panic!("{signal} to sshd of {}: {e}", node.name()));
}

/// Whether the process's network namespace has a UDP socket bound to `port`.
fn listens_on_udp(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/net/udp")) else {
        return false;
    };
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        line.split_whitespace()
            .nth(1)
            .unwrap_or("")
            .ends_with(&port)
    })
}

fn run_checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every namespace, link, sshd and file of `footprint` is gone.
pub fn assert_gone(footprint: &RigFootprint) {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    let listed: HashSet<&str> = netns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for ns in &footprint.netns {
        assert!(!listed.contains(ns.as_str()), "namespace {ns} is left");
    }
    let names: HashSet<String> = node_rig::link_names().into_iter().collect();
    for link in &footprint.links {
        assert!(!names.contains(link), "link {link} is left");
    }
    for pid in &footprint.sshd_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "sshd {pid} is left"
        );
    }
    assert!(
        !footprint.dir.exists(),
        "{} is left",
        footprint.dir.display()
    );
}
