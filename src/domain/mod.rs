//! The model and its rules: states, graph rules, data layering. No SQL, no HTTP here.

pub mod barclamp;
pub mod bind;
pub mod catalog;
pub mod data;
pub mod ipam;
pub mod key;
pub mod noderole;
pub mod number;
pub mod plan;
pub mod reason;
pub mod state;
pub mod untrusted;

#[cfg(test)]
mod proptests;
