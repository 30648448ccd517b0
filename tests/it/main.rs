//! The integration tests: one binary, real PostgreSQL, real sshd nodes.

mod support;

mod annealer;
mod pg_harness;
mod proptest_annealer;
mod rig_smoke;
