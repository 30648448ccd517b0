//! Why a provisioner jig failed (the `os-install` handshake, the DHCP and DNS databases),
//! in the words its runlog shows an admin. Discovery answers HTTP requests and has its own
//! error (`discovery::DiscoveryError`).

use std::path::PathBuf;

use nix::{errno::Errno, unistd::Pid};

use super::BootenvError;
use crate::{access::AccessError, db, ssh::SshError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the handshake's state failed.
    #[error("database: {0}")]
    Database(#[from] db::Error),
    /// The node's bootenv could not be changed (it was deleted, say).
    #[error(transparent)]
    NodeUpdate(db::Error),
    #[error("provisioner/os names no install bootenv")]
    NoInstallBootenv,
    #[error("`{0}` is not an install bootenv in bootenvs/")]
    NotAnInstallBootenv(String),
    #[error("unknown install state `{0}`")]
    UnknownInstallState(String),
    #[error("{node} has no MAC: it cannot boot over the network")]
    NoMac { node: String },
    #[error(transparent)]
    Bootenv(#[from] BootenvError),
    /// What `/boot/<mac>` renders is not the bootenv the handshake waits for.
    #[error("the boot script of {mac} is not {bootenv}:\n{script}")]
    WrongBootScript {
        mac: String,
        bootenv: String,
        script: String,
    },
    #[error("{node} has no address to reach it by")]
    NoAddress { node: String },
    // the SSH errors are large and rare: boxed, they do not make every result large
    #[error("cannot reach {node} to reboot it: {}", .source.reason())]
    Unreachable {
        node: String,
        source: Box<AccessError>,
    },
    #[error("rebooting {node}: {source}")]
    Reboot { node: String, source: Box<SshError> },
    #[error("the reboot command failed on {node}: {stderr}")]
    RebootFailed { node: String, stderr: String },
    #[error("the BMC of {node} did not boot it from the network: {reason}")]
    PowerFailed { node: String, reason: String },
    #[error("reading the nodes: {0}")]
    ReadNodes(#[source] db::Error),
    #[error("recording the reservations: {0}")]
    RecordReservations(#[source] db::Error),
    #[error("the dnsmasq jig has nothing to write for role `{0}`")]
    NoDnsmasqFile(String),
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dnsmasq is not running here: cannot read {}: {source}", .pid_file.display())]
    NoPidFile {
        pid_file: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot signal dnsmasq: {} {why}", .pid_file.display())]
    NotDnsmasq {
        pid_file: PathBuf,
        why: PidFileProblem,
    },
    #[error("cannot signal dnsmasq (pid {pid}): {source}")]
    Signal { pid: Pid, source: Errno },
}

/// What is wrong with the pid in dnsmasq's pid file, which is only data: crowbar runs as
/// root, and only a dnsmasq may get its signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidFileProblem {
    #[error("holds no pid (`{}`)", .0.escape_debug())]
    NoPid(String),
    #[error("holds pid {0}, which is no single process")]
    NotOneProcess(i32),
    #[error("holds pid {0}, but no process has it: dnsmasq is not running")]
    NoProcess(i32),
    #[error("holds pid {pid}, which is `{}`, not dnsmasq", .comm.escape_debug())]
    OtherProcess { pid: i32, comm: String },
}

/// Connections, transactions: the handshake's database work.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e.into())
    }
}
