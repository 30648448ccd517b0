//! Nodes on one machine: each a network namespace with its own address, hostname, sshd,
//! `/etc` and `/var` (overlays of the machine's: what a node writes there stays its own),
//! state directory (at [`NODE_STATE_MOUNT`]), root home and tool directory (at
//! [`NODE_TOOLS_MOUNT`]), behind a bridge the rig creates. `crowbar serve --demo` runs its
//! nodes on one; the tests run theirs on many.
//!
//! Network hygiene: only 198.51.100.0/24 and 203.0.113.0/24 are used, split into eight /26
//! blocks, and only on the bridge and veths a rig creates. A rig claims a block with an
//! exclusive `flock` on `/run/lock/crowbar-rig-<block>.lock`, so rigs of parallel tests, of
//! parallel processes and of a demo daemon never share addresses or names. The host side of
//! the block (`.1`) sits on the bridge so the creating process reaches the nodes directly;
//! nodes get `.2` upwards (61 at most).
//!
//! Names carry the block and the creating pid (`crb3p4711`, `crv3p4711n12`,
//! `crowbar-3p4711-node12`), so leftovers of processes that died without tearing down are
//! recognised and removed when the next rig starts.
//!
//! Teardown happens in `Drop`, panics included: sshd processes (children of the creating
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
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use nix::{
    fcntl::{Flock, FlockArg},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::ssh::PublicKey;

/// Where each node sees its private state directory.
pub const NODE_STATE_MOUNT: &str = "/var/lib/node-state";
/// Where each node sees its own tool directory: first in root's `PATH` in the node's SSH
/// sessions, so a stand-in for a tool that needs hardware the node lacks (ipmitool's
/// `/dev/ipmi0`, say) goes there. Empty unless a test puts something in it.
pub const NODE_TOOLS_MOUNT: &str = "/usr/local/sbin";
/// The most nodes one rig (one /26 block) holds.
pub const MAX_NODES: usize = 61;
const SSH_PORT: u16 = 22;

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

/// What a rig is made of.
#[derive(Debug, Clone)]
pub struct RigSpec {
    /// How many nodes (1..=61).
    pub nodes: usize,
    /// One `authorized_keys` line: who may log in to the nodes as root.
    pub authorized_key: String,
    /// The node names (also their hostnames), one per node; `node<i>.rig<id>.test` when
    /// empty.
    pub names: Vec<String>,
    /// Where the rig keeps its files (removed on teardown); a fresh directory under the
    /// temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// How long to wait for a free address block.
    pub block_wait: Duration,
}

impl RigSpec {
    pub fn new(nodes: usize, authorized_key: &str) -> RigSpec {
        RigSpec {
            nodes,
            authorized_key: authorized_key.to_string(),
            names: Vec::new(),
            dir: None,
            block_wait: Duration::from_secs(300),
        }
    }
}

/// A set of nodes. Dropping it removes every trace of it.
pub struct NodeRig {
    id: String,
    block: usize,
    bridge: String,
    gateway: Ipv4Addr,
    dir: PathBuf,
    nodes: Vec<RigNode>,
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

impl NodeRig {
    /// Starts the nodes of `spec`. Returns when every sshd listens; on error, whatever was
    /// created is gone again. Blocking.
    pub fn start(spec: &RigSpec) -> anyhow::Result<NodeRig> {
        let n = spec.nodes;
        ensure!(
            (1..=MAX_NODES).contains(&n),
            "a rig holds 1 to {MAX_NODES} nodes, not {n}"
        );
        ensure!(
            spec.names.is_empty() || spec.names.len() == n,
            "{} names for {n} nodes",
            spec.names.len()
        );
        for dir in ["/run/sshd", NODE_STATE_MOUNT] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        }
        let place = std::path::absolute(spec.dir.clone().unwrap_or_else(std::env::temp_dir))
            .context("cannot resolve the rig's directory")?;
        // a node sees its files through its own /etc and /var overlays otherwise, and what
        // it writes to its state directory would stay in the overlay
        ensure!(
            !place.starts_with("/etc") && !place.starts_with("/var"),
            "the nodes' directory {} is under /etc or /var, which every node overlays with \
             a copy of its own; choose a directory elsewhere (a data directory outside /var, \
             or TMPDIR)",
            place.display()
        );
        let (block, lock) = claim_block(spec.block_wait)?;
        let pid = std::process::id();
        let id = format!("{block}p{pid}");
        remove_leftovers(block);

        let base = block_base(block);
        // absolute: sshd re-executes itself per connection and resolves its config's paths
        // from `/`
        let dir = std::path::absolute(
            spec.dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("crowbar-rig-{id}"))),
        )
        .context("cannot resolve the rig's directory")?;
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

        let mut rig = NodeRig {
            bridge: format!("crb{id}"),
            gateway: offset(base, 1),
            block,
            dir,
            nodes: Vec::with_capacity(n),
            lock: Some(lock),
            id,
        };
        // From here on, dropping `rig` on an error tears down whatever was created so far.
        rig.create_nodes(spec, base)?;
        Ok(rig)
    }

    fn create_nodes(&mut self, spec: &RigSpec, base: Ipv4Addr) -> anyhow::Result<()> {
        let n = spec.nodes;
        // Files and host keys, the key generators running in parallel.
        let mut keygens = Vec::with_capacity(n);
        let mut plans = Vec::with_capacity(n);
        for index in 1..=n {
            let dir = self.dir.join(format!("node{index}"));
            let state_dir = dir.join("state");
            fs::create_dir_all(&state_dir).context("cannot create a node directory")?;
            fs::create_dir_all(dir.join("tools")).context("cannot create a node directory")?;
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join("root"))
                .context("cannot create a node's root home")?;
            let addr = offset(base, 1 + index);
            fs::write(
                dir.join("authorized_keys"),
                format!("{}\n", spec.authorized_key.trim()),
            )
            .context("cannot write authorized_keys")?;
            fs::write(dir.join("sshd_config"), sshd_config(&dir, addr))
                .context("cannot write sshd_config")?;
            let keygen = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("node{index}"))
                .arg("-f")
                .arg(dir.join("ssh_host_ed25519_key"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot run ssh-keygen (openssh-client)")?;
            keygens.push(keygen);
            plans.push((index, addr, dir, state_dir));
        }
        for keygen in keygens {
            let out = keygen.wait_with_output().context("ssh-keygen")?;
            ensure!(
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
                .context("cannot read a host public key")?
                .trim()
                .to_string();
            let host_key = PublicKey::from_openssh(&host_key_line)
                .map_err(|e| anyhow!("cannot parse a host key: {e}"))?;
            let name = match spec.names.get(index - 1) {
                Some(name) => name.clone(),
                None => format!("node{index}.rig{}.test", self.id),
            };
            let node = RigNode {
                index,
                name,
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
        ip_batch(None, &batch).with_context(|| format!("creating rig {}", self.id))?;

        // Inside each namespace, in parallel.
        let mut configs = Vec::with_capacity(n);
        for node in &self.nodes {
            let script = format!(
                "link set lo up\naddr add {}/26 dev eth0\nlink set eth0 up\n",
                node.addr
            );
            configs.push((node, spawn_ip_batch(Some(&node.netns), &script)?));
        }
        for (node, child) in configs {
            finish_ip_batch(child).with_context(|| format!("configuring {}", node.netns))?;
        }

        for node in &self.nodes {
            node.spawn_sshd()?;
        }
        let deadline =
            Instant::now() + Duration::from_secs(20) + Duration::from_millis(200) * n as u32;
        for node in &self.nodes {
            node.wait_listening(deadline)?;
            self.wait_forwarding(node, deadline)?;
        }
        Ok(())
    }

    /// Polls sysfs until the bridge forwards the node's port: a packet sent before that
    /// is dropped, and a first probe right after the rig is built would see the node dead.
    fn wait_forwarding(&self, node: &RigNode, deadline: Instant) -> anyhow::Result<()> {
        const FORWARDING: &str = "3";
        let port = format!("/sys/class/net/{}/brport/state", node.veth);
        let bridge = format!("/sys/class/net/{}/carrier", self.bridge);
        loop {
            let state = fs::read_to_string(&port).unwrap_or_default();
            let up = fs::read_to_string(&bridge).unwrap_or_default();
            if state.trim() == FORWARDING && up.trim() == "1" {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the bridge {} does not forward to {} (port state {:?}, bridge carrier {:?})",
                self.bridge,
                node.veth,
                state.trim(),
                up.trim()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `<block>p<pid>`: part of every name the rig gives.
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

    /// The creating process's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Where the rig keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn teardown(&mut self) {
        for node in &self.nodes {
            node.kill_sshd();
        }
        let namespaces: Vec<String> = self.nodes.iter().map(|n| n.netns.clone()).collect();
        kill_processes_in(&namespaces);
        let mut batch = String::new();
        for node in &self.nodes {
            batch.push_str(&format!("link del {}\n", node.veth));
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
            tracing::warn!(rig = %self.id, "cannot remove {}: {e}", self.dir.display());
        }
        drop(self.lock.take());
    }
}

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
    /// The node's name and hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The host side of the node's veth (in the creator's namespace, on the bridge).
    pub fn veth(&self) -> &str {
        &self.veth
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
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

    /// The directory of the node's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory the node sees at [`NODE_STATE_MOUNT`].
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory the node sees at [`NODE_TOOLS_MOUNT`].
    pub fn tools_dir(&self) -> PathBuf {
        self.dir.join("tools")
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
    pub fn start_sshd(&self) -> anyhow::Result<()> {
        if self.sshd().is_some() {
            return Ok(());
        }
        self.spawn_sshd()?;
        self.wait_listening(Instant::now() + Duration::from_secs(20))
    }

    /// The sshd child, also after a panic elsewhere (teardown must always get to it).
    fn sshd(&self) -> MutexGuard<'_, Option<Child>> {
        self.sshd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_sshd(&self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .context("cannot open the sshd log")?;
        // `ip netns exec`, `unshare` (without --fork) and the final `exec` keep one pid: the
        // child is sshd itself. `unshare --mount` makes the mount namespace private, so the
        // mounts stay inside: overlays on /etc and /var whose upper layers are the node's
        // (a role that configures the machine changes the node's files, never this
        // machine's), the state directory, a home of its own for root (the machine's
        // dotfiles are not the node's business, and can be slow) and the tool directory.
        // `--uts` gives the node a hostname of its own.
        let overlays = self.dir.join("overlay");
        for dir in ["etc", "var"] {
            for layer in ["upper", "work"] {
                fs::create_dir_all(overlays.join(dir).join(layer))
                    .context("cannot create a node's overlay directory")?;
            }
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["unshare", "--uts", "--mount", "--"])
            .args([
                "sh",
                "-c",
                "o=\"$2\"; hostname \"$1\" \
                 && mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$o/etc/upper,workdir=$o/etc/work\" /etc \
                 && mount -t overlay overlay -o \"lowerdir=/var,upperdir=$o/var/upper,workdir=$o/var/work\" /var \
                 && mkdir -p \"$4\" && mount --bind \"$3\" \"$4\" && mount --bind \"$5\" /root \
                 && mount --bind \"$6\" \"$7\" && exec /usr/sbin/sshd -D -e -f \"$8\"",
                "sh",
            ])
            .arg(&self.name)
            .arg(&overlays)
            .arg(&self.state_dir)
            .arg(NODE_STATE_MOUNT)
            .arg(self.dir.join("root"))
            .arg(self.tools_dir())
            .arg(NODE_TOOLS_MOUNT)
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot spawn sshd")?;
        *self.sshd() = Some(child);
        Ok(())
    }

    /// Polls the namespace's TCP table (no connection, so no sshd fork and no log noise)
    /// until sshd listens.
    fn wait_listening(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let pid = {
                let mut guard = self.sshd();
                let child = guard.as_mut().context("sshd not started")?;
                if let Ok(Some(status)) = child.try_wait() {
                    *guard = None;
                    bail!(
                        "sshd of {} exited ({status}) before listening:\n{}",
                        self.name,
                        self.sshd_log()
                    );
                }
                child.id()
            };
            if listens_on(pid, SSH_PORT) {
                return Ok(());
            }
            ensure!(
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

/// Claims a free address block, waiting (polling) up to `wait` while all are in use.
fn claim_block(wait: Duration) -> anyhow::Result<(usize, Flock<File>)> {
    fs::create_dir_all("/run/lock").context("cannot create /run/lock")?;
    let deadline = Instant::now() + wait;
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
                .with_context(|| format!("cannot open {path}"))?;
            if let Ok(mut lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let _ = lock.set_len(0);
                let _ = writeln!(*lock, "{}", std::process::id());
                return Ok((block, lock));
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no free rig address block for {wait:?} (all {BLOCKS} locked in /run/lock)"
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
    for name in link_names() {
        if let Some(rest) = name.strip_prefix("crv")
            && let Some((id, _)) = rest.rsplit_once('n')
            && stale(id)
        {
            veths.push(name);
        } else if let Some(id) = name.strip_prefix("crb")
            && stale(id)
        {
            bridges.push(name);
        }
    }
    if !namespaces.is_empty() || !veths.is_empty() || !bridges.is_empty() {
        tracing::warn!(
            ?namespaces,
            ?veths,
            ?bridges,
            "removing namespace nodes left by processes that did not tear them down"
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
            tracing::warn!("removing leftovers: {e:#}");
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

/// The names of this network namespace's links (`ip -o link show`, without `@peer`).
pub fn link_names() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// SIGKILLs every process whose network namespace is one of `names` (sessions and commands
/// sshd forked, which outlive it and which nobody else would stop), until none is left.
pub fn kill_processes_in(names: &[String]) {
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
pub fn processes_in(names: &[String]) -> Vec<u32> {
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
pub fn ip_batch(netns: Option<&str>, commands: &str) -> anyhow::Result<()> {
    finish_ip_batch(spawn_ip_batch(netns, commands)?)
}

fn spawn_ip_batch(netns: Option<&str>, commands: &str) -> anyhow::Result<Child> {
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
        .context("cannot run ip (iproute2)")?;
    child
        .stdin
        .take()
        .context("no stdin for ip")?
        .write_all(commands.as_bytes())
        .context("cannot write to ip -batch")?;
    Ok(child)
}

fn finish_ip_batch(child: Child) -> anyhow::Result<()> {
    let out = child.wait_with_output().context("waiting for ip")?;
    ensure!(
        out.status.success(),
        "ip -batch failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
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
