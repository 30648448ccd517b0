//! The integration tests: one binary, real PostgreSQL, real sshd nodes.

mod support;

mod annealer;
mod ansible_jig;
mod api;
mod barclamps;
mod cli;
mod content;
mod documents;
mod event_duty;
mod failover;
mod first_run;
mod ha_rig;
mod hooks;
mod http_edge;
mod metrics;
mod migrations;
mod multi_daemon;
mod pg_harness;
mod power;
mod power_inband;
mod power_ipmi;
mod power_ops;
mod proptest_annealer;
mod provisioning;
mod rig_smoke;
mod script_jig;
mod serve;
mod store;
mod ui;
mod upgrades;
