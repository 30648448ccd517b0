//! `/api/v2/networks`, allocations and node addresses (SEMANTICS.md §11).

use std::collections::HashSet;

use axum::http::StatusCode;
use crowbar::domain::ipam;
use serde_json::json;

use crate::support::app::TestApp;

/// Allocates `node`'s addresses on `network` (optionally from `range`); returns them.
async fn allocate(app: &TestApp, network: &str, body: serde_json::Value) -> serde_json::Value {
    app.post(&format!("/api/v2/networks/{network}/allocations"))
        .json(body)
        .send()
        .await
        .status(StatusCode::OK)
        .body
}

async fn get(app: &TestApp, path: &str) -> serde_json::Value {
    app.get(path).send().await.status(StatusCode::OK).body
}

async fn global_id(app: &TestApp) -> u64 {
    let mut conn = app.pool.acquire().await.unwrap();
    crowbar::db::networks::global_id(&mut conn).await.unwrap()
}

#[tokio::test]
async fn nodes_get_the_next_free_address_and_their_derived_ipv6_address() {
    let app = TestApp::new().await;
    let reply = app
        .post("/api/v2/networks")
        .json(json!({
            "name": "storage", "v6prefix": "auto", "v4prefix": "198.51.100.0/24",
            "ranges": [{"name": "host", "first": "198.51.100.10", "last": "198.51.100.20"}],
            "router": {"address": "198.51.100.1", "pref": 10}
        }))
        .send()
        .await
        .status(StatusCode::CREATED);
    let network = reply.body;
    let id = network["id"].as_i64().unwrap();
    assert_eq!(network["v6prefix"], "auto");
    assert_eq!(
        network["router"],
        json!({"address": "198.51.100.1", "pref": 10})
    );
    assert_eq!(
        network["ranges"],
        json!([{"name": "host", "first": "198.51.100.10", "last": "198.51.100.20"}])
    );
    // the effective prefix is fd + this installation's global ID + the network id
    let global = global_id(&app).await;
    assert!(global <= ipam::GLOBAL_ID_MAX);
    let prefix = ipam::ula_prefix(global, id as u16);
    assert_eq!(network["effective_v6prefix"], prefix.to_string());
    assert!(
        network["effective_v6prefix"]
            .as_str()
            .unwrap()
            .starts_with("fd")
    );

    app.node("n1.example.com").await;
    app.node("n2.example.com").await;
    let n1 = allocate(&app, "storage", json!({"node": "n1.example.com"})).await;
    let v6 = ipam::node_v6_address(prefix, "n1.example.com");
    assert_eq!(
        n1,
        json!([
            {"network": "storage", "node": "n1.example.com", "address": "198.51.100.10/24"},
            {"network": "storage", "node": "n1.example.com", "address": format!("{v6}/64")},
        ])
    );
    // idempotent: the same node gets the same addresses
    let again = allocate(
        &app,
        &id.to_string(),
        json!({"node": "n1.example.com", "range": "host"}),
    )
    .await;
    assert_eq!(again, n1);
    let n2 = allocate(&app, "storage", json!({"node": "n2.example.com"})).await;
    assert_eq!(n2[0]["address"], "198.51.100.11/24");

    let addresses = get(&app, "/api/v2/nodes/n1.example.com/addresses").await;
    assert_eq!(addresses, n1);
    let all = get(&app, "/api/v2/networks/storage/allocations").await;
    assert_eq!(all.as_array().unwrap().len(), 4);

    // deleting the network frees its addresses
    app.delete("/api/v2/networks/storage")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    let addresses = get(&app, "/api/v2/nodes/n1.example.com/addresses").await;
    assert_eq!(addresses, json!([]));
    app.get("/api/v2/networks/storage")
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_admin_network_gets_an_auto_prefix_and_gives_nodes_their_admin_address() {
    let app = TestApp::new().await;
    let network = app
        .post("/api/v2/networks")
        .json(json!({
            "name": "admin",
            "ranges": [{"name": "admin", "first": "203.0.113.10", "last": "203.0.113.200"}]
        }))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    assert_eq!(network["v6prefix"], "auto");
    let a_given = app
        .post("/api/v2/networks")
        .json(json!({"name": "public", "v6prefix": "2001:db8:7:8::/64",
                     "ranges": [{"name": "v6", "first": "2001:db8:7:8::10", "last": "2001:db8:7:8::20"}]}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    assert_eq!(a_given["effective_v6prefix"], "2001:db8:7:8::/64");
    let plain = app
        .post("/api/v2/networks")
        .json(json!({"name": "bmc", "ranges": [{"name": "v6", "first": "fd00:9::10", "last": "fd00:9::20"}]}))
        .send()
        .await
        .status(StatusCode::CREATED)
        .body;
    assert!(plain["v6prefix"].is_null() && plain["effective_v6prefix"].is_null());

    app.node("n1.example.com").await;
    let reply = allocate(&app, "admin", json!({"node": "n1.example.com"})).await;
    assert_eq!(reply[0]["address"], "203.0.113.10/32");
    let node = get(&app, "/api/v2/nodes/n1.example.com").await;
    assert_eq!(node["address"], "203.0.113.10");
    // a network with a given prefix derives from it; one without takes from its v6 range
    let given = allocate(&app, "public", json!({"node": "n1.example.com"})).await;
    let expected = ipam::node_v6_address("2001:db8:7:8::/64".parse().unwrap(), "n1.example.com");
    assert_eq!(given[0]["address"], format!("{expected}/64"));
    let ranged = allocate(&app, "bmc", json!({"node": "n1.example.com"})).await;
    assert_eq!(ranged[0]["address"], "fd00:9::10/128");
    // another node's admin address (a discovered machine's) is never allocated: the
    // database would refuse the second node on it
    app.post("/api/v2/nodes")
        .json(json!({"name": "d1.example.com", "address": "203.0.113.11"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.node("n2.example.com").await;
    let reply = allocate(&app, "admin", json!({"node": "n2.example.com"})).await;
    assert_eq!(reply[0]["address"], "203.0.113.12/32");
    let node = get(&app, "/api/v2/nodes/n2.example.com").await;
    assert_eq!(node["address"], "203.0.113.12");
    // the allocation is in the node's history
    let history = get(&app, "/api/v2/nodes/n1.example.com/events").await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["changes"]["addresses"]["network"] == "admin"),
        "{history}"
    );
}

#[tokio::test]
async fn concurrent_allocations_never_hand_out_an_address_twice() {
    let app = TestApp::new().await;
    app.post("/api/v2/networks")
        .json(json!({"name": "rack", "ranges": [{"name": "r", "first": "198.51.100.1", "last": "198.51.100.30"}]}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let names: Vec<String> = (0..30).map(|i| format!("c{i}.example.com")).collect();
    for name in &names {
        app.node(name).await;
    }
    // every node asks twice at once: 60 racing requests for 30 addresses
    let calls = names.iter().chain(names.iter()).map(|name| {
        app.post("/api/v2/networks/rack/allocations")
            .json(json!({"node": name}))
            .send()
    });
    let replies = futures::future::join_all(calls).await;
    let mut by_node = std::collections::HashMap::new();
    for reply in replies {
        let body = reply.status(StatusCode::OK).body;
        let address = body[0]["address"].as_str().unwrap().to_string();
        let node = body[0]["node"].as_str().unwrap().to_string();
        let previous = by_node.insert(node, address.clone());
        assert!(
            previous.is_none_or(|p| p == address),
            "a node got two addresses"
        );
    }
    let distinct: HashSet<&String> = by_node.values().collect();
    assert_eq!(distinct.len(), 30, "{by_node:?}");
    // the range is full now
    app.node("late.example.com").await;
    app.refused(
        app.post("/api/v2/networks/rack/allocations")
            .json(json!({"node": "late.example.com"})),
        StatusCode::CONFLICT,
        "range_exhausted",
    )
    .await;
}

#[tokio::test]
async fn bad_networks_are_refused_and_change_nothing() {
    let app = TestApp::new().await;
    for (body, status, code) in [
        (
            json!({"name": "x", "v6prefix": "fd00::/48"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_prefix",
        ),
        (
            json!({"name": "x", "v6prefix": "fd00::1/64"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_prefix",
        ),
        (
            json!({"name": "x", "v4prefix": "fd00::/64"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_prefix",
        ),
        (
            json!({"name": "x", "ranges": [{"name": "a", "first": "198.51.100.9", "last": "198.51.100.1"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
        ),
        (
            json!({"name": "x", "ranges": [{"name": "a", "first": "198.51.100.1", "last": "fd00::1"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
        ),
        (
            json!({"name": "x", "ranges": [{"name": "a", "first": "nope", "last": "198.51.100.1"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_address",
        ),
        (
            json!({"name": "X Y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            json!({"name": "x", "ranges": [{"name": "a", "first": "198.51.100.1", "last": "198.51.100.2"},
                                        {"name": "a", "first": "198.51.100.3", "last": "198.51.100.4"}]}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"name": "x", "deployment": "nowhere"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"name": "x", "colour": "blue"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        app.refused(app.post("/api/v2/networks").json(body), status, code)
            .await;
    }
    app.post("/api/v2/networks")
        .json(json!({"name": "x", "ranges": [{"name": "a", "first": "198.51.100.1", "last": "198.51.100.2"}]}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.node("n1.example.com").await;
    app.refused(
        app.post("/api/v2/networks/x/allocations")
            .json(json!({"node": "n1.example.com", "range": "b"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.post("/api/v2/networks/x/allocations")
            .json(json!({"node": "ghost.example.com"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.refused(
        app.post("/api/v2/networks").json(json!({"name": "x"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}
