//! crowbar's own BMC user, set up from inside the machine by the provisioner's `bmc` role on
//! namespace machines, then used over the network.
//!
//! The rig's machines have no `/dev/ipmi0`: a stand-in `ipmitool` in the machine's tool
//! directory turns `-I open` into a lanplus session, as the BMC's factory admin, with the
//! machine's emulated BMC (pyghmi's IPMI server with the user table of `ipmi_bmc.py`) on the
//! rig's gateway address, port 623. Everything else is real: the jig's SSH session,
//! ipmitool's `lan print`, `user list` and `exec` of the user commands, the enrolment, and
//! the check and the power operation over the network as crowbar's new user.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use crowbar::{
    hooks::Hooks,
    power::{inband::InbandJig, worker::PowerWorker},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{
    app::TestApp,
    ipmi::IpmiEmulator,
    nodes::NODE_STATE_MOUNT,
    site::{Site, converged, site_settings, wait_for},
    world,
};

const FACTORY_ADMIN: &str = "admin";
const FACTORY_PASSWORD: &str = "factory-secret-5c1d";
const LIMIT: Duration = Duration::from_secs(90);

/// The machine's "IPMI device": ipmitool's in-band interface becomes the LAN one, as the
/// factory admin whose password the machine keeps in its state directory.
fn stand_in(bmc: &IpmiEmulator) -> String {
    format!(
        "#!/bin/sh\n\
         # the rig's machines have no /dev/ipmi0: reach the machine's own BMC over the LAN\n\
         if [ \"$1\" = -I ] && [ \"$2\" = open ]; then shift 2; fi\n\
         exec /usr/bin/ipmitool -I lanplus -H {} -p {} -U {FACTORY_ADMIN} \
         -f {NODE_STATE_MOUNT}/bmc-admin-password \"$@\"\n",
        bmc.address, bmc.port
    )
}

async fn noderole_id(pool: &PgPool, node: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT nr.id FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id WHERE n.name = $1 AND r.name = 'bmc'",
    )
    .bind(node)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Rows of every table of the database whose text holds `needle`: (table, row).
async fn rows_holding(pool: &PgPool, needle: &str) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        // table names from the catalog, quoted
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT x::text FROM \"{table}\" x WHERE strpos(x::text, $1) > 0"
        )))
        .bind(needle)
        .fetch_all(pool)
        .await
        .unwrap();
        found.extend(rows.into_iter().map(|row| (table.clone(), row)));
    }
    found
}

/// Files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Runs the node's `bmc` noderole again and waits until it is ACTIVE once more.
async fn run_again(app: &TestApp, pool: &PgPool, node: &str) -> Value {
    let id = noderole_id(pool, node).await;
    let runs = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i32>("SELECT run_count FROM noderoles WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = runs(pool.clone()).await;
    app.put(&format!("/api/v2/node_roles/{id}/retry"))
        .send()
        .await
        .status(StatusCode::OK);
    wait_for(LIMIT, "the bmc role ran again", || async {
        runs(pool.clone()).await > before && converged(pool).await
    })
    .await;
    app.get(&format!("/api/v2/node_roles/{id}"))
        .send()
        .await
        .status(StatusCode::OK)
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bmc_role_gives_crowbar_its_own_bmc_user_and_enrolls_it() {
    let mut site = Site::new(2, site_settings(Duration::from_secs(1))).await;
    // the role requires crowbar-managed-node, whose crowbar-access writes a hostname file
    site.keep_hostname_files_in_node_state().await;
    let app = TestApp::on(site.pool.clone(), None).await;
    let (with_bmc, without) = (site.name(1), site.name(2));
    let bmc =
        IpmiEmulator::start_at(site.rig.gateway(), 623, FACTORY_ADMIN, FACTORY_PASSWORD).await;
    let machine = site.rig.node(1);
    let machine_dir = machine.dir().to_path_buf();
    std::fs::write(
        machine.state_dir().join("bmc-admin-password"),
        format!("{FACTORY_PASSWORD}\n"),
    )
    .unwrap();
    let tool = machine.tools_dir().join("ipmitool");
    std::fs::write(&tool, stand_in(&bmc)).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (pool, access, power) = (site.pool.clone(), site.access.clone(), app.power.clone());
    site.start_with(
        move |jigs| jigs.with(InbandJig::new(pool, access, power)),
        Hooks::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = PowerWorker {
        pool: site.pool.clone(),
        control: app.power.clone(),
        settings: Default::default(),
        shutdown_grace: Duration::from_secs(5),
    }
    .start(stop.clone());

    world::deployment(&site.pool, "racks").await;
    for node in [&with_bmc, &without] {
        world::bind(&site.pool, node, "bmc", "racks").await;
    }
    world::commit(&site.pool, "racks").await;
    let deadline = std::time::Instant::now() + LIMIT;
    while !converged(&site.pool).await {
        if std::time::Instant::now() > deadline {
            let states = site.noderoles().await;
            panic!("not converged within {LIMIT:?}: {states:#?}\n{}", bmc.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the machine with a BMC: crowbar's user in slot 3, operator, IPMI messaging, enabled
    let users = bmc.users();
    let slot = &users["3"];
    assert_eq!(slot["name"], "crowbar", "{users}");
    assert_eq!(slot["enabled"], true);
    assert_eq!(slot["ipmi"], true);
    assert_eq!(slot["privilege"], 3);
    let password = slot["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 20);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        users["2"]["name"], FACTORY_ADMIN,
        "the vendor's admin stays"
    );
    assert_eq!(users["2"]["password"], FACTORY_PASSWORD);

    let (state, _, log, wall) = site.noderole(1, "bmc").await;
    assert_eq!(state, 0, "{log}");
    assert_eq!(
        wall["bmc"],
        json!({"local": true, "address": bmc.address.to_string(), "mac": "52:54:00:00:00:01",
               "username": "crowbar", "user_id": 3, "crowbar_user": true}),
        "{log}"
    );
    assert!(log.contains("its check passed"), "{log}");
    let enrolled = app
        .get(&format!("/api/v2/nodes/{with_bmc}/bmc"))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    assert_eq!(enrolled["driver"], "ipmi");
    assert_eq!(enrolled["address"], bmc.address.to_string());
    assert_eq!(enrolled["port"], Value::Null);
    assert_eq!(enrolled["username"], "crowbar");
    let ops = app
        .get(&format!("/api/v2/nodes/{with_bmc}/power_ops"))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    let check = &ops[0];
    assert_eq!(check["action"], "check", "{ops}");
    assert_eq!(check["state"], "done", "{ops}");
    assert_eq!(check["actor"], "jig:bmc", "{ops}");

    // crowbar drives the machine's power as its own user
    let op = app
        .post(&format!("/api/v2/nodes/{with_bmc}/power"))
        .json(json!({"action": "on"}))
        .send()
        .await
        .status(StatusCode::ACCEPTED)
        .body;
    let id = op["id"].as_i64().unwrap();
    wait_for(LIMIT, "power on is confirmed", || async {
        let op = app
            .get(&format!("/api/v2/power_ops/{id}"))
            .send()
            .await
            .status(StatusCode::OK)
            .body;
        assert_ne!(op["state"], "failed", "{op}");
        op["state"] == "done"
    })
    .await;
    assert!(bmc.log().contains("power on"), "{}", bmc.log());

    // the machine without an IPMI device: nothing to enroll, and no failure
    let (state, _, log, wall) = site.noderole(2, "bmc").await;
    assert_eq!(state, 0, "{log}");
    assert_eq!(wall["bmc"], json!({"local": false}), "{log}");
    assert!(log.contains("no IPMI device"), "{log}");
    app.get(&format!("/api/v2/nodes/{without}/bmc"))
        .send()
        .await
        .status(StatusCode::NOT_FOUND);

    // a second run changes nothing: the user works, its password stays
    let again = run_again(&app, &site.pool, &with_bmc).await;
    assert!(
        again["runlog"]
            .as_str()
            .unwrap()
            .contains("works already: nothing changed"),
        "{again}"
    );
    assert_eq!(bmc.users()["3"]["password"], password.as_str());
    assert_eq!(bmc.log().matches("user 3 password set").count(), 1);

    // someone changes crowbar's password on the BMC: the next run sets up a new one
    let changed = std::process::Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-H",
            &bmc.address.to_string(),
            "-U",
            FACTORY_ADMIN,
        ])
        .arg("-f")
        .arg(bmc.password_file())
        .args(["user", "set", "password", "3", "SomeoneElse123", "20"])
        .output()
        .unwrap();
    assert!(changed.status.success(), "{changed:?}");
    let again = run_again(&app, &site.pool, &with_bmc).await;
    let log = again["runlog"].as_str().unwrap();
    assert!(log.contains("does not work"), "{log}");
    assert!(log.contains("its check passed"), "{log}");
    let rotated = bmc.users()["3"]["password"].as_str().unwrap().to_string();
    assert_ne!(rotated, "SomeoneElse123");
    assert_ne!(rotated, password);

    // neither password is anywhere: not in the database (events, runs, audit, walls,
    // logs), not in an API answer, not in a file on the machine
    for secret in [&password, &rotated] {
        assert_eq!(rows_holding(&site.pool, secret).await, []);
        for path in [
            format!("/api/v2/nodes/{with_bmc}/bmc"),
            format!("/api/v2/nodes/{with_bmc}"),
            format!(
                "/api/v2/node_roles/{}",
                noderole_id(&site.pool, &with_bmc).await
            ),
            format!("/api/v2/nodes/{with_bmc}/power_ops"),
        ] {
            let body = app.get(&path).send().await.status(StatusCode::OK).body;
            assert!(
                !body.to_string().contains(secret.as_str()),
                "{path}: {body}"
            );
        }
        assert_eq!(files_holding(&machine_dir, secret), Vec::<String>::new());
    }

    stop.cancel();
    let _ = worker.await;
    site.stop().await;
}
