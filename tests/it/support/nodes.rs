//! Real nodes on one machine: each a network namespace with its own address, hostname,
//! sshd, state directory (at [`NODE_STATE_MOUNT`]) and root home, behind a bridge the rig
//! creates.
//!
//! Network hygiene: only 198.51.100.0/24 and 203.0.113.0/24 are used, split into eight /26
//! blocks, and only on the bridge and veths a rig creates. A rig claims a block with an
//! exclusive `flock` on `/run/lock/crowbar-rig-<block>.lock`, so rigs of parallel tests and
//! of parallel test processes never share addresses or names. The host side of the block
//! (`.1`) sits on the bridge so the test process reaches the nodes directly; nodes get
//! `.2` upwards (61 at most).
//!
//! Names carry the block and the creating pid (`crb3p4711`, `crv3p4711n12`,
//! `crowbar-3p4711-node12`), so leftovers of test processes that died without tearing down
//! are recognised and removed when the next rig starts.
//!
//! Teardown happens in `Drop`, panics included: sshd processes (children of the test
//! process) are killed and reaped, whatever still runs in the namespaces is killed, the
//! veths are deleted (synchronously) before the namespaces (asynchronously) and the bridge,
//! the files are removed, and the block is released last.

use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::{DirBuilderExt, MetadataExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crowbar::ssh::PublicKey;
use nix::{
    fcntl::{Flock, FlockArg},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Where each node sees its private state directory.
pub const NODE_STATE_MOUNT: &str = "/var/lib/node-state";
/// The most nodes one rig (one /26 block) holds.
pub const MAX_NODES: usize = 61;
const SSH_PORT: u16 = 22;
/// How long a rig waits for a free address block before giving up.
const BLOCK_WAIT: Duration = Duration::from_secs(300);

/// The eight /26 blocks rigs may use.
fn block_base(block: usize) -> Ipv4Addr {
    let (net, index) = if block < 4 {
        ([198, 51, 100], block)
    } else {
        ([203, 0, 113], block - 4)
    };
    Ipv4Addr::new(net[0], net[1], net[2], (index * 64) as u8)
}
const BLOCKS: usize = 8;

fn offset(base: Ipv4Addr, by: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + by as u32)
}

/// A set of nodes. Dropping it removes every trace of it.
pub struct NodeRig {
    id: String,
    block: usize,
    bridge: String,
    gateway: Ipv4Addr,
    dir: PathBuf,
    nodes: Vec<RigNode>,
    /// The services namespace (`node0`: dnsmasq), when started.
    services: Option<Services>,
    /// Released last, after everything the block's names and addresses were used for is gone.
    lock: Option<Flock<File>>,
}

/// One node of a rig.
pub struct RigNode {
    index: usize,
    name: String,
    netns: String,
    veth: String,
    addr: Ipv4Addr,
    host_key: PublicKey,
    host_key_line: String,
    dir: PathBuf,
    state_dir: PathBuf,
    sshd: Mutex<Option<Child>>,
}

/// Everything a rig created that must be gone after teardown.
#[derive(Debug, Clone)]
pub struct RigFootprint {
    pub netns: Vec<String>,
    pub links: Vec<String>,
    pub sshd_pids: Vec<u32>,
    pub dir: PathBuf,
}

impl NodeRig {
    /// Starts `n` nodes (1..=61) that accept root logins with `authorized_key` (one
    /// `authorized_keys` line). Returns when every sshd listens. Blocking.
    pub fn start(n: usize, authorized_key: &str) -> NodeRig {
        assert!(
            (1..=MAX_NODES).contains(&n),
            "a rig holds 1 to {MAX_NODES} nodes, not {n}"
        );
        for dir in ["/run/sshd", NODE_STATE_MOUNT] {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir}: {e}"));
        }
        let (block, lock) = claim_block();
        let pid = std::process::id();
        let id = format!("{block}p{pid}");
        remove_leftovers(block);

        let base = block_base(block);
        let dir = std::env::temp_dir().join(format!("crowbar-rig-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create rig dir");

        let mut rig = NodeRig {
            bridge: format!("crb{id}"),
            gateway: offset(base, 1),
            block,
            dir,
            nodes: Vec::with_capacity(n),
            services: None,
            lock: Some(lock),
            id,
        };
        // From here on, a panic tears down whatever was created so far.
        rig.create_nodes(n, base, authorized_key);
        rig
    }

    fn create_nodes(&mut self, n: usize, base: Ipv4Addr, authorized_key: &str) {
        // Files and host keys, the key generators running in parallel.
        let mut keygens = Vec::with_capacity(n);
        let mut plans = Vec::with_capacity(n);
        for index in 1..=n {
            let dir = self.dir.join(format!("node{index}"));
            let state_dir = dir.join("state");
            fs::create_dir_all(&state_dir).expect("create node dir");
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join("root"))
                .expect("create node root home");
            let addr = offset(base, 1 + index);
            fs::write(
                dir.join("authorized_keys"),
                format!("{}\n", authorized_key.trim()),
            )
            .expect("write authorized_keys");
            fs::write(dir.join("sshd_config"), sshd_config(&dir, addr)).expect("write sshd_config");
            let keygen = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("node{index}"))
                .arg("-f")
                .arg(dir.join("ssh_host_ed25519_key"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run ssh-keygen (openssh-client)");
            keygens.push(keygen);
            plans.push((index, addr, dir, state_dir));
        }
        for keygen in keygens {
            let out = keygen.wait_with_output().expect("wait for ssh-keygen");
            assert!(
                out.status.success(),
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // The bridge and all veths in one `ip` invocation.
        let mut batch = format!(
            "link add {br} type bridge\naddr add {gw}/26 dev {br}\nlink set {br} up\n",
            br = self.bridge,
            gw = self.gateway
        );
        for (index, addr, dir, state_dir) in plans {
            let host_key_line = fs::read_to_string(dir.join("ssh_host_ed25519_key.pub"))
                .expect("read host public key")
                .trim()
                .to_string();
            let host_key = PublicKey::from_openssh(&host_key_line).expect("parse host key");
            let node = RigNode {
                index,
                name: format!("node{index}.rig{}.test", self.id),
                netns: format!("crowbar-{}-node{index}", self.id),
                veth: format!("crv{}n{index}", self.id),
                addr,
                host_key,
                host_key_line,
                dir,
                state_dir,
                sshd: Mutex::new(None),
            };
            batch.push_str(&format!(
                "netns add {ns}\nlink add {veth} type veth peer name eth0 netns {ns}\nlink set {veth} master {br} up\n",
                ns = node.netns,
                veth = node.veth,
                br = self.bridge
            ));
            self.nodes.push(node);
        }
        ip_batch(None, &batch).unwrap_or_else(|e| panic!("creating rig {}: {e}", self.id));

        // Inside each namespace, in parallel.
        let configs: Vec<_> = self
            .nodes
            .iter()
            .map(|node| {
                let script = format!(
                    "link set lo up\naddr add {}/26 dev eth0\nlink set eth0 up\n",
                    node.addr
                );
                (node, spawn_ip_batch(Some(&node.netns), &script))
            })
            .collect();
        for (node, child) in configs {
            finish_ip_batch(child).unwrap_or_else(|e| panic!("configuring {}: {e}", node.netns));
        }

        for node in &self.nodes {
            node.spawn_sshd();
        }
        let deadline =
            Instant::now() + Duration::from_secs(20) + Duration::from_millis(200) * n as u32;
        for node in &self.nodes {
            node.wait_listening(deadline);
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn nodes(&self) -> &[RigNode] {
        &self.nodes
    }

    /// Node `i`, counting from 1 like the names.
    pub fn node(&self, i: usize) -> &RigNode {
        &self.nodes[i - 1]
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The test process's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The address of the services namespace on the bridge: the block's last usable one,
    /// which a rig of at most 60 nodes leaves free.
    pub fn services_addr(&self) -> Ipv4Addr {
        offset(self.gateway, SERVICES_OFFSET - 1)
    }

    /// The rig's subnet (`<base>/26`) as `(base, netmask)`.
    pub fn subnet(&self) -> (Ipv4Addr, &'static str) {
        (
            Ipv4Addr::from(u32::from(self.gateway) - 1),
            "255.255.255.192",
        )
    }

    /// Starts dnsmasq with `config` (lines of a dnsmasq configuration file) in a namespace
    /// of its own on the bridge, at [`services_addr`](Self::services_addr), and writes its
    /// pid to `pid_file`. Returns once it answers DNS. Stopped on teardown.
    pub fn start_dnsmasq(&mut self, config: &str, pid_file: &Path) {
        assert!(self.services.is_none(), "dnsmasq runs already");
        assert!(
            self.nodes.len() < MAX_NODES,
            "the services namespace needs a rig of at most {} nodes",
            MAX_NODES - 1
        );
        let netns = format!("crowbar-{}-node0", self.id);
        let veth = format!("crv{}n0", self.id);
        let addr = self.services_addr();
        ip_batch(
            None,
            &format!(
                "netns add {netns}\nlink add {veth} type veth peer name eth0 netns {netns}\nlink set {veth} master {br} up\n",
                br = self.bridge
            ),
        )
        .unwrap_or_else(|e| panic!("creating the services namespace: {e}"));
        ip_batch(
            Some(&netns),
            &format!("link set lo up\naddr add {addr}/26 dev eth0\nlink set eth0 up\n"),
        )
        .unwrap_or_else(|e| panic!("configuring the services namespace: {e}"));
        let conf = self.dir.join("dnsmasq.conf");
        fs::write(&conf, config).expect("write dnsmasq.conf");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dnsmasq.log"))
            .expect("open dnsmasq log");
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
        fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn footprint(&self) -> RigFootprint {
        let mut links: Vec<String> = self.nodes.iter().map(|n| n.veth.clone()).collect();
        links.push(self.bridge.clone());
        RigFootprint {
            netns: self.nodes.iter().map(|n| n.netns.clone()).collect(),
            links,
            sshd_pids: self.nodes.iter().filter_map(|n| n.sshd_pid()).collect(),
            dir: self.dir.clone(),
        }
    }

    fn teardown(&mut self) {
        for node in &self.nodes {
            node.kill_sshd();
        }
        let mut namespaces: Vec<String> = self.nodes.iter().map(|n| n.netns.clone()).collect();
        let mut veths: Vec<String> = self.nodes.iter().map(|n| n.veth.clone()).collect();
        if let Some(mut services) = self.services.take() {
            let _ = services.dnsmasq.kill();
            let _ = services.dnsmasq.wait();
            namespaces.push(services.netns.clone());
            veths.push(services.veth.clone());
        }
        kill_processes_in(&namespaces);
        let mut batch = String::new();
        for veth in &veths {
            batch.push_str(&format!("link del {veth}\n"));
        }
        for netns in &namespaces {
            batch.push_str(&format!("netns del {netns}\n"));
        }
        batch.push_str(&format!("link del {}\n", self.bridge));
        // Some of these may never have been created when start failed half-way.
        let _ = ip_batch(None, &batch);
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("rig {}: cannot remove {}: {e}", self.id, self.dir.display());
        }
        drop(self.lock.take());
    }
}

/// The namespace of the rig's services (dnsmasq).
struct Services {
    netns: String,
    veth: String,
    dnsmasq: Child,
}

/// Host offset of the services namespace in a block (`.62` of a /26).
const SERVICES_OFFSET: usize = 62;

impl Drop for NodeRig {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl std::fmt::Debug for NodeRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRig")
            .field("id", &self.id)
            .field("block", &self.block)
            .field("bridge", &self.bridge)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl RigNode {
    /// `node<i>.rig<id>.test`; also the node's hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The host side of the node's veth (in the test's namespace, on the bridge).
    pub fn veth(&self) -> &str {
        &self.veth
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The MAC address of the node's `eth0` (lower case, colons).
    pub fn mac(&self) -> String {
        let out = self.exec_in_netns("cat /sys/class/net/eth0/address");
        assert!(out.status.success(), "no eth0 in {}", self.netns);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Asks for a DHCP lease on the node's `eth0` as an iPXE client would (user class
    /// `iPXE`), configuring nothing: returns the offered address and boot file name, or
    /// `None` when no server answered within `timeout_secs`.
    pub fn dhcp_lease(&self, timeout_secs: u32) -> Option<(String, Option<String>)> {
        let conf = self.dir.join("dhclient.conf");
        let leases = self.dir.join("dhclient.leases");
        let pid = self.dir.join("dhclient.pid");
        fs::write(
            &conf,
            format!("send user-class \"iPXE\";\ntimeout {timeout_secs};\nretry 1;\n"),
        )
        .expect("write dhclient.conf");
        let _ = fs::remove_file(&leases);
        // `-sf /bin/true`: the lease is only recorded, nothing on the machine is touched
        let got = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "dhclient",
                "-1",
                "-sf",
                "/bin/true",
            ])
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
            .success();
        // dhclient stays to renew the lease: release it (the server forgets it, so the
        // next attempt starts afresh) and stop it
        let text = fs::read_to_string(&leases).unwrap_or_default();
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "dhclient",
                "-r",
                "-sf",
                "/bin/true",
            ])
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
            .status();
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

    pub fn ssh_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, SSH_PORT))
    }

    /// The sshd's host key, as ssh-keygen wrote it (comment `node<i>`).
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key's `.pub` line.
    pub fn host_key_openssh(&self) -> &str {
        &self.host_key_line
    }

    /// The directory the node sees at [`NODE_STATE_MOUNT`].
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd().as_ref().map(|c| c.id())
    }

    /// What sshd logged (it runs with `-e`, at INFO).
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Kills sshd and reaps it: connections are refused from now on. Sessions already open
    /// keep their own processes.
    pub fn kill_sshd(&self) {
        if let Some(mut child) = self.sshd().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts sshd again (if it is not running) and waits until it listens.
    pub fn start_sshd(&self) {
        if self.sshd().is_some() {
            return;
        }
        self.spawn_sshd();
        self.wait_listening(Instant::now() + Duration::from_secs(20));
    }

    /// SIGSTOP: the kernel still accepts TCP connections, sshd answers nothing.
    pub fn pause_sshd(&self) {
        self.signal_sshd(Signal::SIGSTOP);
    }

    /// SIGCONT after [`pause_sshd`](Self::pause_sshd).
    pub fn resume_sshd(&self) {
        self.signal_sshd(Signal::SIGCONT);
    }

    /// Unplugs the node: its veth goes down, packets to it are dropped.
    pub fn link_down(&self) {
        run_checked(Command::new("ip").args(["link", "set", &self.veth, "down"]));
    }

    pub fn link_up(&self) {
        run_checked(Command::new("ip").args(["link", "set", &self.veth, "up"]));
    }

    /// Runs `sh -c cmd` in the node's network namespace (not its hostname or mounts).
    pub fn exec_in_netns(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.netns))
    }

    /// `(pid, command name)` of every process running in the node's network namespace.
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_in(std::slice::from_ref(&self.netns))
            .into_iter()
            .map(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_string())
            })
            .collect()
    }

    /// The sshd child, also after a panic elsewhere (teardown must always get to it).
    fn sshd(&self) -> MutexGuard<'_, Option<Child>> {
        self.sshd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal_sshd(&self, signal: Signal) {
        let pid = self
            .sshd_pid()
            .unwrap_or_else(|| panic!("sshd of {} is not running", self.name));
        kill(Pid::from_raw(pid as i32), signal)
            .unwrap_or_else(|e| panic!("{signal} to sshd of {}: {e}", self.name));
    }

    fn spawn_sshd(&self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .expect("open sshd log");
        // `ip netns exec`, `unshare` (without --fork) and the final `exec` keep one pid: the
        // child is sshd itself. `unshare --mount` makes the mount namespace private, so the
        // bind mounts stay inside: the state directory, and a home of its own for root (the
        // test machine's dotfiles are not the node's business, and can be slow).
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["unshare", "--uts", "--mount", "--"])
            .args([
                "sh",
                "-c",
                "hostname \"$1\" && mount --bind \"$2\" \"$3\" && mount --bind \"$4\" /root \
                 && exec /usr/sbin/sshd -D -e -f \"$5\"",
                "sh",
            ])
            .arg(&self.name)
            .arg(&self.state_dir)
            .arg(NODE_STATE_MOUNT)
            .arg(self.dir.join("root"))
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        *self.sshd() = Some(child);
    }

    /// Polls the namespace's TCP table (no connection, so no sshd fork and no log noise)
    /// until sshd listens.
    fn wait_listening(&self, deadline: Instant) {
        loop {
            let pid = {
                let mut guard = self.sshd();
                let child = guard.as_mut().expect("sshd not started");
                if let Ok(Some(status)) = child.try_wait() {
                    *guard = None;
                    panic!(
                        "sshd of {} exited ({status}) before listening:\n{}",
                        self.name,
                        self.sshd_log()
                    );
                }
                child.id()
            };
            if listens_on(pid, SSH_PORT) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd of {} does not listen on {}:\n{}",
                self.name,
                self.ssh_addr(),
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl std::fmt::Debug for RigNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RigNode")
            .field("name", &self.name)
            .field("netns", &self.netns)
            .field("addr", &self.addr)
            .field("sshd_pid", &self.sshd_pid())
            .finish()
    }
}

fn sshd_config(dir: &Path, addr: Ipv4Addr) -> String {
    let dir = dir.display();
    format!(
        "ListenAddress {addr}:{SSH_PORT}\n\
         HostKey {dir}/ssh_host_ed25519_key\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         MaxStartups 200\n\
         MaxSessions 100\n\
         LogLevel INFO\n"
    )
}

/// Whether the process's network namespace has a TCP socket listening on `port`.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        local.ends_with(&port) && state == "0A"
    })
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

/// Claims a free address block, waiting (polling) while all are in use.
fn claim_block() -> (usize, Flock<File>) {
    fs::create_dir_all("/run/lock").expect("create /run/lock");
    let deadline = Instant::now() + BLOCK_WAIT;
    // Start at a different block per process so parallel processes rarely collide.
    let first = std::process::id() as usize % BLOCKS;
    loop {
        for k in 0..BLOCKS {
            let block = (first + k) % BLOCKS;
            let path = format!("/run/lock/crowbar-rig-{block}.lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {path}: {e}"));
            if let Ok(mut lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let _ = lock.set_len(0);
                let _ = writeln!(*lock, "{}", std::process::id());
                return (block, lock);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no free rig address block for {BLOCK_WAIT:?} (all {BLOCKS} locked in /run/lock)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `<block>p<pid>` from a rig id.
fn parse_id(id: &str) -> Option<(usize, u32)> {
    let (block, pid) = id.split_once('p')?;
    Some((block.parse().ok()?, pid.parse().ok()?))
}

/// Removes what rigs of dead processes left behind, and anything left in `claimed`
/// (which no live rig can be using: we hold its lock).
fn remove_leftovers(claimed: usize) {
    let stale = |id: &str| match parse_id(id) {
        Some((block, pid)) => block == claimed || !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    };
    let mut namespaces = Vec::new();
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("crowbar-")
                && let Some((id, _node)) = rest.split_once("-node")
                && stale(id)
            {
                namespaces.push(name);
            }
        }
    }
    let mut veths = Vec::new();
    let mut bridges = Vec::new();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link show");
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if let Some(rest) = name.strip_prefix("crv")
            && let Some((id, _)) = rest.rsplit_once('n')
            && stale(id)
        {
            veths.push(name.to_string());
        } else if let Some(id) = name.strip_prefix("crb")
            && stale(id)
        {
            bridges.push(name.to_string());
        }
    }
    if !namespaces.is_empty() || !veths.is_empty() || !bridges.is_empty() {
        eprintln!(
            "rig: removing leftovers of earlier test processes: {namespaces:?} {veths:?} {bridges:?}"
        );
        kill_processes_in(&namespaces);
        let mut batch = String::new();
        for veth in &veths {
            batch.push_str(&format!("link del {veth}\n"));
        }
        for ns in &namespaces {
            batch.push_str(&format!("netns del {ns}\n"));
        }
        for bridge in &bridges {
            batch.push_str(&format!("link del {bridge}\n"));
        }
        if let Err(e) = ip_batch(None, &batch) {
            eprintln!("rig: removing leftovers: {e}");
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("crowbar-rig-")
                && stale(id)
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// SIGKILLs every process whose network namespace is one of `names` (sessions and commands
/// sshd forked, which outlive it and which nobody else would stop), until none is left.
fn kill_processes_in(names: &[String]) {
    for _round in 0..5 {
        let pids = processes_in(names);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Live (not zombie) processes whose network namespace is one of the named ones.
fn processes_in(names: &[String]) -> Vec<u32> {
    let inodes: HashSet<u64> = names
        .iter()
        .filter_map(|name| fs::metadata(format!("/run/netns/{name}")).ok())
        .map(|meta| meta.ino())
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino()))
        })
        .collect()
}

/// Runs `ip [-n NETNS] -force -batch -` with `commands` on stdin.
fn ip_batch(netns: Option<&str>, commands: &str) -> Result<(), String> {
    finish_ip_batch(spawn_ip_batch(netns, commands))
}

fn spawn_ip_batch(netns: Option<&str>, commands: &str) -> Child {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ip (iproute2)");
    child
        .stdin
        .take()
        .expect("ip stdin")
        .write_all(commands.as_bytes())
        .expect("write to ip -batch");
    child
}

fn finish_ip_batch(child: Child) -> Result<(), String> {
    let out = child.wait_with_output().expect("wait for ip");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let names: HashSet<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    for link in &footprint.links {
        assert!(!names.contains(link.as_str()), "link {link} is left");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_stay_in_the_documentation_ranges() {
        for block in 0..BLOCKS {
            let base = block_base(block);
            let last = offset(base, 63);
            let allowed = |a: Ipv4Addr| {
                let o = a.octets();
                (o[0], o[1], o[2]) == (198, 51, 100) || (o[0], o[1], o[2]) == (203, 0, 113)
            };
            assert!(
                allowed(base) && allowed(last),
                "block {block}: {base}..{last}"
            );
            assert_eq!(base.octets()[3] % 64, 0);
        }
        let bases: HashSet<Ipv4Addr> = (0..BLOCKS).map(block_base).collect();
        assert_eq!(bases.len(), BLOCKS);
    }

    #[test]
    fn names_fit_interface_limits() {
        let id = format!("{}p{}", BLOCKS - 1, 4_194_304);
        assert!(format!("crb{id}").len() <= 15);
        assert!(format!("crv{id}n{MAX_NODES}").len() <= 15);
        assert_eq!(parse_id(&id), Some((BLOCKS - 1, 4_194_304)));
    }
}
