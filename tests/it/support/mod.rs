//! Test harness: databases, namespace nodes, daemons.

pub mod daemon;
pub mod db;
