//! Enrolling a node's BMC over the API and reading its power from a real Redfish emulator:
//! the password sealed in the database and never answered; the certificate pinned on first
//! contact and a changed one refused until accepted; a BMC failure answered with the BMC
//! named and no secret in it.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    app::TestApp,
    bmc::{PASSWORD, RedfishEmulator, USER},
};

fn settings(emulator: &RedfishEmulator, password: &str) -> Value {
    json!({
        "driver": "redfish",
        "address": "127.0.0.1",
        "port": emulator.port,
        "username": USER,
        "password": password,
    })
}

/// Whether `text` shows the password anywhere.
fn shows_password(text: &str) -> bool {
    text.contains(PASSWORD)
}

#[tokio::test]
async fn a_bmc_is_enrolled_read_and_removed_without_its_password_ever_answered() {
    let emulator = RedfishEmulator::start(1).await;
    let app = TestApp::new().await;
    let (node_id, _) = app.node("n1.example.com").await;
    app.get("/api/v2/nodes/n1.example.com/bmc")
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let power_of_node = || async {
        app.get("/api/v2/nodes/n1.example.com")
            .send()
            .await
            .status(StatusCode::OK)
            .body["power"]
            .clone()
    };
    assert_eq!(power_of_node().await, Value::Null, "no BMC, no power");

    let set = app
        .put("/api/v2/nodes/n1.example.com/bmc")
        .json(settings(&emulator, PASSWORD))
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(set.body["driver"], "redfish");
    assert_eq!(set.body["username"], USER);
    assert_eq!(set.body["cert_fingerprint"], Value::Null);
    assert_eq!(power_of_node().await, "unknown", "not read yet");
    assert!(set.body.get("password").is_none());
    assert!(!shows_password(&set.body.to_string()));
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT password_sealed FROM node_bmcs WHERE node_id = $1")
            .bind(node_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        !sealed
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes()),
        "no clear password in the database"
    );

    // the first read pins the certificate and records the state
    let power = app
        .get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(power.body["state"], "off");
    let pinned = power.body["cert_fingerprint"].as_str().unwrap().to_string();
    assert!(pinned.starts_with("sha256:"));
    let shown = app
        .get("/api/v2/nodes/n1.example.com/bmc")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(shown.body["cert_fingerprint"], pinned.as_str());
    assert_eq!(shown.body["power"], "off");
    assert_eq!(
        power_of_node().await,
        "off",
        "the node shows what its BMC said"
    );
    assert!(!shows_password(&shown.body.to_string()));
    let audit: String =
        sqlx::query_scalar("SELECT summary::text FROM audit WHERE action = 'node.bmc_set'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(audit.contains(USER) && !shows_password(&audit), "{audit}");

    // bad settings change nothing
    for bad in [
        json!({"driver": "redfish", "address": "https://10.0.0.5/", "username": USER, "password": "x"}),
        json!({"driver": "redfish", "address": "10.0.0.5", "username": "a user", "password": "x"}),
        json!({"driver": "amt", "address": "10.0.0.5", "username": USER, "password": "x"}),
        json!({"driver": "ipmi", "address": "10.0.0.5", "system": "1", "username": USER, "password": "x"}),
        json!({"driver": "redfish", "address": "10.0.0.5", "username": USER}),
    ] {
        let refused = app
            .put("/api/v2/nodes/n1.example.com/bmc")
            .json(bad.clone())
            .send()
            .await;
        assert!(
            refused.status.is_client_error(),
            "{bad}: {}",
            refused.status
        );
    }
    let still = app
        .get("/api/v2/nodes/n1.example.com/bmc")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(still.body["cert_fingerprint"], pinned.as_str());

    app.delete("/api/v2/nodes/n1.example.com/bmc")
        .send()
        .await
        .status(StatusCode::NO_CONTENT);
    app.get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_changed_certificate_is_refused_until_accepted_and_bmc_failures_name_the_bmc() {
    let mut emulator = RedfishEmulator::start(1).await;
    let app = TestApp::new().await;
    app.node("n1.example.com").await;
    app.put("/api/v2/nodes/n1.example.com/bmc")
        .json(settings(&emulator, "wrong-password"))
        .send()
        .await
        .status(StatusCode::OK);
    let failed = app
        .get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .error(StatusCode::BAD_GATEWAY, "bmc_error");
    let message = failed.body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("BMC 127.0.0.1:{}: HTTP 401 for user {USER}", emulator.port)
    );
    let reason: String = sqlx::query_scalar("SELECT power_reason FROM node_bmcs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, message, "the failure is recorded on the BMC");

    app.put("/api/v2/nodes/n1.example.com/bmc")
        .json(settings(&emulator, PASSWORD))
        .send()
        .await
        .status(StatusCode::OK);
    let first = app
        .get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .status(StatusCode::OK);
    let pinned = first.body["cert_fingerprint"].clone();

    emulator.restart_with_new_certificate().await;
    let refused = app
        .get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .error(StatusCode::CONFLICT, "bmc_certificate_changed");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accept the new one")
    );
    let shown = app
        .get("/api/v2/nodes/n1.example.com/bmc")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(shown.body["cert_fingerprint"], pinned, "still the old pin");

    let accepted = app
        .delete("/api/v2/nodes/n1.example.com/bmc/cert")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(accepted.body["cert_fingerprint"], Value::Null);
    let again = app
        .get("/api/v2/nodes/n1.example.com/power")
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(again.body["state"], "off");
    assert!(again.body["cert_fingerprint"].is_string());
    assert_ne!(
        again.body["cert_fingerprint"], pinned,
        "the new certificate pinned"
    );
}
