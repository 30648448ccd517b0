//! The namespace-node rig and crowbar's SSH client against real sshd nodes.

use std::{
    fs,
    time::{Duration, Instant},
};

use crowbar::ssh::{
    ClientKey, ExitStatus, HostKeyPin, SshClient, SshError, SshTimeouts, fingerprint,
};
use tempfile::TempDir;

use crate::support::nodes::{
    MAX_NODES, NODE_STATE_MOUNT, NodeRig, RigFootprint, RigNodeExt, assert_gone,
};

/// A fresh client key in its own directory (kept alive by the returned guard).
fn client_key() -> (TempDir, ClientKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = ClientKey::load_or_create(&dir.path().join("ssh")).unwrap();
    (dir, key)
}

fn timeouts(connect: u64, command: u64) -> SshTimeouts {
    SshTimeouts {
        connect: Duration::from_secs(connect),
        auth: Duration::from_secs(10),
        command: Duration::from_secs(command),
    }
}

#[tokio::test]
async fn nodes_answer_ssh_with_their_own_name_and_key_and_leave_nothing_behind() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(5, &key.public_openssh());
    let client = SshClient::new(key, SshTimeouts::default());

    let sessions = futures::future::join_all(
        rig.nodes()
            .iter()
            .map(|node| client.connect(node.ssh_addr(), HostKeyPin::FirstUse)),
    )
    .await;
    for (node, session) in rig.nodes().iter().zip(sessions) {
        let session = session.unwrap_or_else(|e| panic!("{}: {e}", node.name()));
        assert_eq!(
            fingerprint(session.host_key()),
            fingerprint(node.host_key()),
            "{} presented another host key than its sshd was given",
            node.name()
        );

        // One session, several commands.
        let out = session.exec("hostname", None).await.unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout_lossy().trim(), node.name());

        let marker = format!("written through {}", node.name());
        let out = session
            .exec(
                &format!("cat > {NODE_STATE_MOUNT}/marker && echo done && echo warn >&2"),
                Some(marker.as_bytes()),
            )
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout, b"done\n");
        assert_eq!(out.stderr, b"warn\n");
        assert_eq!(
            fs::read_to_string(node.state_dir().join("marker")).unwrap(),
            marker,
            "the node's {NODE_STATE_MOUNT} is its own state dir"
        );

        // The command reaches the node's shell unchanged, quotes and all.
        let out = session
            .exec(r#"echo "it's $((1 + 2))" && test -n "$CROWBAR_RUN""#, None)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"it's 3\n", "{out:?}");

        let out = session.exec("exit 3", None).await.unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));
        assert!(!out.success());
        session.close().await;
    }

    let eth0 = rig.node(2).exec_in_netns("ip -4 -o addr show dev eth0");
    assert!(
        String::from_utf8_lossy(&eth0.stdout).contains(&format!("{}/26", rig.node(2).addr())),
        "{eth0:?}"
    );

    // The state dirs were bind-mounted in the nodes' private mount namespaces only.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("/crowbar-rig-{}/", rig.id())),
        "a node's bind mount leaked into the test's mount namespace"
    );

    let footprint = rig.footprint();
    assert_eq!(footprint.sshd_pids.len(), 5);
    drop(rig);
    assert_gone(&footprint);
}

#[tokio::test]
async fn a_full_rig_of_61_nodes_answers_over_ssh() {
    let (_keys, key) = client_key();
    let started = Instant::now();
    let rig = NodeRig::start(MAX_NODES, &key.public_openssh());
    eprintln!("{MAX_NODES} nodes ready in {:?}", started.elapsed());
    let client = SshClient::new(key, SshTimeouts::default());
    let names = futures::future::join_all(rig.nodes().iter().map(|node| {
        let client = client.clone();
        async move {
            let pin = HostKeyPin::Expect(node.host_key().clone());
            let session = client.connect(node.ssh_addr(), pin).await?;
            let out = session.exec("hostname", None).await?;
            session.close().await;
            Ok::<_, SshError>(out.stdout_lossy().trim().to_string())
        }
    }))
    .await;
    for (node, name) in rig.nodes().iter().zip(names) {
        assert_eq!(name.unwrap(), node.name());
    }
    let footprint = rig.footprint();
    drop(rig);
    assert_gone(&footprint);
}

#[test]
fn a_rig_is_torn_down_when_its_test_panics() {
    let (_keys, key) = client_key();
    let public = key.public_openssh();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rig = NodeRig::start(2, &public);
        tx.send(rig.footprint()).unwrap();
        panic!("a failing test with its rig up");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let footprint = rx.recv().unwrap();
    assert_eq!(footprint.sshd_pids.len(), 2);
    assert_gone(&footprint);
}

#[tokio::test]
async fn another_host_key_than_the_pinned_one_is_refused_before_authenticating() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    let node = rig.node(1);
    let client = SshClient::new(key, SshTimeouts::default());
    let (_other_dir, other) = client_key();
    let wrong = other.public_key().clone();

    let err = client
        .connect(node.ssh_addr(), HostKeyPin::Expect(wrong.clone()))
        .await
        .expect_err("a wrong pin must fail");
    match &err {
        SshError::HostKeyChanged {
            addr,
            expected,
            presented,
        } => {
            assert_eq!(*addr, node.ssh_addr());
            assert_eq!(*expected, fingerprint(&wrong));
            assert_eq!(*presented, fingerprint(node.host_key()));
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    assert!(err.to_string().contains(&node.ssh_addr().to_string()));
    // sshd logs an accepted key before it tells the client: nothing was authenticated.
    assert!(
        !node.sshd_log().contains("Accepted publickey"),
        "{}",
        node.sshd_log()
    );

    // The right pin gets in (and the log shows it does record logins).
    let session = client
        .connect(node.ssh_addr(), HostKeyPin::Expect(node.host_key().clone()))
        .await
        .unwrap();
    assert!(session.exec("true", None).await.unwrap().success());
    session.close().await;
    assert!(node.sshd_log().contains("Accepted publickey for root"));
}

#[tokio::test]
async fn a_killed_sshd_is_reported_as_connection_refused_at_once() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    let node = rig.node(1);
    let client = SshClient::new(key, timeouts(10, 30));

    node.kill_sshd();
    let started = Instant::now();
    let err = client
        .connect(node.ssh_addr(), HostKeyPin::FirstUse)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(err, SshError::ConnectionRefused { addr } if addr == node.ssh_addr()),
        "{err:?}"
    );
    assert!(err.is_unreachable());
    assert!(
        started.elapsed() < client.timeouts().connect / 2,
        "a refusal must not wait for the timeout"
    );

    node.start_sshd().expect("start sshd");
    let session = client
        .connect(node.ssh_addr(), HostKeyPin::Expect(node.host_key().clone()))
        .await
        .unwrap();
    assert!(session.exec("true", None).await.unwrap().success());
}

#[tokio::test]
async fn a_stopped_sshd_is_reported_as_a_handshake_timeout() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    let node = rig.node(1);
    // Tight for the fault, patient for the recovery (the machine may be busy).
    let client = SshClient::new(key.clone(), timeouts(1, 30));
    let patient = SshClient::new(key, SshTimeouts::default());

    node.pause_sshd();
    let started = Instant::now();
    let err = client
        .connect(node.ssh_addr(), HostKeyPin::FirstUse)
        .await
        .expect_err("a stopped sshd does not answer");
    let took = started.elapsed();
    assert!(
        matches!(err, SshError::HandshakeTimeout { addr, .. } if addr == node.ssh_addr()),
        "{err:?}"
    );
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "did not honour the timeout: {took:?}"
    );

    node.resume_sshd();
    let session = patient
        .connect(node.ssh_addr(), HostKeyPin::Expect(node.host_key().clone()))
        .await
        .unwrap();
    assert!(session.exec("true", None).await.unwrap().success());
}

#[tokio::test]
async fn an_unplugged_node_is_reported_as_a_connect_timeout() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    let node = rig.node(1);
    // Tight for the fault, patient for the recovery (the machine may be busy).
    let client = SshClient::new(key.clone(), timeouts(1, 30));
    let patient = SshClient::new(key, SshTimeouts::default());

    node.link_down();
    let err = client
        .connect(node.ssh_addr(), HostKeyPin::FirstUse)
        .await
        .expect_err("the node is unplugged");
    assert!(
        matches!(err, SshError::ConnectTimeout { addr, .. } if addr == node.ssh_addr()),
        "{err:?}"
    );

    node.link_up();
    let session = patient
        .connect(node.ssh_addr(), HostKeyPin::Expect(node.host_key().clone()))
        .await
        .unwrap();
    assert!(session.exec("true", None).await.unwrap().success());
}

#[tokio::test]
async fn a_command_over_its_timeout_is_killed_and_the_session_stays_usable() {
    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    let node = rig.node(1);
    let client = SshClient::new(key, timeouts(5, 1));
    let session = client
        .connect(node.ssh_addr(), HostKeyPin::Expect(node.host_key().clone()))
        .await
        .unwrap();

    let started = Instant::now();
    let err = session
        .exec("sleep 10", None)
        .await
        .expect_err("sleep 10 overruns a 1 s timeout");
    let took = started.elapsed();
    assert!(
        matches!(err, SshError::CommandTimeout { addr, after } if addr == node.ssh_addr() && after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "sleep 10 was not cut short: {took:?}"
    );

    // The command was killed on the node, not left running.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sleeping: Vec<_> = node
            .processes()
            .into_iter()
            .filter(|(_, comm)| comm == "sleep")
            .collect();
        if sleeping.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running on the node: {sleeping:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = session.exec("echo still here", None).await.unwrap();
    assert_eq!(out.stdout, b"still here\n");
    session.close().await;
}

/// Set in the environment of the child test process that crashes with its rig up.
const CRASH_CHILD: &str = "CROWBAR_TEST_RIG_CRASH_CHILD";

/// Half of the next test: in a child process it starts a rig, reports what it created and
/// dies without tearing down. Run normally, it does nothing.
#[test]
fn crashing_child_process() {
    if std::env::var_os(CRASH_CHILD).is_none() {
        return;
    }
    let (_keys, key) = client_key();
    let rig = NodeRig::start(2, &key.public_openssh());
    let f = rig.footprint();
    println!(
        "FOOTPRINT\t{}\t{}\t{}\t{}",
        f.netns.join(","),
        f.links.join(","),
        f.sshd_pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        f.dir.display()
    );
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    std::process::abort();
}

#[test]
fn the_next_rig_removes_what_a_killed_test_process_left_behind() {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "rig_smoke::crashing_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD, "1")
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!child.status.success(), "the child was meant to abort");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("FOOTPRINT\t").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no footprint from the child: {stdout}"));
    let fields: Vec<&str> = line.split('\t').collect();
    let list = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
    let leftover = RigFootprint {
        netns: list(fields[0]),
        links: list(fields[1]),
        sshd_pids: fields[2].split(',').map(|p| p.parse().unwrap()).collect(),
        dir: fields[3].into(),
    };
    assert!(
        leftover.dir.exists(),
        "the child died without teardown, its files must still be there"
    );

    let (_keys, key) = client_key();
    let rig = NodeRig::start(1, &key.public_openssh());
    // The orphaned sshds were killed; nobody reaps orphans here, so zombies may remain.
    for pid in &leftover.sshd_pids {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit(") ").next().unwrap_or("").chars().next();
        assert!(
            matches!(state, None | Some('Z')),
            "orphaned sshd {pid} still runs"
        );
    }
    assert_gone(&RigFootprint {
        sshd_pids: Vec::new(),
        ..leftover
    });
    drop(rig);
}
