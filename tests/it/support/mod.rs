//! Test harness: databases, namespace nodes, daemons.

pub mod db;
pub mod world;
