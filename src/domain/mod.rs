//! The model and its rules: states, graph rules, validation. No SQL, no HTTP here.

pub mod barclamp;
pub mod state;
