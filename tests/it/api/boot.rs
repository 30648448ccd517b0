//! `GET /boot/{mac}`: the iPXE script of a node's current bootenv (SEMANTICS.md §10).

use axum::http::StatusCode;
use serde_json::json;

use crate::support::app::TestApp;

async fn boot_script(app: &TestApp, mac: &str) -> String {
    let reply = app
        .get(&format!("/boot/{mac}"))
        .no_token()
        .send()
        .await
        .status(StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
    let script = reply.body.as_str().expect("a text body").to_string();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    script
}

#[tokio::test]
async fn boot_scripts_follow_the_nodes_bootenv() {
    let app = TestApp::new().await;
    // an unknown machine gets discovery
    let unknown = boot_script(&app, "52-54-00-00-00-99").await;
    assert!(
        unknown.contains("crowbar: sledgehammer for 52:54:00:00:00:99"),
        "{unknown}"
    );
    assert!(unknown.contains("/sledgehammer/vmlinuz"));

    let reply = app
        .post("/api/v2/nodes")
        .json(json!({"name": "n1.example.com", "mac": "52:54:00:AA:BB:01"}))
        .send()
        .await
        .status(StatusCode::CREATED);
    let token = reply.body["token"].as_str().unwrap().to_string();
    let script = boot_script(&app, "52:54:00:aa:bb:01").await;
    assert!(
        script.contains("crowbar: sledgehammer for 52:54:00:aa:bb:01"),
        "{script}"
    );

    // an admin sends it to the installer: its next boot installs
    app.put("/api/v2/nodes/n1.example.com")
        .json(json!({"bootenv": "ubuntu-22.04-install"}))
        .send()
        .await
        .status(StatusCode::OK);
    let script = boot_script(&app, "52:54:00:aa:bb:01").await;
    assert!(
        script.contains("crowbar: ubuntu-22.04-install for n1.example.com"),
        "{script}"
    );
    assert!(script.contains("autoinstall"));
    assert!(script.contains("crowbar.node=n1.example.com"));

    // the installer (with the node's token) reports the local disk
    app.put("/api/v2/nodes/n1.example.com")
        .token(&token)
        .json(json!({"bootenv": "local"}))
        .send()
        .await
        .status(StatusCode::OK);
    let script = boot_script(&app, "52:54:00:aa:bb:01").await;
    assert!(
        script.contains("sanboot --no-describe --drive 0x80"),
        "{script}"
    );
    assert!(script.contains("Booting n1.example.com from the local disk"));

    app.put("/api/v2/nodes/n1.example.com")
        .json(json!({"bootenv": "rocky-9-install"}))
        .send()
        .await
        .status(StatusCode::OK);
    assert!(
        boot_script(&app, "52:54:00:aa:bb:01")
            .await
            .contains("inst.ks=")
    );
}

#[tokio::test]
async fn bad_macs_and_unknown_bootenvs_are_refused() {
    let app = TestApp::new().await;
    app.get("/boot/not-a-mac")
        .no_token()
        .send()
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_mac");
    app.node("n1.example.com").await;
    app.refused(
        app.put("/api/v2/nodes/n1.example.com")
            .json(json!({"bootenv": "windows-install"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_bootenv",
    )
    .await;
    app.refused(
        app.post("/api/v2/nodes")
            .json(json!({"name": "n2.example.com", "bootenv": "floppy"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_bootenv",
    )
    .await;
}
