//! The script jig, keys, host-key pinning and aliveness probes on real namespace nodes with
//! real sshd.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    nodes::RigNodeExt,
    site::{Site, converged, finished, site_settings, wait_for},
    world,
};

const CONVERGE: Duration = Duration::from_secs(60);

/// Binds `role` on rig node `i` in deployment `d` (with data) and returns nothing.
async fn bind(site: &Site, i: usize, role: &str, d: &str, data: Option<Value>) {
    world::try_bind(&site.pool, &site.name(i), role, d, data.as_ref())
        .await
        .unwrap_or_else(|e| panic!("bind {role} on node {i}: {e}"));
}

/// The first probe round: pins every host key and marks every node alive.
async fn first_contact(site: &Site) {
    let outcomes = site.prober().round().await.unwrap();
    for o in &outcomes {
        assert!(o.alive && o.changed, "{o:?}");
    }
    assert_eq!(outcomes.len(), site.rig.nodes().len());
}

/// (role, node, started, finished) of every succeeded run.
async fn runs(
    site: &Site,
) -> Vec<(
    String,
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
)> {
    sqlx::query_as(
        "SELECT r.name, n.name, rr.started_at, rr.finished_at FROM run_records rr
           JOIN roles r ON r.id = rr.role_id JOIN nodes n ON n.id = rr.node_id
          WHERE rr.outcome = 'succeeded' ORDER BY rr.finished_at",
    )
    .fetch_all(&site.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_level_chain_converges_in_dependency_order_with_wall_data() {
    // Scheduled probes off: connections seen by sshd are the runs' own.
    let mut site = Site::new(5, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    for node in site.rig.nodes() {
        let pinned: Option<String> =
            sqlx::query_scalar("SELECT host_key FROM nodes WHERE name = $1")
                .bind(node.name())
                .fetch_one(&site.pool)
                .await
                .unwrap();
        let pinned = crowbar::ssh::PublicKey::from_openssh(&pinned.unwrap()).unwrap();
        assert_eq!(pinned.key_data(), node.host_key().key_data());
    }
    world::deployment(&site.pool, "web").await;
    bind(&site, 1, "rig-server", "web", None).await;
    for i in 2..=5 {
        bind(&site, i, "rig-app", "web", None).await;
    }
    world::commit(&site.pool, "web").await;
    site.start();
    wait_for(CONVERGE, "the chain converges", || converged(&site.pool)).await;

    // Order from the run records: server before every client, each client before its app.
    let runs = runs(&site).await;
    assert_eq!(runs.len(), 9, "{runs:?}");
    let run = |role: &str, node: &str| {
        runs.iter()
            .find(|r| r.0 == role && r.1 == node)
            .unwrap_or_else(|| panic!("no run of {role} on {node}"))
            .clone()
    };
    let server = run("rig-server", &site.name(1));
    for i in 2..=5 {
        let client = run("rig-client", &site.name(i));
        let app = run("rig-app", &site.name(i));
        assert!(
            server.3 <= client.2,
            "client on {i} started before the server finished"
        );
        assert!(
            client.3 <= app.2,
            "app on {i} started before its client finished"
        );
    }

    // Order from the files the scripts wrote on the nodes, and the wall data that came back.
    let server_lines = site.order(1);
    assert_eq!(server_lines.len(), 1, "{server_lines:?}");
    assert_eq!(server_lines[0].1, "rig-server");
    let server_at = server_lines[0].0;
    for i in 2..=5 {
        let lines = site.order(i);
        let roles: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
        assert_eq!(
            roles,
            ["rig-client", "rig-app", "rig-app"],
            "node {i}: {lines:?}"
        );
        assert!(lines[0].0 > server_at && lines[1].0 > lines[0].0);
        // the client got the server's wall value (its hostname = its crowbar name)
        assert_eq!(lines[0].3, site.name(1), "node {i}");
        // scripts of one role run in name order
        assert_eq!(lines[2].3, "second");
        // each run's temporary directory is gone
        for line in &lines {
            assert!(line.2.contains("crowbar-run."), "{line:?}");
            assert!(
                !std::path::Path::new(&line.2).exists(),
                "{} was left",
                line.2
            );
        }
        let (_, _, _, wall) = site.noderole(i, "rig-client").await;
        assert_eq!(wall, json!({"rig": {"client": {"server": site.name(1)}}}));
        let (_, _, runlog, wall) = site.noderole(i, "rig-app").await;
        assert_eq!(wall, json!({"rig": {"app": {"ok": true}}}));
        assert!(
            runlog.contains("== 10-app.sh") && runlog.contains("== 20-app-second.sh"),
            "{runlog}"
        );
    }
    let (_, _, runlog, wall) = site.noderole(1, "rig-server").await;
    assert_eq!(wall, json!({"rig": {"server": {"address": site.name(1)}}}));
    assert!(
        runlog.contains(&format!("server up on {}", site.name(1))),
        "{runlog}"
    );

    // One connection per node, reused by consecutive runs (sshd accepted the probe's and one
    // more, though nodes 2..5 ran two roles each).
    for i in 2..=5 {
        let accepted = site
            .rig
            .node(i)
            .sshd_log()
            .matches("Accepted publickey")
            .count();
        assert_eq!(accepted, 2, "node {i}:\n{}", site.rig.node(i).sshd_log());
    }
    assert_eq!(site.access.cached_sessions(), 5);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_during_a_run_kills_the_node_and_it_comes_back() {
    let mut site = Site::new(3, site_settings(Duration::from_millis(700))).await;
    first_contact(&site).await;
    world::deployment(&site.pool, "d").await;
    bind(
        &site,
        1,
        "rig-server",
        "d",
        Some(json!({"rig": {"server_sleep": 4}})),
    )
    .await;
    bind(&site, 2, "rig-client", "d", None).await;
    bind(
        &site,
        3,
        "rig-solo",
        "d",
        Some(json!({"rig": {"solo_sleep": 4}})),
    )
    .await;
    world::commit(&site.pool, "d").await;
    site.start();
    let server = world::id_of(&site.pool, &site.name(1), "rig-server").await;
    wait_for(Duration::from_secs(20), "the server runs", || async {
        sqlx::query_scalar::<_, i16>("SELECT state FROM noderoles WHERE id = $1")
            .bind(server)
            .fetch_one(&site.pool)
            .await
            .unwrap()
            == 2
    })
    .await;
    site.rig.node(1).kill_sshd();
    wait_for(Duration::from_secs(15), "node 1 is marked dead", || async {
        !site.alive(1).await
    })
    .await;
    // §6: the node's noderoles go back to TODO/BLOCKED once the run is judged; the client
    // elsewhere stays BLOCKED; the solo run on node 3 finishes.
    wait_for(Duration::from_secs(20), "the death ripple", || async {
        let (state, count, ..) = site.noderole(1, "rig-server").await;
        let (client, ..) = site.noderole(2, "rig-client").await;
        let (solo, ..) = site.noderole(3, "rig-solo").await;
        (state == 1 || state == 3) && count == 0 && client == 3 && solo == 0
    })
    .await;
    let history = site.history(1).await;
    let death = history
        .iter()
        .find(|h| h.2["alive"]["to"] == json!(false))
        .expect("a death event");
    assert!(death.0 == "probe" || death.0 == "jig:script", "{history:?}");
    assert!(!death.1.is_empty(), "the death has a reason: {history:?}");

    site.rig.node(1).start_sshd().expect("start sshd");
    wait_for(CONVERGE, "everything converges after sshd is back", || {
        converged(&site.pool)
    })
    .await;
    assert!(site.alive(1).await);
    let history = site.history(1).await;
    let back = history.last().unwrap();
    assert_eq!(back.0, "probe");
    assert_eq!(back.2["alive"]["to"], json!(true), "{history:?}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_fails_ping_and_kills_the_node_link_up_converges() {
    let mut site = Site::new(2, site_settings(Duration::from_millis(700))).await;
    first_contact(&site).await;
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "rig-solo", "d", None).await;
    bind(&site, 2, "rig-solo", "d", None).await;
    world::commit(&site.pool, "d").await;
    site.start();
    wait_for(CONVERGE, "converged", || converged(&site.pool)).await;

    site.rig.node(2).link_down();
    wait_for(Duration::from_secs(15), "node 2 is dead", || async {
        !site.alive(2).await
    })
    .await;
    let history = site.history(2).await;
    let death = history.last().unwrap();
    assert_eq!(death.0, "probe");
    // a probe that started just before the link went down fails on SSH instead
    assert!(
        death.1.contains("no ping reply") || death.1.contains("timed out"),
        "{history:?}"
    );
    let outcomes = site.prober().round().await.unwrap();
    let probe = outcomes.iter().find(|o| o.name == site.name(2)).unwrap();
    assert!(!probe.alive && !probe.changed, "{probe:?}");
    assert!(
        probe.reason.as_deref().unwrap().contains("no ping reply"),
        "{probe:?}"
    );
    let (state, ..) = site.noderole(2, "rig-solo").await;
    assert_eq!(state, 1, "the death puts the noderole back to TODO");
    assert!(site.alive(1).await);

    site.rig.node(2).link_up();
    wait_for(CONVERGE, "node 2 converges again", || async {
        converged(&site.pool).await && site.noderole(2, "rig-solo").await.1 == 2
    })
    .await;
    assert_eq!(site.order(2).len(), 2, "the role ran again on node 2");
    assert_eq!(site.order(1).len(), 1, "node 1 was left alone");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_errors_with_its_output_and_blocks_descendants_until_fixed() {
    let mut site = Site::new(2, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "rig-fail", "d", None).await;
    bind(&site, 2, "rig-fail-child", "d", None).await;
    world::commit(&site.pool, "d").await;
    site.start();
    wait_for(Duration::from_secs(30), "rig-fail errors", || async {
        site.noderole(1, "rig-fail").await.0 == -1
    })
    .await;
    let (_, _, runlog, _) = site.noderole(1, "rig-fail").await;
    for wanted in [
        "boom on stdout",
        "boom on stderr",
        "10-fail.sh failed with exit status 3",
        "exit status 3",
    ] {
        assert!(runlog.contains(wanted), "{wanted:?} not in {runlog}");
    }
    assert!(!runlog.contains("never"), "{runlog}");
    assert_eq!(
        site.noderole(2, "rig-fail-child").await.0,
        3,
        "the child is BLOCKED"
    );
    assert!(site.alive(1).await, "a failing script is not a dead node");

    site.write_script("rig-fail", "10-fail.sh", "echo fixed\n");
    world::retry(&site.pool, &site.name(1), "rig-fail")
        .await
        .unwrap();
    wait_for(CONVERGE, "converges after the fix", || {
        converged(&site.pool)
    })
    .await;
    let (_, _, runlog, _) = site.noderole(1, "rig-fail").await;
    assert!(runlog.contains("fixed"), "{runlog}");
    assert_eq!(site.order(2).len(), 1);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_refuses_the_node_until_an_admin_accepts_it() {
    let mut site = Site::new(1, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    let name = site.name(1);
    // The node now presents another key than the pinned one (as after a reinstall).
    let other = site.pin_another_host_key(1, &site.barclamps).await;

    // A run finds out before doing anything.
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "rig-solo", "d", None).await;
    world::commit(&site.pool, "d").await;
    site.start();
    // ... and the refused run has been completed (the noderole leaves TRANSITION)
    wait_for(Duration::from_secs(20), "the node is refused", || async {
        !site.alive(1).await && site.noderole(1, "rig-solo").await.0 != 2
    })
    .await;
    let history = site.history(1).await;
    let refusal = history.last().unwrap();
    assert_eq!(refusal.0, "jig:script");
    assert!(refusal.1.starts_with("host key changed"), "{history:?}");
    assert!(site.order(1).is_empty(), "nothing ran");
    let (state, count, ..) = site.noderole(1, "rig-solo").await;
    assert_eq!((state, count), (1, 0));

    // Probes keep it dead, and it stays so.
    let outcomes = site.prober().round().await.unwrap();
    assert!(!outcomes[0].alive && !outcomes[0].changed, "{outcomes:?}");
    assert!(
        outcomes[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("host key changed")
    );
    assert!(!site.alive(1).await);

    // The admin accepts the new key through the API; the next probe pins it and the node
    // comes back and converges.
    let app =
        crate::support::app::TestApp::on(site.pool.clone(), Some(site.key.public_openssh())).await;
    let shown = app
        .get(&format!("/api/v2/nodes/{name}/host_key"))
        .send()
        .await;
    assert_eq!(shown.body["host_key"], json!(other));
    app.delete(&format!("/api/v2/nodes/{name}/host_key"))
        .send()
        .await;
    let shown = app
        .get(&format!("/api/v2/nodes/{name}/host_key"))
        .send()
        .await;
    assert_eq!(shown.body["host_key"], Value::Null);
    let outcomes = site.prober().round().await.unwrap();
    assert!(outcomes[0].alive && outcomes[0].changed, "{outcomes:?}");
    wait_for(CONVERGE, "converges with the new key", || {
        converged(&site.pool)
    })
    .await;
    let shown = app
        .get(&format!("/api/v2/nodes/{name}/host_key"))
        .send()
        .await;
    let pinned =
        crowbar::ssh::PublicKey::from_openssh(shown.body["host_key"].as_str().unwrap()).unwrap();
    assert_eq!(pinned.key_data(), site.rig.node(1).host_key().key_data());
    // the whole story is in the node's history, through the API
    let events = app
        .get(&format!("/api/v2/nodes/{name}/events"))
        .send()
        .await;
    let kinds: Vec<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"node.host_key_cleared"), "{kinds:?}");
    assert!(kinds.contains(&"node.host_key_pinned"), "{kinds:?}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_attribute_values_run_nowhere() {
    let mut site = Site::new(1, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    let pwned = format!("/tmp/crowbar-pwned-{}", site.rig.id());
    let state_pwned = format!("{}/pwned", crate::support::site::STATE_MOUNT);
    let hostile = json!({
        "subst": format!("$(touch {pwned})"),
        "subst2": format!("$(touch {state_pwned})"),
        "backticks": "`id`",
        "quote": "'; rm -rf / #",
        "dquote": "\"; touch /tmp/x; \"",
        "newline": "one\ntwo; id",
        "hex": "cafe",
        "number": "42",
        "glob": "*",
        "dash": "-n",
        // keys are path segments: no '/' in them, but anything else
        "$(id >&2)": "key was hostile",
        "`id` key": "backtick key",
    });
    world::deployment(&site.pool, "d").await;
    bind(
        &site,
        1,
        "rig-hostile",
        "d",
        Some(json!({"hostile": hostile})),
    )
    .await;
    world::commit(&site.pool, "d").await;
    site.start();
    wait_for(Duration::from_secs(30), "the hostile role runs", || async {
        matches!(site.noderole(1, "rig-hostile").await.0, 0 | -1)
    })
    .await;
    let (state, _, runlog, wall) = site.noderole(1, "rig-hostile").await;
    assert_eq!(state, 0, "{runlog}");
    assert_eq!(
        wall,
        json!({"echo": hostile}),
        "every value came back as it went in"
    );
    assert!(!runlog.contains("uid="), "{runlog}");
    assert!(!std::path::Path::new(&pwned).exists());
    assert!(!site.rig.node(1).state_dir().join("pwned").exists());
    let values = std::fs::read_to_string(site.rig.node(1).state_dir().join("values")).unwrap();
    assert!(
        values.contains("`id`") && values.contains("'; rm -rf / #"),
        "{values}"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_report_themselves_with_the_shipped_script() {
    let site = Site::new(2, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    let app =
        crate::support::app::TestApp::on(site.pool.clone(), Some(site.key.public_openssh())).await;

    // The daemon's key, as nodes authorize it.
    let key = app.get("/api/v2/ssh_key").send().await;
    assert_eq!(key.body["public_key"], json!(site.key.public_openssh()));
    assert_eq!(key.body["fingerprint"], json!(site.key.fingerprint()));

    // The daemon is not listening yet when the node boots: the script retries.
    let gateway = site.rig.gateway();
    let port = std::net::TcpListener::bind((gateway, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://{gateway}:{port}");
    let name1 = site.name(1);
    let boot = site.report(1, &name1, &site.tokens[0], &url, "boot");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listener = tokio::net::TcpListener::bind((gateway, port))
        .await
        .unwrap();
    let serving = tokio::spawn(axum::serve(listener, app.router()).into_future());
    let (ok, log) = finished(boot).await;
    assert!(ok, "{log}");
    let history = site.history(1).await;
    let reports: Vec<(&str, &str, &Value)> = history
        .iter()
        .skip(1) // the first probe
        .map(|(actor, reason, changes)| (actor.as_str(), reason.as_str(), &changes["alive"]["to"]))
        .collect();
    let me = format!("node:{name1}");
    assert_eq!(
        reports,
        [
            (me.as_str(), "reported by the node", &json!(false)),
            (me.as_str(), "reported by the node", &json!(true)),
        ],
        "{history:?}"
    );
    assert!(site.alive(1).await);

    // Node 1's token for node 2: refused, nothing changes.
    let (ok, log) =
        finished(site.report(1, &site.name(2), &site.tokens[0], &url, "shutdown")).await;
    assert!(!ok && log.contains("HTTP 403"), "{log}");
    assert!(site.alive(2).await);
    assert_eq!(site.history(2).await.len(), 1);

    // Shutdown: dead, by the node's own word, visible through the API.
    let (ok, log) = finished(site.report(1, &name1, &site.tokens[0], &url, "shutdown")).await;
    assert!(ok, "{log}");
    assert!(!site.alive(1).await);
    let events = app
        .get(&format!("/api/v2/nodes/{name1}/events"))
        .send()
        .await;
    let newest = &events.body[0];
    assert_eq!(newest["actor"], json!(me));
    assert_eq!(newest["data"]["changes"]["alive"]["to"], json!(false));
    serving.abort();
}

/// NUL bytes in what a node sends (its log, its wall) cannot be stored by PostgreSQL as
/// they are: they arrive as U+FFFD, the run completes like any other, and the other runs
/// of the same batch are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_from_a_node_are_stored_replaced_and_hold_nothing_back() {
    let mut site = Site::new(3, site_settings(Duration::ZERO)).await;
    first_contact(&site).await;
    site.write_script(
        "rig-solo",
        "10-solo.sh",
        r#"printf 'A=1\0B=2\n'
printf 'err\0or\n' >&2
write_attribute --json rig/nul '"x\u0000y"'
write_attribute --json rig/keys '{"k\u0000": 1}'
"#,
    );
    world::deployment(&site.pool, "d").await;
    for i in 1..=3 {
        bind(&site, i, "rig-solo", "d", None).await;
    }
    world::commit(&site.pool, "d").await;
    site.start();
    wait_for(CONVERGE, "the NUL runs converge", || converged(&site.pool)).await;
    for i in 1..=3 {
        let (state, runs, runlog, wall) = site.noderole(i, "rig-solo").await;
        assert_eq!(
            (state, runs),
            (0, 1),
            "node {i} ACTIVE after one run: {runlog}"
        );
        assert!(runlog.contains("A=1\u{FFFD}B=2"), "{runlog:?}");
        assert!(runlog.contains("err\u{FFFD}or"), "{runlog:?}");
        assert_eq!(wall["rig"]["nul"], "x\u{FFFD}y", "{wall}");
        assert_eq!(wall["rig"]["keys"]["k\u{FFFD}"], 1, "{wall}");
    }
    let stuck: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(stuck, 0, "no run is left running");
    site.stop().await;
}

/// A node that sends more than the daemon keeps (here a 20 MB wall against a 1 MiB
/// limit) fails its run, saying why; its processes are stopped, the node stays alive, and
/// the daemon never holds more than the limit of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_fails_the_run_and_is_not_kept() {
    let mut settings = site_settings(Duration::ZERO);
    settings.access.ssh_output_limit = 1 << 20;
    let mut site = Site::new(1, settings).await;
    first_contact(&site).await;
    site.write_script(
        "rig-solo",
        "10-solo.sh",
        "head -c 20000000 /dev/zero | tr '\\0' x >\"$CROWBAR_WALL\"\necho flooding\n",
    );
    world::deployment(&site.pool, "d").await;
    bind(&site, 1, "rig-solo", "d", None).await;
    world::commit(&site.pool, "d").await;
    site.start();
    wait_for(
        Duration::from_secs(30),
        "the flooding run errors",
        || async { site.noderole(1, "rig-solo").await.0 == -1 },
    )
    .await;
    let (_, _, runlog, wall) = site.noderole(1, "rig-solo").await;
    assert!(
        runlog.contains("sent more than 1048576 bytes of output"),
        "{runlog}"
    );
    assert!(
        runlog.len() < 64 * 1024 + 1024,
        "{} bytes kept",
        runlog.len()
    );
    assert!(wall.to_string().len() < 1024, "no wall kept: {wall}");
    assert!(site.alive(1).await, "a talkative node is not a dead node");
    let leftovers = crowbar::node_rig::processes_in(&[site.rig.node(1).netns().to_string()])
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains("CROWBAR_RUN="))
        })
        .count();
    assert_eq!(leftovers, 0, "the run's processes on the node were killed");
    site.stop().await;
}

/// A node created with an address is probed at once, not at the next scheduled round (an
/// hour away here): it is alive, by the probe, as soon as it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_created_with_an_address_is_probed_at_once() {
    let site = Site::unregistered(1, site_settings(Duration::from_secs(3600))).await;
    let prober = tokio::spawn(site.prober().run(site.shutdown.clone()));
    // the first round (of no nodes) is over once the prober listens for requests
    wait_for(Duration::from_secs(20), "the prober listens", || async {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND query ILIKE 'LISTEN%crowbar_probe%'",
        )
        .fetch_one(&site.pool)
        .await
        .unwrap();
        listening == 1
    })
    .await;
    let rig_node = &site.rig.nodes()[0];
    let mut conn = site.pool.acquire().await.unwrap();
    crowbar::db::nodes::create(
        &mut conn,
        &crowbar::db::nodes::NewNode {
            name: rig_node.name().to_string(),
            address: Some(rig_node.addr().to_string()),
            ..Default::default()
        },
        &crowbar::db::events::Actor::token("test"),
    )
    .await
    .unwrap();
    drop(conn);
    let created = std::time::Instant::now();
    wait_for(
        Duration::from_secs(30),
        "the new node is probed alive",
        || async {
            sqlx::query_scalar::<_, bool>("SELECT alive FROM nodes WHERE name = $1")
                .bind(rig_node.name())
                .fetch_one(&site.pool)
                .await
                .unwrap()
        },
    )
    .await;
    println!("probed alive {:?} after it was created", created.elapsed());
    let by: String = sqlx::query_scalar(
        "SELECT actor FROM events WHERE type = 'node.updated' AND data->'changes' ? 'alive'
          ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(by, "probe");
    site.shutdown.cancel();
    prober.await.unwrap();
}
