//! Power operations as work: queued over the API, carried out by real daemons' power
//! workers against sushy-tools' Redfish emulator (changes apply 1 to 11 s after they are
//! asked for), one per BMC at a time, confirmed by polling, recorded as `node.power`
//! events; a hung BMC holds up only its own operation; an operation of a daemon killed
//! mid-cycle is finished by another daemon without a second cycle. The claim's rules (one
//! per node, the cap over every daemon, the same action asked twice queued once, taking
//! back from a dead worker) are checked on the database alone.

use std::time::{Duration, Instant};

use crowbar::db::{events::Actor, power_ops};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    bmc::{PASSWORD, RedfishEmulator, USER},
    daemon::{Daemon, DaemonOptions, DataDir},
    db::test_db,
    world::node,
};

const TOKEN: &str = "power-ops-test-token";
/// The emulator applies a change within 11 s; an operation polls until two reads agree.
const ENDED_WITHIN: Duration = Duration::from_secs(90);

fn daemon_on(url: &str, data: &DataDir) -> DaemonOptions {
    DaemonOptions::default()
        .data_dir(data.path())
        .env("CROWBAR_DATABASE_URL", url)
        .env("CROWBAR_ADMIN_TOKEN", TOKEN)
}

async fn call(
    daemon: &Daemon,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    daemon.call(TOKEN, method, path, body).await
}

/// Enrolls the emulator's system `i` as the BMC of `node`.
async fn enroll(daemon: &Daemon, node: &str, emulator: &RedfishEmulator, i: usize) {
    let (status, body) = call(
        daemon,
        Method::PUT,
        &format!("/api/v2/nodes/{node}/bmc"),
        Some(json!({
            "driver": "redfish", "address": "127.0.0.1", "port": emulator.port,
            "system": emulator.systems[i].uuid, "username": USER, "password": PASSWORD,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn power(daemon: &Daemon, node: &str, action: &str) -> Value {
    let (status, op) = call(
        daemon,
        Method::POST,
        &format!("/api/v2/nodes/{node}/power"),
        Some(json!({ "action": action })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    assert_eq!(op["action"], action);
    op
}

/// The operation once it has ended (bounded wait).
async fn ended(daemon: &Daemon, op: &Value) -> Value {
    let deadline = Instant::now() + ENDED_WITHIN;
    loop {
        let (_, now) = call(
            daemon,
            Method::GET,
            &format!("/api/v2/power_ops/{}", op["id"]),
            None,
        )
        .await;
        if now["state"] == "done" || now["state"] == "failed" {
            return now;
        }
        assert!(Instant::now() < deadline, "operation did not end: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn node_power(daemon: &Daemon, node: &str) -> Value {
    call(daemon, Method::GET, &format!("/api/v2/nodes/{node}"), None)
        .await
        .1["power"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_operations_run_one_per_bmc_are_confirmed_and_a_hung_bmc_holds_up_only_its_own() {
    let emulator = RedfishEmulator::start(3).await;
    let test = test_db().await;
    let data = DataDir::new();
    let daemon = Daemon::start(daemon_on(test.url.expose(), &data)).await;
    for i in 0..3 {
        node(&test.pool, &format!("n{i}"), false).await;
        enroll(&daemon, &format!("n{i}"), &emulator, i).await;
    }

    // two operations on one BMC: the second starts after the first ended
    let on = power(&daemon, "n0", "on").await;
    let off = power(&daemon, "n0", "force-off").await;
    assert_ne!(on["id"], off["id"]);
    let (on, off) = (ended(&daemon, &on).await, ended(&daemon, &off).await);
    assert_eq!(on["state"], "done", "{on}");
    assert_eq!(off["state"], "done", "{off}");
    assert!(
        off["started_at"].as_str() >= on["finished_at"].as_str(),
        "{on} {off}"
    );
    assert!(
        on["reason"]
            .as_str()
            .unwrap()
            .contains("confirmed by the BMC"),
        "{on}"
    );
    assert_eq!(node_power(&daemon, "n0").await, "off");

    // many at once: every node with a BMC cycled (a machine that is off is powered on)
    let (status, many) = call(
        &daemon,
        Method::POST,
        "/api/v2/power_ops",
        Some(json!({ "all": true, "action": "cycle" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{many}");
    let ops = many["operations"].as_array().unwrap().clone();
    assert_eq!(ops.len(), 3);
    for op in &ops {
        assert_eq!(ended(&daemon, op).await["state"], "done");
    }
    for i in 0..3 {
        assert_eq!(node_power(&daemon, &format!("n{i}")).await, "on");
    }
    // a cycle of a machine that is on: off and on again, confirmed
    let cycled = ended(&daemon, &power(&daemon, "n1", "cycle").await).await;
    assert_eq!(cycled["state"], "done", "{cycled}");
    let bmc = call(&daemon, Method::GET, "/api/v2/nodes/n1/bmc", None)
        .await
        .1;
    assert_eq!(bmc["power"], "on");
    assert_eq!(bmc["desired_power"], "on");

    // history: every state of every operation is a node.power event of its node
    let history = call(&daemon, Method::GET, "/api/v2/nodes/n0/power_ops", None)
        .await
        .1;
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["cycle", "force-off", "on", "check"],
        "newest first: {history}"
    );
    let check = &history[3];
    assert_eq!(check["state"], "done", "{check}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .starts_with("the credentials work"),
        "{check}"
    );
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT data->>'action', data->>'state' FROM events e JOIN nodes n ON n.id = e.node_id
          WHERE n.name = 'n0' AND e.type = 'node.power' ORDER BY e.id",
    )
    .fetch_all(&test.pool)
    .await
    .unwrap();
    for action in ["on", "force-off", "cycle"] {
        let states: Vec<&str> = events
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            states,
            ["queued", "running", "done"],
            "{action}: {events:?}"
        );
    }

    // a BMC that never answers: its operation waits on its own timeouts, others go on
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let (status, body) = call(
        &daemon,
        Method::PUT,
        "/api/v2/nodes/n2/bmc",
        Some(
            json!({"driver": "redfish", "address": "127.0.0.1", "port": hung_port,
                    "username": USER, "password": PASSWORD}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stuck = power(&daemon, "n2", "off").await;
    let other = ended(&daemon, &power(&daemon, "n1", "force-off").await).await;
    assert_eq!(other["state"], "done", "{other}");
    // the check queued with the enrolment talks to the hung BMC; the off waits behind it
    let state_of = |op: &Value| {
        let path = format!("/api/v2/power_ops/{}", op["id"]);
        let daemon = &daemon;
        async move { call(daemon, Method::GET, &path, None).await.1["state"].clone() }
    };
    assert_eq!(state_of(&body["check"]).await, "running", "{body}");
    assert_eq!(
        state_of(&stuck).await,
        "queued",
        "one operation per BMC: the off waits for the check"
    );
    holding.abort();
}

/// `kill -9` of the daemon while its worker waits for a cycle to apply: another daemon
/// takes the operation back as soon as the dead one's session is gone and only confirms
/// it (the BMC accepted the reset once, and is not asked again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_power_operation_is_finished_by_another_without_a_second_cycle() {
    let emulator = RedfishEmulator::start(1).await;
    let test = test_db().await;
    let data = DataDir::new();
    let mut first = Daemon::start(daemon_on(test.url.expose(), &data)).await;
    node(&test.pool, "n0", false).await;
    enroll(&first, "n0", &emulator, 0).await;
    let on = ended(&first, &power(&first, "n0", "on").await).await;
    assert_eq!(on["state"], "done", "{on}");

    let cycle = power(&first, "n0", "cycle").await;
    let deadline = Instant::now() + ENDED_WITHIN;
    loop {
        let sent: Option<bool> = sqlx::query_scalar(
            "SELECT sent_at IS NOT NULL FROM power_ops WHERE id = $1 AND state = 'running'",
        )
        .bind(cycle["id"].as_i64())
        .fetch_optional(&test.pool)
        .await
        .unwrap();
        if sent == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the cycle was never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let resets_before = emulator.log().matches("ComputerSystem.Reset").count();

    // the same data directory: the same key opens the BMC's sealed password
    let second = Daemon::start(daemon_on(test.url.expose(), &data)).await;
    let finished = ended(&second, &cycle).await;
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["attempts"], 2, "{finished}");
    assert_eq!(
        emulator.log().matches("ComputerSystem.Reset").count(),
        resets_before,
        "the taken-back cycle only confirmed: {}",
        emulator.log()
    );
    assert_eq!(node_power(&second, "n0").await, "on");
}

async fn bmc_row(pool: &sqlx::PgPool, node_id: i64) {
    sqlx::query(
        "INSERT INTO node_bmcs (node_id, driver, address, username, password_sealed)
         VALUES ($1, 'redfish', '127.0.0.1', 'u', '\\x00')",
    )
    .bind(node_id)
    .execute(pool)
    .await
    .unwrap();
}

async fn claim(pool: &sqlx::PgPool, cap: i64, lease: Option<i32>) -> Vec<power_ops::ClaimedOp> {
    let mut tx = pool.begin().await.unwrap();
    let claimed = power_ops::claim(&mut tx, "w", lease, cap, 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    claimed
}

#[tokio::test]
async fn the_claim_takes_one_operation_per_bmc_under_the_cap_and_takes_back_a_dead_workers() {
    let test = test_db().await;
    let pool = &test.pool;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let id = node(pool, &format!("n{i}"), false).await;
        bmc_row(pool, id).await;
        nodes.push(id);
    }
    let actor = Actor::token("t");
    let mut conn = pool.acquire().await.unwrap();
    let (first, new) = power_ops::request(&mut conn, nodes[0], "on", false, &actor)
        .await
        .unwrap();
    assert!(new);
    let (again, new) = power_ops::request(&mut conn, nodes[0], "on", false, &actor)
        .await
        .unwrap();
    assert!(!new, "the same action waiting is not queued twice");
    assert_eq!(again.id, first.id);
    let (second, _) = power_ops::request(&mut conn, nodes[0], "off", false, &actor)
        .await
        .unwrap();
    power_ops::request(&mut conn, nodes[1], "cycle", false, &actor)
        .await
        .unwrap();
    power_ops::request(&mut conn, nodes[2], "cycle", false, &actor)
        .await
        .unwrap();
    drop(conn);

    let claimed = claim(pool, 2, None).await;
    let ids: Vec<i64> = claimed.iter().map(|op| op.id).collect();
    assert_eq!(claimed.len(), 2, "the cap");
    assert_eq!(ids[0], first.id, "oldest first");
    assert_ne!(claimed[0].node_id, claimed[1].node_id, "one per node");
    assert!(
        claim(pool, 2, None).await.is_empty(),
        "the cap holds while both run"
    );
    let third = claim(pool, 3, None).await;
    assert_eq!(third.len(), 1);
    assert_eq!(
        third[0].node_id, nodes[2],
        "n0's second waits for its first"
    );

    let mut tx = pool.begin().await.unwrap();
    assert!(
        power_ops::finish(&mut tx, "w", first.id, true, "on")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    // under a lease no session holds: its worker is dead (while another worker's lease,
    // held here, shows the leases have settled: not a failover's empty new primary)
    let _live = crowbar::db::runs::WorkerLease::take(pool, None)
        .await
        .unwrap();
    let next = claim(pool, 3, Some(424242)).await;
    assert_eq!(next.iter().map(|op| op.id).collect::<Vec<_>>(), [second.id]);
    for attempt in 1..=power_ops::MAX_ATTEMPTS {
        let mut tx = pool.begin().await.unwrap();
        let taken = power_ops::take_back(&mut tx, Duration::from_secs(600), Duration::ZERO, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(taken, 1);
        let mut conn = pool.acquire().await.unwrap();
        let op = power_ops::get(&mut conn, second.id).await.unwrap();
        if attempt < power_ops::MAX_ATTEMPTS {
            assert_eq!(op.state, "queued", "{op:?}");
            assert_eq!(claim(pool, 3, Some(424242)).await.len(), 1);
        } else {
            assert_eq!(op.state, "failed", "{op:?}");
            assert!(op.reason.contains("stopped 3 times"), "{op:?}");
        }
    }
    let mut conn = pool.acquire().await.unwrap();
    let desired: Option<String> =
        sqlx::query_scalar("SELECT desired_power FROM node_bmcs WHERE node_id = $1")
            .bind(nodes[0])
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(desired.as_deref(), Some("off"), "what was asked last");
}
