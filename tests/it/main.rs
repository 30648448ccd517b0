//! The integration tests: one binary, real PostgreSQL, real sshd nodes.

mod support;

mod pg_harness;
mod serve;
