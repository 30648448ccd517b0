//! SSH to nodes: crowbar's client key, host key pinning, and running commands.
//!
//! The script jig and the aliveness probes build on this. Host keys are never accepted
//! blindly: a caller either pins the key it stored earlier or explicitly trusts the first
//! key seen and stores it ([`HostKeyPin`]).

mod client;
mod error;
mod keys;

pub use client::{
    DEFAULT_OUTPUT_LIMIT, ExecOutput, ExitStatus, HostKeyPin, RUN_MARKER_VAR, Session, SshClient,
    SshTimeouts,
};
pub use error::SshError;
pub use keys::{ClientKey, fingerprint};
pub use russh::keys::PublicKey;
