//! What can go wrong talking SSH to a node, in terms a caller can act on.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// An SSH failure. Each variant names the address (or file) it concerns, so the message
/// alone says what happened and where.
///
/// Callers tell failures apart by variant: a node that refuses connections (sshd down) is
/// not the same as one that does not answer at all (down, unplugged, hung), and neither is
/// the same as a node presenting an unexpected host key (reinstalled, or an impostor).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The address answered with a TCP reset: the host is up, nothing listens on the port.
    #[error("connection to {addr} refused (is sshd running?)")]
    ConnectionRefused { addr: SocketAddr },

    /// The kernel reports no route to the address (no neighbour answers, network down).
    #[error("{addr} is unreachable: {source}")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The TCP connection was not established in time (host down, link down, packets dropped).
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },

    /// TCP is up but the SSH server did not complete the version and key exchange in time
    /// (a hung or overloaded sshd).
    #[error("SSH handshake with {addr} timed out after {after:?}")]
    HandshakeTimeout { addr: SocketAddr, after: Duration },

    /// The server presented a host key other than the pinned one. Nothing was authenticated
    /// or run.
    #[error(
        "host key of {addr} changed: expected {expected}, presented {presented}; refusing to authenticate"
    )]
    HostKeyChanged {
        addr: SocketAddr,
        /// SHA256 fingerprint of the pinned key (`SHA256:...`).
        expected: String,
        /// SHA256 fingerprint of the key the server presented.
        presented: String,
    },

    /// The server did not accept our key for the user.
    #[error("{addr} rejected public key authentication as {user} with key {fingerprint}")]
    AuthRejected {
        addr: SocketAddr,
        user: String,
        fingerprint: String,
    },

    /// Authentication did not complete in time.
    #[error("authentication to {addr} timed out after {after:?}")]
    AuthTimeout { addr: SocketAddr, after: Duration },

    /// A command did not finish in time. It was sent SIGKILL and its channel closed; the
    /// session stays usable if the server is healthy.
    #[error("command on {addr} did not finish within {after:?}")]
    CommandTimeout { addr: SocketAddr, after: Duration },

    /// A command sent more output (stdout and stderr together) than the daemon keeps. Its
    /// processes were sent SIGKILL and its channel closed: a node cannot make the daemon
    /// hold more than this per command, whatever it sends.
    #[error("command on {addr} sent more than {limit} bytes of output; it was stopped")]
    OutputTooLarge { addr: SocketAddr, limit: usize },

    /// The connection ended while a command was running or being started.
    #[error("connection to {addr} was lost")]
    Disconnected { addr: SocketAddr },

    /// The SSH conversation failed (bad packet, unsupported algorithms, refused channel...).
    #[error("SSH protocol error with {addr}: {source}")]
    Protocol {
        addr: SocketAddr,
        #[source]
        source: russh::Error,
    },

    /// Another I/O failure while connecting.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The client key could not be read, written or parsed.
    #[error("client key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

impl SshError {
    /// The failure says the node is not reachable over SSH right now (as opposed to a
    /// security or configuration problem).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::ConnectionRefused { .. }
                | SshError::Unreachable { .. }
                | SshError::ConnectTimeout { .. }
                | SshError::HandshakeTimeout { .. }
                | SshError::Disconnected { .. }
        )
    }
}
