//! The integration tests: one binary, real PostgreSQL, real sshd nodes.

mod support;

mod barclamps;
mod pg_harness;
