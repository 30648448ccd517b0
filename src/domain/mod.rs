//! The model and its rules: states, graph rules, data layering. No SQL, no HTTP here.

pub mod barclamp;
pub mod bind;
pub mod bmc;
pub mod data;
pub mod desired_state;
pub mod ipam;
pub mod key;
pub mod node_role;
pub mod number;
pub mod policy;
pub mod reason;
pub mod role_catalog;
pub mod state;
pub mod untrusted;

#[cfg(test)]
mod proptests;
