//! The ansible jig on namespace nodes with real sshd and the real ansible-playbook
//! (`.venv/`, `scripts/python-tools`): ordering across nodes through the graph, variables
//! and wall, hostile values that stay data, a failing task, retry, batching of a cohort
//! into one ansible-playbook with per-host outcomes, and a changed host key refused.
//! Each node's /etc is its own (an overlay): what the plays write there is read back from
//! the node's upper layer, and this machine's /etc is checked untouched.

use std::{path::PathBuf, time::Duration};

use crowbar::{
    hooks::Hooks,
    jig::{AnsibleJig, AnsibleSettings},
};
use serde_json::{Value, json};

use crate::support::{
    python,
    site::{Site, converged, site_settings, wait_for},
    world,
};

const CONVERGE: Duration = Duration::from_secs(120);

const BARCLAMP: &str = r#"
barclamp: {name: ans, parent: core, description: "ansible jig tests"}
roles:
  - name: ans-server
    jig: ansible
    description: writes a server file; publishes its address
    timeout: 120
    template: {ans: {port: 8080}}
    attribs:
      - {name: ans-server-address, map: ans/server, default: null, description: "x"}
  - name: ans-client
    jig: ansible
    description: writes the server's address and a value it was given
    requires: [ans-server]
    wants-attribs: [ans-server-address]
    timeout: 120
    template: {ans: {note: ""}}
  - name: ans-solo
    jig: ansible
    description: says which hosts its play ran on; fails when asked to
    timeout: 120
    template: {ans: {fail: false}}
"#;

const SERVER: &str = r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: the directory
      ansible.builtin.file:
        path: /etc/crowbar-ans
        state: directory
        mode: "0755"
    - name: the server's file
      ansible.builtin.copy:
        dest: /etc/crowbar-ans/server.conf
        content: "port={{ ans.port }}\n"
        mode: "0644"
    - name: publish the address
      ansible.builtin.set_fact:
        crowbar_wall: {ans: {server: "{{ crowbar.node.address }}"}}
"#;

const CLIENT: &str = r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: the directory
      ansible.builtin.file:
        path: /etc/crowbar-ans
        state: directory
        mode: "0755"
    - name: the client's file
      ansible.builtin.copy:
        dest: /etc/crowbar-ans/client.conf
        content: "server={{ ans.server }}\n"
        mode: "0644"
    - name: a value it was given, as it was given
      ansible.builtin.copy:
        dest: /etc/crowbar-ans/note
        content: "{{ ans.note }}"
        mode: "0644"
"#;

const SOLO: &str = r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: asked to fail
      ansible.builtin.fail:
        msg: "failing on purpose on {{ inventory_hostname }}"
      when: ans.fail | bool
    - name: the hosts of this play
      ansible.builtin.set_fact:
        crowbar_wall: {hosts: "{{ ansible_play_hosts_all | sort | join(',') }}", pid: "{{ lookup('env', 'CROWBAR_RESULTS') }}"}
"#;

/// The site with the `ans` barclamp imported and the annealer running the ansible jig.
async fn site(nodes: usize) -> (Site, tempfile::TempDir) {
    site_with(nodes, python::tool("ansible-playbook")).await
}

/// [`site`] with `program` as ansible-playbook.
async fn site_with(nodes: usize, program: PathBuf) -> (Site, tempfile::TempDir) {
    let mut site = Site::new(nodes, site_settings(Duration::ZERO)).await;
    // first contact: every node alive, its host key pinned
    for outcome in site.prober().round().await.unwrap() {
        assert!(outcome.alive, "{outcome:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ans.yml"), BARCLAMP).unwrap();
    let plays = dir.path().join("ans/ansible");
    std::fs::create_dir_all(&plays).unwrap();
    for (role, play) in [
        ("ans-server", SERVER),
        ("ans-client", CLIENT),
        ("ans-solo", SOLO),
    ] {
        std::fs::write(plays.join(format!("{role}.yml")), play).unwrap();
    }
    crowbar::barclamps::import_dir(&site.pool, dir.path())
        .await
        .expect("the ans barclamp imports");
    let settings = AnsibleSettings {
        ansible_playbook: program,
        ansible_batch_window: Duration::from_millis(500),
        ..AnsibleSettings::default()
    };
    let access = site.access.clone();
    site.start_with(
        move |jigs| jigs.with(AnsibleJig::new(access, settings).unwrap()),
        Hooks::default(),
    );
    (site, dir)
}

/// A file the node wrote under its own /etc (its overlay's upper layer).
fn node_etc(site: &Site, i: usize, path: &str) -> Option<String> {
    let file: PathBuf = site.rig.node(i).dir().join("overlay/etc/upper").join(path);
    std::fs::read_to_string(file).ok()
}

async fn bind(site: &Site, i: usize, role: &str, data: Option<Value>) {
    world::try_bind(&site.pool, &site.name(i), role, "d", data.as_ref())
        .await
        .unwrap_or_else(|e| panic!("bind {role} on node {i}: {e}"));
}

/// Waits until nothing is runnable or running (BLOCKED under an ERROR stays so).
async fn settled(site: &Site) {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let open: Vec<(String, String, i16, String)> = sqlx::query_as(
            "SELECT n.name, r.name, nr.state, nr.runlog FROM noderoles nr
               JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
              WHERE nr.state IN (1, 2)",
        )
        .fetch_all(&site.pool)
        .await
        .unwrap();
        if open.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            let all = site.noderoles().await;
            panic!("not settled within {CONVERGE:?}: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plays_run_in_graph_order_with_variables_walls_and_hostile_values_as_data() {
    let (mut site, _dir) = site(2).await;
    let marker = std::env::temp_dir().join(format!("crowbar-ansible-pwned-{}", std::process::id()));
    let hostile = format!(
        "{{{{ lookup('pipe', 'touch {m}') }}}} $(touch {m}) `touch {m}`; {{% raw %}}'\"\n",
        m = marker.display()
    );
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "ans-server", None).await;
    bind(
        &site,
        2,
        "ans-client",
        Some(json!({"ans": {"note": hostile}, "ansible_ssh_common_args": "-o ProxyCommand=false"})),
    )
    .await;
    world::commit(&site.pool, "d").await;
    settled(&site).await;
    for (i, role) in [(1, "ans-server"), (2, "ans-client")] {
        let (state, _, log, _) = site.noderole(i, role).await;
        assert_eq!(state, 0, "{role}: {log}");
    }

    let server_addr = site.rig.node(1).addr().to_string();
    assert_eq!(
        node_etc(&site, 1, "crowbar-ans/server.conf").unwrap(),
        "port=8080\n"
    );
    assert_eq!(
        node_etc(&site, 2, "crowbar-ans/client.conf").unwrap(),
        format!("server={server_addr}\n"),
        "the client got the server's wall through its wanted attrib"
    );
    assert_eq!(
        node_etc(&site, 2, "crowbar-ans/note").unwrap(),
        hostile,
        "the value was written as given"
    );
    assert!(!marker.exists(), "a value was run as code");
    assert!(
        !std::path::Path::new("/etc/crowbar-ans").exists(),
        "this machine's /etc is not the node's"
    );

    let (_, _, log, wall) = site.noderole(1, "ans-server").await;
    assert_eq!(wall, json!({"ans": {"server": server_addr}}), "{log}");
    assert!(log.contains("changed: the server's file"), "{log}");
    let (_, _, log, _) = site.noderole(2, "ans-client").await;
    assert!(
        log.contains(
            "left out of the play's variables (Ansible's own names): ansible_ssh_common_args"
        ),
        "{log}"
    );
    // the client ran after the server had finished
    let server = site.run_times(&site.name(1), "ans-server").await;
    let client = site.run_times(&site.name(2), "ans-client").await;
    assert_eq!((server.len(), client.len()), (1, 1));
    assert!(client[0].0 >= server[0].1, "{server:?} {client:?}");

    // running it again changes nothing on the node
    let id: i64 = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id WHERE r.name = 'ans-server'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    let mut tx = site.pool.begin().await.unwrap();
    crowbar::db::node_roles::retry(&mut tx, id, &world::admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for(CONVERGE, "the server ran again", || async {
        site.run_times(&site.name(1), "ans-server").await.len() == 2 && converged(&site.pool).await
    })
    .await;
    let (_, _, log, _) = site.noderole(1, "ans-server").await;
    assert!(log.contains("0 task(s) changed"), "{log}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cohort_shares_one_play_and_each_host_keeps_its_own_outcome() {
    let (mut site, _dir) = site(3).await;
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "ans-solo", None).await;
    bind(&site, 2, "ans-solo", Some(json!({"ans": {"fail": true}}))).await;
    bind(&site, 3, "ans-solo", None).await;
    world::commit(&site.pool, "d").await;
    settled(&site).await;

    let mut all = [site.name(1), site.name(2), site.name(3)];
    all.sort();
    let (state1, _, log1, wall1) = site.noderole(1, "ans-solo").await;
    let (state2, _, log2, _) = site.noderole(2, "ans-solo").await;
    let (state3, _, log3, wall3) = site.noderole(3, "ans-solo").await;
    assert_eq!((state1, state3), (0, 0), "{log1}\n{log3}");
    assert_eq!(
        state2, -1,
        "only the failing host's noderole is in ERROR: {log2}"
    );
    assert!(
        log2.contains(&format!(
            "task `asked to fail` failed on {}: failing on purpose on {}",
            site.name(2),
            site.name(2)
        )),
        "{log2}"
    );
    // one ansible-playbook ran the three hosts: the same play, the same results file
    assert_eq!(wall1["hosts"], all.join(","), "{wall1}");
    assert_eq!(wall1, wall3);
    // three runs all the same, each recorded for its own noderole
    let records: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM run_records rr JOIN roles r ON r.id = rr.role_id WHERE r.name = 'ans-solo'",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(records, 3);

    // fixed and retried: it converges
    let id: i64 = sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN roles r ON r.id = nr.role_id
           JOIN nodes n ON n.id = nr.node_id WHERE r.name = 'ans-solo' AND n.name = $1",
    )
    .bind(site.name(2))
    .fetch_one(&site.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE noderoles SET committed_data = '{\"ans\": {\"fail\": false}}' WHERE id = $1",
    )
    .bind(id)
    .execute(&site.pool)
    .await
    .unwrap();
    let mut tx = site.pool.begin().await.unwrap();
    crowbar::db::node_roles::retry(&mut tx, id, &world::admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for(CONVERGE, "the retried noderole converges", || async {
        converged(&site.pool).await
    })
    .await;
    let (_, _, _, wall2) = site.noderole(2, "ans-solo").await;
    assert_eq!(
        wall2["hosts"],
        site.name(2),
        "a retry alone is a batch of one"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_host_key_refuses_the_play() {
    let (mut site, dir) = site(1).await;
    site.pin_another_host_key(1, dir.path()).await;
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "ans-server", None).await;
    world::commit(&site.pool, "d").await;
    wait_for(Duration::from_secs(30), "the node is refused", || async {
        !site.alive(1).await && site.noderole(1, "ans-server").await.0 != 2
    })
    .await;
    let history = site.history(1).await;
    let refusal = history.last().unwrap();
    assert_eq!(refusal.0, "jig:ansible");
    assert!(refusal.1.starts_with("host key changed"), "{history:?}");
    assert_eq!(
        node_etc(&site, 1, "crowbar-ans/server.conf"),
        None,
        "nothing ran"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_ansible_only_ansible_roles_fail_and_say_what_to_do() {
    let missing = PathBuf::from("/nonexistent/ansible-playbook");
    let status = crowbar::jig::ansible::installed(&AnsibleSettings {
        ansible_playbook: missing.clone(),
        ..AnsibleSettings::default()
    })
    .await;
    assert!(
        status
            .as_ref()
            .is_err_and(|why| why.contains("Install ansible-core")),
        "{status:?}"
    );
    // an ERROR freezes its node (SEMANTICS.md §2): the script role gets a node of its own
    let (mut site, _dir) = site_with(2, missing).await;
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "ans-solo", None).await;
    bind(&site, 2, "rig-solo", None).await;
    world::commit(&site.pool, "d").await;
    settled(&site).await;
    let (state, _, log, _) = site.noderole(1, "ans-solo").await;
    assert_eq!(state, -1, "{log}");
    assert!(
        log.contains("/nonexistent/ansible-playbook cannot be run")
            && log.contains("install ansible-core"),
        "{log}"
    );
    let (state, _, log, _) = site.noderole(2, "rig-solo").await;
    assert_eq!(state, 0, "a script role is not held up: {log}");
    assert!(site.alive(1).await, "the node is not blamed");
    site.stop().await;
}

#[tokio::test]
async fn a_daemon_without_ansible_says_so_at_start_naming_the_roles_that_will_fail() {
    let mut daemon = crate::support::daemon::Daemon::start(
        crate::support::daemon::DaemonOptions::default()
            .arg("--ansible-playbook")
            .arg("/nonexistent/ansible-playbook"),
    )
    .await;
    let log = daemon.stderr();
    assert!(
        log.contains("/nonexistent/ansible-playbook cannot be run")
            && log.contains("Install ansible-core"),
        "{log}"
    );
    // the shipped base barclamp's roles, just imported
    let warning = log
        .lines()
        .find(|l| l.contains("cannot be run"))
        .unwrap_or_default();
    assert!(
        warning.contains("ntp-client") && warning.contains("network-interfaces"),
        "{warning}"
    );
    assert_eq!(
        daemon.get("/readyz").await.status(),
        200,
        "it serves anyway"
    );
    daemon.stop().await;
}
