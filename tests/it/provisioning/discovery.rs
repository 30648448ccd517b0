//! Discovery: unknown machines register themselves through `POST /discover`.

use std::{collections::HashSet, time::Duration};

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{
    app::TestApp,
    nodes::RigNodeExt,
    site::{Site, converged, probe_settings, wait_for},
};

fn mac(i: usize) -> String {
    format!("52:54:00:12:00:{i:02x}")
}

#[tokio::test]
async fn ten_machines_registering_at_once_become_ten_managed_nodes() {
    let app = TestApp::new().await;
    // every machine registers twice at once, as a machine rebooting quickly would
    let calls = (0..10).chain(0..10).map(|i| {
        app.post("/discover")
            .no_token()
            .json(
                json!({"mac": mac(i).to_uppercase(), "address": format!("198.51.100.{}", 10 + i)}),
            )
            .send()
    });
    let replies = futures::future::join_all(calls).await;
    let mut created = 0;
    for reply in &replies {
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
            "{}: {}",
            reply.status,
            reply.body
        );
        created += usize::from(reply.status == StatusCode::CREATED);
        assert_eq!(reply.body["token"].as_str().unwrap().len(), 64);
    }
    assert_eq!(created, 10, "one creation per MAC");
    let nodes: Vec<(String, String, Option<String>, String)> =
        sqlx::query_as("SELECT name, mac::text, host(address), bootenv FROM nodes ORDER BY mac")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(nodes.len(), 10, "{nodes:?}");
    for (i, (name, node_mac, address, bootenv)) in nodes.iter().enumerate() {
        assert_eq!(node_mac, &mac(i));
        assert_eq!(
            name,
            &format!("d{}.crowbar.internal", mac(i).replace(':', "-"))
        );
        assert_eq!(
            address.as_deref(),
            Some(format!("198.51.100.{}", 10 + i).as_str())
        );
        assert_eq!(bootenv, "sledgehammer");
    }
    // each bound to crowbar-managed-node (and what it needs), committed: waiting to run
    let bound: Vec<(String, String, i16)> = sqlx::query_as(
        "SELECT n.name, r.name, nr.state FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id ORDER BY n.name, r.name",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(bound.len(), 20, "{bound:?}");
    let roles: HashSet<&str> = bound.iter().map(|b| b.1.as_str()).collect();
    assert_eq!(
        roles,
        HashSet::from(["crowbar-access", "crowbar-managed-node"])
    );
    assert!(
        bound.iter().all(|b| b.2 == 1 || b.2 == 3),
        "todo or blocked: {bound:?}"
    );
}

/// A flood of registrations cannot make more nodes than `--discovery-limit`: machines past
/// it get 429 and nothing changes; known machines still register again; a machine that
/// leaves discovery makes room.
#[tokio::test]
async fn discovery_stops_at_its_limit() {
    let app = TestApp::with(|state| {
        let mut provisioner = (*state.provisioner).clone();
        provisioner.discovery_limit = 3;
        state.provisioner = std::sync::Arc::new(provisioner);
    })
    .await;
    let calls = (0..6).map(|i| {
        app.post("/discover")
            .no_token()
            .json(json!({"mac": mac(i)}))
            .send()
    });
    let replies = futures::future::join_all(calls).await;
    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(
        created.len(),
        3,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for refused in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
        assert_eq!(refused.body["error"]["code"], "discovery_full");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--discovery-limit"),
            "{}",
            refused.body
        );
    }
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM nodes")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 3, "no node for a refused machine");

    // a machine already in discovery registers again at the limit
    let first = created[0].body["mac"].as_str().unwrap().to_string();
    app.post("/discover")
        .no_token()
        .json(json!({"mac": first}))
        .send()
        .await
        .status(StatusCode::OK);
    // one leaves discovery: a new machine fits
    let name = created[0].body["name"].as_str().unwrap().to_string();
    app.put(&format!("/api/v2/nodes/{name}"))
        .json(json!({"bootenv": "local"}))
        .send()
        .await
        .status(StatusCode::OK);
    app.post("/discover")
        .no_token()
        .json(json!({"mac": mac(9)}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(count().await, 4);
}

#[tokio::test]
async fn a_rebooted_undiscovered_machine_gets_a_new_token_a_discovered_one_is_refused() {
    let app = TestApp::new().await;
    let first = app
        .post("/discover")
        .no_token()
        .json(json!({"mac": "52-54-00-00-00-01"}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    let name = first["name"].as_str().unwrap().to_string();
    let old = first["token"].as_str().unwrap().to_string();
    let again = app
        .post("/discover")
        .no_token()
        .json(json!({"mac": "52:54:00:00:00:01", "address": "198.51.100.77"}))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["address"], "198.51.100.77");
    let new = again["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    // the old token stopped working, the new one works
    app.get(&format!("/api/v2/nodes/{name}"))
        .token(&old)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.put(&format!("/api/v2/nodes/{name}"))
        .token(&new)
        .json(json!({"bootenv": "local"}))
        .send()
        .await
        .status(StatusCode::OK);
    // out of discovery now: knowing the MAC is not enough for a token
    app.refused(
        app.post("/discover")
            .no_token()
            .json(json!({"mac": "52:54:00:00:00:01"})),
        StatusCode::CONFLICT,
        "already_discovered",
    )
    .await;
    for (body, code) in [
        (json!({"mac": "52:54:00:00:00"}), "invalid_mac"),
        (
            json!({"mac": "52:54:00:00:00:02", "address": "nowhere"}),
            "invalid_address",
        ),
        (
            json!({"mac": "52:54:00:00:00:02", "name": "x"}),
            "invalid_body",
        ),
    ] {
        app.refused(
            app.post("/discover").no_token().json(body),
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }
}

/// Real machines: namespace nodes register with their own MAC and address, report alive
/// with the token they got, and the annealer takes them over over SSH.
#[tokio::test]
async fn discovered_machines_are_annealed_once_they_report_alive() {
    let mut site = Site::unregistered(2, probe_settings(Duration::ZERO)).await;
    site.keep_hostname_files_in_node_state().await;
    let app = TestApp::on(site.pool.clone(), None).await;
    site.start();
    let mut names = Vec::new();
    for node in site.rig.nodes() {
        let reply = app
            .post("/discover")
            .no_token()
            .json(json!({"mac": node.mac(), "address": node.addr().to_string()}))
            .send()
            .await
            .status(StatusCode::CREATED)
            .body;
        let name = reply["name"].as_str().unwrap().to_string();
        // nothing runs on a machine that has not said it is alive
        assert_eq!(reply["alive"], false);
        app.put(&format!("/api/v2/nodes/{name}"))
            .token(reply["token"].as_str().unwrap())
            .json(json!({"alive": true}))
            .send()
            .await
            .status(StatusCode::OK);
        names.push(name);
    }
    wait_for(
        Duration::from_secs(60),
        "the discovered nodes converge",
        || converged(&site.pool),
    )
    .await;
    for (i, name) in names.iter().enumerate() {
        let node = &site.rig.nodes()[i];
        let hostname = std::fs::read_to_string(node.state_dir().join("hostname")).unwrap();
        assert_eq!(hostname.trim(), name, "crowbar-access ran on the machine");
        let managed: i16 = sqlx::query_scalar(
            "SELECT nr.state FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
               JOIN roles r ON r.id = nr.role_id WHERE n.name = $1 AND r.name = 'crowbar-managed-node'",
        )
        .bind(name)
        .fetch_one(&site.pool)
        .await
        .unwrap();
        assert_eq!(managed, 0, "crowbar-managed-node is ACTIVE on {name}");
    }
    site.stop().await;
}
