//! Script fan-out: one script role on N real namespace nodes (sshd each), timed for crowbar
//! and, on the same nodes in the same run, for Ansible (ad-hoc `raw`, forks = N) and for a
//! plain `ssh` fan-out; prints the ratios. Then a 5-role chain on the same nodes.
//!
//!     cargo bench --bench script_fanout -- [--nodes 50] [--chain 5]
//!
//! Needs root (network namespaces, raw ICMP), openssh-server, jq, and `ansible` on PATH
//! (`pip install ansible-core`; the benchmark installs it with pip when it is missing).
//! Each tool writes one file per node in the node's state directory; the timer runs from
//! the start of the work (crowbar: the deployment's commit) until every node is done. Every
//! tool starts cold: no SSH connection is open when its clock starts. The rig, the
//! PostgreSQL cluster and every temporary file are removed at the end.

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/nodes.rs"]
mod nodes;

mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use crowbar::{
    annealer::{AnnealerSettings, Engine},
    db,
    hooks::Hooks,
    jig::{JigRegistry, ScriptJig},
    pg::{ManagedPostgres, PgOptions},
    ssh::ClientKey,
};
use nodes::{NODE_STATE_MOUNT, NodeRig};
use tokio_util::sync::CancellationToken;

struct Args {
    nodes: usize,
    chain: usize,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 50,
        chain: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--nodes" => a.nodes = value().expect("--nodes N"),
            "--chain" => a.chain = value().expect("--chain M"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: not the place
    // for a 50-node benchmark that installs Ansible.
    if !std::env::args().any(|a| a == "--bench") {
        println!("script_fanout: run it with `cargo bench --bench script_fanout`");
        return Ok(());
    }
    let args = args();
    if std::env::var_os("RUST_LOG").is_some() {
        crowbar::telemetry::init(crowbar::telemetry::LogFormat::Text);
    }
    ensure_ansible()?;
    std::fs::create_dir_all("/run/sshd")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn ensure_ansible() -> anyhow::Result<()> {
    let found = Command::new("ansible")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("ansible not found: pip install ansible-core");
        let ok = Command::new("pip")
            .args(["install", "--quiet", "ansible-core"])
            .status()
            .context("pip")?
            .success();
        if !ok {
            bail!("pip install ansible-core failed; install Ansible and run again");
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let pg = ManagedPostgres::start_with(&dir.path().join("pg"), PgOptions::throwaway()).await?;
    let result = bench(&args, &pg, dir.path()).await;
    pg.stop().await;
    result
}

fn barclamp(chain: usize) -> String {
    let mut doc = String::from(
        "barclamp: {name: bench, parent: core}\nroles:\n  - name: bench-one\n    jig: script\n    template: {bench: {state: /var/lib/node-state}}\n",
    );
    for i in 1..=chain {
        doc.push_str(&format!(
            "  - name: bench-c{i}\n    jig: script\n    flags: [implicit]\n    template: {{bench: {{state: /var/lib/node-state}}}}\n"
        ));
        if i > 1 {
            doc.push_str(&format!("    requires: [bench-c{}]\n", i - 1));
        }
    }
    doc
}

const SCRIPT: &str = "#!/usr/bin/env bash\nprintf '%s\\n' \"$CROWBAR_NODE\" >\"$(read_attribute bench/state)/$CROWBAR_ROLE\"\n";

async fn bench(args: &Args, pg: &ManagedPostgres, tmp: &Path) -> anyhow::Result<()> {
    let n = args.nodes;
    let pool = db::connect(pg.url().expose(), 32).await?;
    db::migrate(&pool).await?;
    crowbar::barclamps::import_shipped(&pool).await?;
    let bdir = tmp.join("barclamps");
    std::fs::create_dir_all(&bdir)?;
    std::fs::write(bdir.join("bench.yml"), barclamp(args.chain))?;
    let mut roles = vec!["bench-one".to_string()];
    roles.extend((1..=args.chain).map(|i| format!("bench-c{i}")));
    for role in &roles {
        let rdir = bdir.join("bench/roles").join(role);
        std::fs::create_dir_all(&rdir)?;
        std::fs::write(rdir.join("10-write.sh"), SCRIPT)?;
    }
    crowbar::barclamps::import_dir(&pool, &bdir).await?;

    let key = ClientKey::load_or_create(&tmp.join("ssh"))?;
    let started = Instant::now();
    let public = key.public_openssh();
    let rig = tokio::task::spawn_blocking(move || NodeRig::start(n, &public)).await?;
    println!(
        "rig: {n} namespace nodes with sshd in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let names: Vec<String> = rig.nodes().iter().map(|n| n.name().to_string()).collect();
    let fleet: Vec<_> = rig
        .nodes()
        .iter()
        .map(|n| (n.name().to_string(), n.addr()))
        .collect();
    let access = support::register_and_contact(&pool, &fleet, &key).await?;

    let shutdown = CancellationToken::new();
    let settings = AnnealerSettings {
        run_cap: (n as i64).max(10),
        ..AnnealerSettings::default()
    };
    let engine = Engine::start(
        pool.clone(),
        &settings,
        JigRegistry::builtin().with(ScriptJig::new(access.clone())),
        Hooks::default(),
        Duration::from_secs(5),
        shutdown.clone(),
    );

    // 1. crowbar, one script role on every node
    let crowbar_one = support::converge(&pool, &names, "one", "bench-one").await?;
    check_files(&rig, "bench-one")?;
    println!(
        "crowbar   1 role  x {n} nodes: {:>7.2}s",
        crowbar_one.as_secs_f64()
    );

    // 2. Ansible, the same work: ad-hoc raw task, forks = N
    let ansible = ansible_raw(&rig, &key, tmp)?;
    check_files(&rig, "ansible-one")?;
    println!(
        "ansible   1 task  x {n} nodes: {:>7.2}s (raw, forks={n})",
        ansible.as_secs_f64()
    );

    // 3. plain ssh fan-out
    let ssh = ssh_fanout(&rig, &key)?;
    check_files(&rig, "ssh-one")?;
    println!("ssh fan-out       x {n} nodes: {:>7.2}s", ssh.as_secs_f64());

    // 4. crowbar, a chain of roles on every node (fresh connections: the cache is emptied)
    for node in rig.nodes() {
        access.forget(support::node_id(&pool, node.name()).await?);
    }
    let chain =
        support::converge(&pool, &names, "chain", &format!("bench-c{}", args.chain)).await?;
    check_files(&rig, &format!("bench-c{}", args.chain))?;
    println!(
        "crowbar   {}-role chain x {n} nodes: {:>7.2}s ({:.2}s per role)",
        args.chain,
        chain.as_secs_f64(),
        chain.as_secs_f64() / args.chain as f64
    );

    println!(
        "ratios: crowbar/ansible {:.2} (goal <= 0.50), crowbar/ssh {:.2}, ansible/ssh {:.2}",
        crowbar_one.as_secs_f64() / ansible.as_secs_f64(),
        crowbar_one.as_secs_f64() / ssh.as_secs_f64(),
        ansible.as_secs_f64() / ssh.as_secs_f64()
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), engine.tracker.wait()).await;
    drop(rig);
    pool.close().await;
    Ok(())
}

fn check_files(rig: &NodeRig, file: &str) -> anyhow::Result<()> {
    for node in rig.nodes() {
        let path = node.state_dir().join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} did not write {file}", node.name()))?;
        if text.trim() != node.name() {
            bail!("{}: {file} holds {text:?}", node.name());
        }
    }
    Ok(())
}

fn ansible_raw(rig: &NodeRig, key: &ClientKey, tmp: &Path) -> anyhow::Result<Duration> {
    let dir = tmp.join("ansible");
    std::fs::create_dir_all(&dir)?;
    let mut inventory = String::from("[nodes]\n");
    for node in rig.nodes() {
        inventory.push_str(&format!("{} ansible_host={}\n", node.name(), node.addr()));
    }
    std::fs::write(dir.join("inventory"), inventory)?;
    let forks = rig.nodes().len().to_string();
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(support::STEP_LIMIT.as_secs().to_string())
        .args(["ansible", "nodes", "-i"])
        .arg(dir.join("inventory"))
        .args(["-f", &forks, "-u", "root", "--private-key"])
        .arg(key.path())
        .args(["-m", "raw", "-a"])
        .arg(format!("hostname > {NODE_STATE_MOUNT}/ansible-one"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("cp"))
        .env("ANSIBLE_SSH_ARGS", "-o UserKnownHostsFile=/dev/null")
        .env("LC_ALL", "C.UTF-8")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!("ansible failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

fn ssh_fanout(rig: &NodeRig, key: &ClientKey) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let children: Vec<_> = rig
        .nodes()
        .iter()
        .map(|node| {
            Command::new("timeout")
                .arg(support::STEP_LIMIT.as_secs().to_string())
                .arg("ssh")
                .arg("-i")
                .arg(key.path())
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "LogLevel=ERROR",
                ])
                .arg(format!("root@{}", node.addr()))
                .arg(format!("hostname > {NODE_STATE_MOUNT}/ssh-one"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut child in children {
        if !child.wait()?.success() {
            bail!("an ssh failed");
        }
    }
    Ok(started.elapsed())
}
