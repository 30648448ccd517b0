//! One Ansible role on N real namespace nodes (sshd each, their own /etc): crowbar's ansible
//! jig with cohort batching, next to `ansible-playbook` run directly with forks = N on the
//! same nodes in the same run (the baseline), and crowbar again with batching off (one
//! ansible-playbook per node, `--ansible-batch-max 1`) to show what batching buys.
//!
//!     cargo bench --bench ansible -- [--nodes 50] [--repeat 3]
//!
//! Needs root (network namespaces, raw ICMP), openssh-server and `.venv/bin/ansible-playbook`
//! (`scripts/python-tools`). The play is the same everywhere (a directory, a file of the
//! host's name and the run's, a line in a list: every run changes something) and every tool checks host keys against
//! a known_hosts of the pinned keys. Every measurement starts cold: no SSH connection is
//! open when its clock starts (each has its own control directory). crowbar's clock runs
//! from the deployment's commit until every noderole is ACTIVE; the direct run's from start
//! to exit. The rig, the PostgreSQL cluster and every temporary file are removed at the end.

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/nodes.rs"]
mod nodes;

#[allow(dead_code)]
#[path = "../tests/it/support/python.rs"]
mod python;

mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;
use crowbar::{
    annealer::{AnnealerSettings, Engine},
    db,
    hooks::Hooks,
    jig::{AnsibleJig, AnsibleSettings, JigRegistry},
    pg::ManagedPostgres,
    ssh::ClientKey,
};
use nodes::NodeRig;
use tokio_util::sync::CancellationToken;

const PLAY: &str = r#"- hosts: all
  gather_facts: false
  tasks:
    - name: the directory
      ansible.builtin.file:
        path: /etc/bench
        state: directory
        mode: "0755"
    - name: a file of this host
      ansible.builtin.copy:
        dest: /etc/bench/host.conf
        content: "name={{ inventory_hostname }} run={{ crowbar.noderole.role }}\n"
        mode: "0644"
    - name: a line in a list
      ansible.builtin.lineinfile:
        path: /etc/bench/list
        line: "{{ ansible_host }} {{ crowbar.noderole.role }}"
        create: true
        mode: "0644"
"#;

fn main() -> anyhow::Result<()> {
    if !support::under_cargo_bench() {
        return Ok(());
    }
    let nodes: usize = support::flag("--nodes", 50);
    let repeat: usize = support::flag("--repeat", 3);
    if std::env::var_os("RUST_LOG").is_some() {
        crowbar::telemetry::init(crowbar::telemetry::LogFormat::Text);
    }
    std::fs::create_dir_all("/run/sshd")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(support::with_postgres(|pg, dir| async move {
            let result = bench(&pg, &dir, nodes, repeat).await;
            (pg, result)
        }))
}

fn barclamp(repeat: usize) -> String {
    let mut doc = String::from("barclamp: {name: bench, parent: core}\nroles:\n");
    for r in 1..=repeat {
        for kind in ["batched", "single"] {
            doc.push_str(&format!(
                "  - {{name: bench-{kind}-{r}, jig: ansible, timeout: 600}}\n"
            ));
        }
    }
    doc
}

async fn bench(pg: &ManagedPostgres, tmp: &Path, n: usize, repeat: usize) -> anyhow::Result<()> {
    let program = python::tool("ansible-playbook");
    let pool = db::connect(pg.url().expose(), 32).await?;
    db::migrate(&pool).await?;
    crowbar::barclamps::import_shipped(&pool).await?;
    let bdir = tmp.join("barclamps");
    std::fs::create_dir_all(bdir.join("bench/ansible"))?;
    std::fs::write(bdir.join("bench.yml"), barclamp(repeat))?;
    for r in 1..=repeat {
        for kind in ["batched", "single"] {
            std::fs::write(
                bdir.join(format!("bench/ansible/bench-{kind}-{r}.yml")),
                PLAY,
            )?;
        }
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

    let (mut direct, mut batched, mut single) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=repeat {
        let took = ansible_direct(&program, &rig, &key, &tmp.join(format!("direct-{r}")))?;
        println!(
            "[{r}] ansible-playbook, forks={n}:       {:>7.2}s",
            took.as_secs_f64()
        );
        direct.push(took);

        for (kind, batch_max, times) in [
            ("batched", n as u32, &mut batched),
            ("single", 1, &mut single),
        ] {
            // a fresh jig each time: its SSH connections start cold
            let settings = AnsibleSettings {
                ansible_playbook: program.clone(),
                ansible_batch_max: batch_max,
                ..AnsibleSettings::default()
            };
            let shutdown = CancellationToken::new();
            let engine = Engine::start(
                pool.clone(),
                &AnnealerSettings {
                    run_cap: n as i64,
                    ..AnnealerSettings::default()
                },
                JigRegistry::builtin().with(AnsibleJig::new(access.clone(), settings)?),
                Hooks::default(),
                Duration::from_secs(5),
                shutdown.clone(),
            );
            for node in rig.nodes() {
                access.forget(support::node_id(&pool, node.name()).await?);
            }
            let role = format!("bench-{kind}-{r}");
            let took = support::converge(&pool, &names, &role, &role).await?;
            println!(
                "[{r}] crowbar, {kind:<7} (batch max {batch_max:>2}): {:>7.2}s",
                took.as_secs_f64()
            );
            times.push(took);
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), engine.tracker.wait()).await;
        }
    }
    check_files(&rig)?;
    let (direct, batched, single) = (median(direct), median(batched), median(single));
    println!(
        "median of {repeat}: direct {:.2}s, crowbar batched {:.2}s, crowbar one process per node {:.2}s",
        direct.as_secs_f64(),
        batched.as_secs_f64(),
        single.as_secs_f64()
    );
    println!(
        "ratios: batched/direct {:.2} (goal <= 1.20), single/direct {:.2}, single/batched {:.2}",
        batched.as_secs_f64() / direct.as_secs_f64(),
        single.as_secs_f64() / direct.as_secs_f64(),
        single.as_secs_f64() / batched.as_secs_f64()
    );
    drop(rig);
    pool.close().await;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Every node holds what the play writes, in its own /etc.
fn check_files(rig: &NodeRig) -> anyhow::Result<()> {
    for node in rig.nodes() {
        let path = node.dir().join("overlay/etc/upper/bench/host.conf");
        let text = std::fs::read_to_string(&path)?;
        if !text.starts_with(&format!("name={} run=", node.name())) {
            bail!("{}: {} holds {text:?}", node.name(), path.display());
        }
    }
    Ok(())
}

/// The same play with ansible-playbook, forks = N, host keys checked against the rig's.
fn ansible_direct(
    program: &Path,
    rig: &NodeRig,
    key: &ClientKey,
    dir: &Path,
) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let mut inventory = String::from("[nodes]\n");
    let mut known = String::new();
    for node in rig.nodes() {
        inventory.push_str(&format!("{} ansible_host={}\n", node.name(), node.addr()));
        known.push_str(&format!("{} {}\n", node.addr(), node.host_key_openssh()));
    }
    std::fs::write(dir.join("inventory"), inventory)?;
    std::fs::write(dir.join("known_hosts"), known)?;
    std::fs::write(dir.join("play.yml"), PLAY)?;
    let forks = rig.nodes().len().to_string();
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(support::STEP_LIMIT.as_secs().to_string())
        .arg(program)
        .arg("-i")
        .arg(dir.join("inventory"))
        .args(["-f", &forks, "-u", "root", "--private-key"])
        .arg(key.path())
        .arg(dir.join("play.yml"))
        // what crowbar's input gives the play: each run writes something new
        .arg("-e")
        .arg(format!(
            "{{\"crowbar\": {{\"noderole\": {{\"role\": \"{}\"}}}}}}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("cp"))
        .env("ANSIBLE_PIPELINING", "True")
        .env(
            "ANSIBLE_SSH_ARGS",
            format!(
                "-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={} \
                 -o StrictHostKeyChecking=yes",
                dir.join("known_hosts").display()
            ),
        )
        .env("LC_ALL", "C.UTF-8")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "ansible-playbook failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
