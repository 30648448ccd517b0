//! Test harness: databases, namespace nodes, daemons.
//!
//! Each helper serves some tests, not necessarily all of them in every build.
#![allow(dead_code)]

pub mod app;
pub mod audit;
pub mod bmc;
pub mod browser;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod ha;
pub mod ipmi;
pub mod nodes;
pub mod python;
pub mod site;
pub mod sse;
pub mod ui_site;
pub mod world;

/// Where every test's HTTP client starts: proxy settings ignored, and the process's TLS
/// provider installed first (building a client fails without one).
/// A loopback TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn client_builder() -> reqwest::ClientBuilder {
    crowbar::tls::install_default_provider();
    reqwest::Client::builder().no_proxy()
}
