//! The provisioner on real parts (SEMANTICS.md §10–11): discovery, dnsmasq serving DHCP and
//! DNS to namespace nodes, and the OS-install handshake.

mod discovery;
mod dnsmasq;
mod os_install;

use axum::http::StatusCode;
use crowbar::provisioner::dnsmasq::{DHCP_ROLE, DNS_ROLE};
use serde_json::json;

use crate::support::app::TestApp;

/// The admin node that the DHCP and DNS databases are bound to.
pub const ADMIN: &str = "crowbar-admin.test";

/// The admin network, on `v4prefix`: discovered machines register with addresses on it.
async fn admin_network(app: &TestApp, v4prefix: &str) {
    app.post("/api/v2/networks")
        .json(json!({"name": "admin", "v4prefix": v4prefix}))
        .send()
        .await
        .status(StatusCode::CREATED);
}

/// An alive admin node (simulated: no address) with both databases bound and committed.
async fn databases_on_admin_node(app: &TestApp) {
    app.post("/api/v2/nodes")
        .json(json!({"name": ADMIN, "admin": true}))
        .send()
        .await
        .status(StatusCode::CREATED);
    app.put(&format!("/api/v2/nodes/{ADMIN}"))
        .json(json!({"alive": true}))
        .send()
        .await
        .status(StatusCode::OK);
    for role in [DHCP_ROLE, DNS_ROLE] {
        app.bind(ADMIN, role, "system").await;
    }
    app.put(&format!("/api/v2/nodes/{ADMIN}/commit"))
        .send()
        .await
        .status(StatusCode::OK);
}
mod daemon;
