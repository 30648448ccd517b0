//! Discovery: unknown machines register themselves through `POST /discover`.

use std::{collections::HashSet, time::Duration};

use axum::http::StatusCode;
use serde_json::json;

use super::admin_network;
use crate::support::{
    app::TestApp,
    nodes::RigNodeExt,
    site::{Site, converged, site_settings, wait_for},
};

fn mac(i: usize) -> String {
    format!("52:54:00:12:00:{i:02x}")
}

#[tokio::test]
async fn ten_machines_registering_at_once_become_ten_managed_nodes() {
    let app = TestApp::new().await;
    admin_network(&app, "198.51.100.0/24").await;
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
/// it get 429 and nothing changes; known machines still register again; a discovered
/// node cannot make room by changing its own bootenv, an admin accepting it does.
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
    // a discovered node cannot leave the count by itself: its token may not change its
    // bootenv (which used to be what the limit counted)
    let name = created[0].body["name"].as_str().unwrap().to_string();
    let token = created[0].body["token"].as_str().unwrap().to_string();
    let again = app
        .post("/discover")
        .no_token()
        .json(json!({"mac": first}))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    let token_now = again["token"].as_str().unwrap();
    assert_ne!(token_now, token);
    for bootenv in ["local", "ubuntu-22.04-install"] {
        app.refused(
            app.put(&format!("/api/v2/nodes/{name}"))
                .token(token_now)
                .json(json!({"bootenv": bootenv})),
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    // which the node cannot change either: it is an admin's to set
    sqlx::query("UPDATE nodes SET bootenv = 'local' WHERE name = $1")
        .bind(&name)
        .execute(&app.pool)
        .await
        .unwrap();
    app.refused(
        app.post("/discover")
            .no_token()
            .json(json!({"mac": mac(9)})),
        StatusCode::TOO_MANY_REQUESTS,
        "discovery_full",
    )
    .await;
    // an admin accepts it (a PUT, even one that changes nothing): a new machine fits
    let accepted = app
        .put(&format!("/api/v2/nodes/{name}"))
        .json(json!({}))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    assert_eq!(accepted["discovered"], false);
    app.post("/discover")
        .no_token()
        .json(json!({"mac": mac(9)}))
        .send()
        .await
        .status(StatusCode::CREATED);
    assert_eq!(count().await, 4);
}

/// A machine that rebooted before an admin accepted its node gets a fresh token for it,
/// and nothing else changes: its address stays the one it registered with. Once an admin
/// accepts the node, knowing the MAC is worth nothing.
#[tokio::test]
async fn a_rebooted_machine_gets_a_new_token_until_an_admin_accepts_its_node() {
    let app = TestApp::new().await;
    admin_network(&app, "198.51.100.0/24").await;
    let first = app
        .post("/discover")
        .no_token()
        .json(json!({"mac": "52-54-00-00-00-01", "address": "198.51.100.76"}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    assert_eq!(first["discovered"], true);
    let name = first["name"].as_str().unwrap().to_string();
    let old = first["token"].as_str().unwrap().to_string();
    // registering again from elsewhere: a new token, the same address
    let again = app
        .post("/discover")
        .no_token()
        .json(json!({"mac": "52:54:00:00:00:01", "address": "198.51.100.77"}))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["address"], "198.51.100.76");
    let new = again["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let address: Option<String> =
        sqlx::query_scalar("SELECT host(address) FROM nodes WHERE name = $1")
            .bind(&name)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(address.as_deref(), Some("198.51.100.76"));
    // the old token stopped working, the new one works
    app.get(&format!("/api/v2/nodes/{name}"))
        .token(&old)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.put(&format!("/api/v2/nodes/{name}"))
        .token(&new)
        .json(json!({"alive": true}))
        .send()
        .await
        .status(StatusCode::OK);
    // binding a role to it is accepting it, too
    app.bind(&name, "test-admin", "system").await;
    let discovered: bool = sqlx::query_scalar("SELECT discovered FROM nodes WHERE name = $1")
        .bind(&name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!discovered);
    let reply = app
        .refused(
            app.post("/discover")
                .no_token()
                .json(json!({"mac": "52:54:00:00:00:01"})),
            StatusCode::CONFLICT,
            "already_discovered",
        )
        .await;
    assert!(reply.message().contains("admin"), "{}", reply.body);
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

/// A node an admin created is never discovery's: its MAC gets 409, and its address, token
/// and host key pin stay as they were.
#[tokio::test]
async fn discovery_cannot_take_over_a_node_an_admin_created() {
    let app = TestApp::new().await;
    admin_network(&app, "198.51.100.0/24").await;
    let created = app
        .post("/api/v2/nodes")
        .json(json!({"name": "n1.example.com", "mac": "52:54:00:00:00:07", "address": "198.51.100.7"}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    assert_eq!(created["bootenv"], "sledgehammer");
    assert_eq!(created["discovered"], false);
    let token = created["token"].as_str().unwrap().to_string();
    sqlx::query(
        "UPDATE nodes SET host_key = 'ssh-ed25519 AAAApinned' WHERE name = 'n1.example.com'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    for body in [
        json!({"mac": "52:54:00:00:00:07", "address": "198.51.100.66"}),
        json!({"mac": "52-54-00-00-00-07"}),
    ] {
        let reply = app
            .refused(
                app.post("/discover").no_token().json(body),
                StatusCode::CONFLICT,
                "already_discovered",
            )
            .await;
        assert!(reply.message().contains("n1.example.com"), "{}", reply.body);
    }
    // the admin's token for the node still works
    app.get("/api/v2/nodes/n1.example.com")
        .token(&token)
        .send()
        .await
        .status(StatusCode::OK);
}

/// crowbar SSHes as root to a discovered machine's address, so the unauthenticated caller
/// may only name a host address of a configured network that no other node has.
#[tokio::test]
async fn discovered_addresses_are_hosts_of_the_networks_and_nobody_elses() {
    let app = TestApp::new().await;
    // no network yet: no address is crowbar's to reach
    app.refused(
        app.post("/discover")
            .no_token()
            .json(json!({"mac": mac(1), "address": "198.51.100.10"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "address_not_allowed",
    )
    .await;
    app.post("/api/v2/networks")
        .json(json!({"name": "admin", "v4prefix": "198.51.100.0/24",
                     "ranges": [{"name": "host", "first": "198.51.100.100", "last": "198.51.100.110"}],
                     "router": {"address": "198.51.100.1", "pref": 10}}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let v6: String = app
        .get("/api/v2/networks/admin")
        .send()
        .await
        .status(StatusCode::OK)
        .body["effective_v6prefix"]
        .as_str()
        .unwrap()
        .trim_end_matches("/64")
        .to_string();
    app.post("/api/v2/nodes")
        .json(json!({"name": "n1.example.com", "address": "198.51.100.5"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.post("/api/v2/nodes")
        .json(json!({"name": "n2.example.com"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    // n2 gets 198.51.100.100 and an IPv6 address from the admin network
    let allocated = app
        .post("/api/v2/networks/admin/allocations")
        .json(json!({"node": "n2.example.com"}))
        .send()
        .await
        .status(StatusCode::OK)
        .body;
    let n2_v6 = allocated[1]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/64")
        .to_string();
    for (address, code) in [
        ("127.0.0.1", "address_not_allowed"),
        ("0.0.0.0", "address_not_allowed"),
        ("169.254.1.1", "address_not_allowed"),
        ("::1", "address_not_allowed"),
        ("fe80::1", "address_not_allowed"),
        ("::ffff:198.51.100.9", "address_not_allowed"),
        ("203.0.113.9", "address_not_allowed"),
        ("198.51.101.9", "address_not_allowed"),
        ("198.51.100.0", "address_not_allowed"),
        ("198.51.100.255", "address_not_allowed"),
        ("198.51.100.1", "address_not_allowed"),
        ("198.51.100.5", "address_taken"),
        ("198.51.100.100", "address_taken"),
        (n2_v6.as_str(), "address_taken"),
    ] {
        let reply = app
            .refused(
                app.post("/discover")
                    .no_token()
                    .json(json!({"mac": mac(1), "address": address})),
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
            )
            .await;
        assert!(
            reply.message().contains(address),
            "{address}: {}",
            reply.body
        );
    }
    // hosts of the network, in IPv4 and in its IPv6 /64
    for (i, address) in ["198.51.100.9".to_string(), format!("{v6}42")]
        .iter()
        .enumerate()
    {
        app.post("/discover")
            .no_token()
            .json(json!({"mac": mac(i + 1), "address": address}))
            .send()
            .await
            .status(StatusCode::CREATED);
    }
    app.refused(
        app.post("/discover")
            .no_token()
            .json(json!({"mac": mac(3), "address": "198.51.100.9"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "address_taken",
    )
    .await;
    // the database holds one node per address whoever writes (another daemon, an admin)
    let reply = app
        .refused(
            app.post("/api/v2/nodes")
                .json(json!({"name": "n3.example.com", "address": "198.51.100.9"})),
            StatusCode::CONFLICT,
            "conflict",
        )
        .await;
    assert!(reply.message().contains("address"), "{}", reply.body);
    let duplicate =
        sqlx::query("UPDATE nodes SET address = '198.51.100.9/24' WHERE name = 'n1.example.com'")
            .execute(&app.pool)
            .await
            .unwrap_err();
    assert_eq!(
        duplicate.as_database_error().unwrap().constraint(),
        Some("nodes_address_unique")
    );
}

/// Real machines: namespace nodes register with their own MAC and address, report alive
/// with the token they got, and the annealer takes them over over SSH.
#[tokio::test]
async fn discovered_machines_are_annealed_once_they_report_alive() {
    let mut site = Site::unregistered(2, site_settings(Duration::ZERO)).await;
    site.keep_hostname_files_in_node_state().await;
    let app = TestApp::on(site.pool.clone(), None).await;
    let (base, _) = site.rig.subnet();
    admin_network(&app, &format!("{base}/26")).await;
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
