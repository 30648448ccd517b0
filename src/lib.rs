//! crowbar: a bare-metal provisioning orchestrator.
//!
//! Dependencies point one way: `http → domain ← db`, `annealer/runner → domain, db, jig`,
//! `jig/probe/provisioner → access → ssh`. State rules live in `domain`, SQL only in `db`
//! (and `pg`'s bootstrap), the web edge (API and UI) in `http`, the operations both share in
//! `http::actions`. `cli` ties everything together for the binary.

pub mod access;
pub mod admin_token;
pub mod annealer;
pub mod app;
pub mod barclamps;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod events;
pub mod hooks;
pub mod http;
pub mod jig;
pub mod node_rig;
pub mod passwords;
pub mod pg;
pub mod power;
pub mod private_files;
pub mod probe;
pub mod provisioner;
pub mod runner;
pub mod secret;
pub mod settings;
pub mod simulate;
pub mod ssh;
pub mod telemetry;
pub mod tls;
pub mod units;
