//! Connecting to nodes and running commands on them.
//!
//! A [`Session`] is one authenticated SSH connection to a node, reused for any number of
//! commands: opening a connection costs a TCP handshake, a key exchange and a fork on the
//! node, a command on an open session only a channel.

use std::{
    net::{Shutdown, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use russh::{
    ChannelMsg, Disconnect, Sig,
    client::{self, Handle},
    keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate},
};
use tokio::{net::TcpStream, time::timeout};
use tracing::{debug, instrument, warn};

use super::{ClientKey, SshError, keys::fingerprint};

/// Nodes are managed as root.
const USER: &str = "root";
/// How long closing a session, or cleaning up after a timed-out command, may take.
const CLEANUP_GRACE: Duration = Duration::from_secs(3);
/// Environment variable marking every process of one command (see [`Session::exec`]).
pub const RUN_MARKER_VAR: &str = "CROWBAR_RUN";

/// How long each step may take before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshTimeouts {
    /// Establishing the connection: TCP connect plus the SSH version and key exchange,
    /// together. A node that is down times out here, and so does a hung sshd.
    pub connect: Duration,
    /// Public key authentication, after the handshake.
    pub auth: Duration,
    /// One command, from opening its channel to its exit status (default for
    /// [`Session::exec`]).
    pub command: Duration,
}

impl Default for SshTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            auth: Duration::from_secs(10),
            command: Duration::from_secs(300),
        }
    }
}

/// Which host key the node must present.
#[derive(Debug, Clone)]
pub enum HostKeyPin {
    /// Trust on first use: accept whatever key the node presents. The caller reads it from
    /// [`Session::host_key`] and stores it to pin it next time.
    FirstUse,
    /// Accept only this key; any other fails with [`SshError::HostKeyChanged`] before
    /// authenticating. Comments are ignored, the key itself must match.
    Expect(PublicKey),
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// It was killed by a signal (`"KILL"`, `"TERM"`, ... without the `SIG` prefix).
    Signal { name: String, core_dumped: bool },
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The most output (stdout and stderr together) kept of one command unless told otherwise
/// ([`SshClient::with_output_limit`]).
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// Opens sessions to nodes with crowbar's key. Cheap to clone; share one.
#[derive(Debug, Clone)]
pub struct SshClient {
    key: ClientKey,
    timeouts: SshTimeouts,
    output_limit: usize,
    config: Arc<client::Config>,
}

impl SshClient {
    pub fn new(key: ClientKey, timeouts: SshTimeouts) -> Self {
        let config = client::Config {
            nodelay: true,
            // A reused connection whose node died is noticed within about a minute even
            // when no command is running on it.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        };
        Self {
            key,
            timeouts,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            config: Arc::new(config),
        }
    }

    /// The most output (stdout and stderr together, in bytes) a command of this client's
    /// sessions may send; past it the command fails with [`SshError::OutputTooLarge`].
    pub fn with_output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes.max(1);
        self
    }

    pub fn timeouts(&self) -> SshTimeouts {
        self.timeouts
    }

    /// Connects to `addr` as root, checks its host key against `pin`, then authenticates
    /// with the client key.
    #[instrument(skip_all, fields(addr = %addr))]
    pub async fn connect(&self, addr: SocketAddr, pin: HostKeyPin) -> Result<Session, SshError> {
        let started = Instant::now();
        let limit = self.timeouts.connect;
        let tcp = match timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => return Err(SshError::ConnectTimeout { addr, after: limit }),
            Ok(Err(e)) => return Err(io_error(addr, e, started.elapsed())),
            Ok(Ok(tcp)) => tcp,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!("set_nodelay: {e}");
        }
        // A second handle on the socket, to cut it if the handshake stalls: russh runs the
        // connection in a task of its own that would otherwise wait for the peer forever.
        let cutter = tcp_clone(&tcp);

        let presented = Arc::new(Mutex::new(None));
        let handler = PinningHandler {
            pin,
            presented: presented.clone(),
            addr,
        };
        let remaining = limit.saturating_sub(started.elapsed());
        let handshake = timeout(
            remaining,
            client::connect_stream(self.config.clone(), tcp, handler),
        )
        .await;
        let mut handle = match handshake {
            Err(_) => {
                cut(&cutter);
                return Err(SshError::HandshakeTimeout { addr, after: limit });
            }
            Ok(Err(HandlerError::HostKeyChanged {
                expected,
                presented,
            })) => {
                cut(&cutter);
                warn!(%expected, %presented, "host key changed; not authenticating");
                return Err(SshError::HostKeyChanged {
                    addr,
                    expected,
                    presented,
                });
            }
            Ok(Err(HandlerError::Russh(e))) => {
                cut(&cutter);
                return Err(russh_error(addr, e, started.elapsed()));
            }
            Ok(Ok(handle)) => handle,
        };
        let host_key = presented
            .lock()
            .expect("host key slot poisoned")
            .take()
            .ok_or(SshError::Protocol {
                addr,
                source: russh::Error::UnknownKey,
            })?;

        let key = PrivateKeyWithHashAlg::new(self.key.private(), None);
        let auth = timeout(self.timeouts.auth, handle.authenticate_publickey(USER, key)).await;
        match auth {
            Ok(Ok(result)) if result.success() => {}
            Ok(Ok(_)) => {
                cut(&cutter);
                return Err(SshError::AuthRejected {
                    addr,
                    user: USER.into(),
                    fingerprint: self.key.fingerprint(),
                });
            }
            Ok(Err(e)) => {
                cut(&cutter);
                return Err(russh_error(addr, e, started.elapsed()));
            }
            Err(_) => {
                cut(&cutter);
                return Err(SshError::AuthTimeout {
                    addr,
                    after: self.timeouts.auth,
                });
            }
        }
        debug!(host_key = %fingerprint(&host_key), elapsed = ?started.elapsed(), "connected");
        Ok(Session {
            handle,
            addr,
            host_key,
            command_timeout: self.timeouts.command,
            output_limit: self.output_limit,
            cutter,
        })
    }
}

/// An authenticated connection to one node. Run as many commands on it as needed, one
/// after the other or concurrently.
pub struct Session {
    handle: Handle<PinningHandler>,
    addr: SocketAddr,
    host_key: PublicKey,
    command_timeout: Duration,
    output_limit: usize,
    cutter: Option<std::net::TcpStream>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("host_key", &fingerprint(&self.host_key))
            .field("closed", &self.handle.is_closed())
            .finish()
    }
}

impl Session {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host key the node presented (and that passed the pin).
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The connection is gone (closed by either side, or failed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Cuts the connection at once, without any SSH goodbye: commands running on it fail
    /// with [`SshError::Disconnected`]. For a node found dead while a command runs on it.
    pub fn abort(&self) {
        cut(&self.cutter);
    }

    /// Runs `command` through the node's shell with the session's command timeout, feeding it
    /// `stdin` (then end-of-file) if given.
    ///
    /// The command runs as `$SHELL -c <command>`, as `ssh node <command>` would, with
    /// [`RUN_MARKER_VAR`] set to a value unique to this run. The variable marks the command
    /// and all its descendants so that a command overrunning its timeout can be found and
    /// killed: OpenSSH refuses signal requests for root sessions, and closing the channel
    /// does not stop a command that is not writing.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, SshError> {
        self.exec_with_timeout(command, stdin, self.command_timeout)
            .await
    }

    /// [`exec`](Self::exec) with its own timeout. On timeout every process of the command
    /// (found by its [`RUN_MARKER_VAR`]) gets SIGKILL and the channel is closed; the session
    /// stays open.
    #[instrument(skip_all, fields(addr = %self.addr))]
    pub async fn exec_with_timeout(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let started = Instant::now();
        let marker = format!("{RUN_MARKER_VAR}={:016x}", rand::random::<u64>());
        let remote = format!(
            "exec env {marker} \"${{SHELL:-/bin/sh}}\" -c {}",
            shell_quote(command)
        );
        let channel = match timeout(limit, self.handle.channel_open_session()).await {
            Err(_) => {
                return Err(SshError::CommandTimeout {
                    addr: self.addr,
                    after: limit,
                });
            }
            Ok(Err(e)) => return Err(self.channel_error(e)),
            Ok(Ok(channel)) => channel,
        };
        let (mut read, write) = channel.split();
        let run = async {
            write
                .exec(true, remote)
                .await
                .map_err(|e| self.channel_error(e))?;
            let feed = async {
                if let Some(input) = stdin {
                    write.data(input).await?;
                }
                write.eof().await
            };
            let output = read_output(&mut read, self.output_limit);
            tokio::pin!(feed, output);
            // The command may exit without reading all its input: its output decides.
            let output = tokio::select! {
                output = &mut output => output,
                fed = &mut feed => {
                    if let Err(e) = fed {
                        debug!("stdin not fully delivered: {e}");
                    }
                    output.await
                }
            };
            output.map_err(|e| match e {
                ReadFailure::Channel(e) => self.channel_error(e),
                ReadFailure::TooLarge => SshError::OutputTooLarge {
                    addr: self.addr,
                    limit: self.output_limit,
                },
            })
        };
        let remaining = limit.saturating_sub(started.elapsed());
        let failure = match timeout(remaining, run).await {
            Ok(Ok(Some(output))) => {
                debug!(status = ?output.status, elapsed = ?started.elapsed(), "command finished");
                return Ok(output);
            }
            Ok(Ok(None)) => return Err(SshError::Disconnected { addr: self.addr }),
            Ok(Err(e @ SshError::OutputTooLarge { .. })) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => SshError::CommandTimeout {
                addr: self.addr,
                after: limit,
            },
        };
        // Timed out or too talkative: the command is stopped, not merely abandoned.
        let _ = timeout(CLEANUP_GRACE, write.close()).await;
        match timeout(CLEANUP_GRACE, self.run_plain(&kill_marked(&marker))).await {
            Ok(Ok(Some(_))) => debug!("killed the processes of the stopped command"),
            other => warn!("could not kill the stopped command: {other:?}"),
        }
        Err(failure)
    }

    /// Runs `command` as it is: no marker, no timeout of its own.
    async fn run_plain(&self, command: &str) -> Result<Option<ExecOutput>, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        let (mut read, write) = channel.split();
        write.exec(true, command).await?;
        write.eof().await?;
        read_output(&mut read, self.output_limit)
            .await
            .map_err(|e| match e {
                ReadFailure::Channel(e) => e,
                ReadFailure::TooLarge => russh::Error::Inconsistent,
            })
    }

    /// Ends the session politely.
    pub async fn close(self) {
        let _ = timeout(
            CLEANUP_GRACE,
            self.handle.disconnect(Disconnect::ByApplication, "", "en"),
        )
        .await;
        cut(&self.cutter);
    }

    fn channel_error(&self, e: russh::Error) -> SshError {
        if self.handle.is_closed() {
            SshError::Disconnected { addr: self.addr }
        } else {
            russh_error(self.addr, e, Duration::ZERO)
        }
    }
}

/// Why reading a command's output stopped early.
#[derive(Debug)]
enum ReadFailure {
    Channel(russh::Error),
    /// More than the limit of stdout and stderr together.
    TooLarge,
}

/// Collects stdout, stderr (at most `limit` bytes together) and the exit status until the
/// server closes the channel. `Ok(None)`: the channel ended without an exit status (the
/// connection went away).
async fn read_output(
    read: &mut russh::ChannelReadHalf,
    limit: usize,
) -> Result<Option<ExecOutput>, ReadFailure> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status = None;
    let keep = |into: &mut Vec<u8>, data: &[u8], other: usize| {
        if into.len() + other + data.len() > limit {
            return Err(ReadFailure::TooLarge);
        }
        into.extend_from_slice(data);
        Ok(())
    };
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => keep(&mut stdout, &data, stderr.len())?,
            ChannelMsg::ExtendedData { data, ext: 1 } => keep(&mut stderr, &data, stdout.len())?,
            ChannelMsg::ExitStatus { exit_status } => status = Some(ExitStatus::Code(exit_status)),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                ..
            } => {
                status = Some(ExitStatus::Signal {
                    name: signal_name_of(&signal_name),
                    core_dumped,
                })
            }
            ChannelMsg::Failure => return Err(ReadFailure::Channel(russh::Error::RequestDenied)),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(status.map(|status| ExecOutput {
        status,
        stdout,
        stderr,
    }))
}

/// `s` as one single-quoted POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell command that SIGKILLs every process whose environment holds `marker`, in rounds
/// until none is left (a process may fork while a round runs).
fn kill_marked(marker: &str) -> String {
    format!(
        r#"for round in 1 2 3 4 5; do found=; for f in $(grep -lzx '{marker}' /proc/[0-9]*/environ 2>/dev/null); do p=${{f#/proc/}}; kill -9 "${{p%/environ}}" 2>/dev/null && found=1; done; [ -z "$found" ] && break; done; true"#
    )
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// Checks the server's host key against the pin and remembers the key presented.
struct PinningHandler {
    pin: HostKeyPin,
    presented: Arc<Mutex<Option<PublicKey>>>,
    addr: SocketAddr,
}

#[derive(Debug)]
enum HandlerError {
    Russh(russh::Error),
    HostKeyChanged { expected: String, presented: String },
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

impl client::Handler for PinningHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = server_key.public_key();
        let verdict = match &self.pin {
            HostKeyPin::FirstUse => {
                debug!(addr = %self.addr, host_key = %fingerprint(&presented), "host key accepted on first use");
                Ok(true)
            }
            HostKeyPin::Expect(expected) if expected.key_data() == presented.key_data() => Ok(true),
            HostKeyPin::Expect(expected) => Err(HandlerError::HostKeyChanged {
                expected: fingerprint(expected),
                presented: fingerprint(&presented),
            }),
        };
        *self.presented.lock().expect("host key slot poisoned") = Some(presented);
        verdict
    }
}

fn io_error(addr: SocketAddr, e: std::io::Error, elapsed: Duration) -> SshError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => SshError::ConnectionRefused { addr },
        HostUnreachable | NetworkUnreachable => SshError::Unreachable { addr, source: e },
        TimedOut => SshError::ConnectTimeout {
            addr,
            after: elapsed,
        },
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            SshError::Disconnected { addr }
        }
        _ => SshError::Io { addr, source: e },
    }
}

fn russh_error(addr: SocketAddr, e: russh::Error, elapsed: Duration) -> SshError {
    match e {
        russh::Error::IO(io) => io_error(addr, io, elapsed),
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError
        | russh::Error::RecvError
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout => SshError::Disconnected { addr },
        other => SshError::Protocol {
            addr,
            source: other,
        },
    }
}

fn tcp_clone(tcp: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    tcp.as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
        .ok()
}

fn cut(socket: &Option<std::net::TcpStream>) {
    if let Some(socket) = socket {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timeouts_are_bounded() {
        let t = SshTimeouts::default();
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.auth, Duration::from_secs(10));
        assert_eq!(t.command, Duration::from_secs(300));
    }

    #[test]
    fn commands_are_quoted_as_one_shell_word() {
        assert_eq!(shell_quote("echo hi"), "'echo hi'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let tricky = r#"a 'b' "c" $d `e` \f ; g"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(tricky)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
    }

    #[test]
    fn the_kill_command_kills_marked_processes_only() {
        use std::process::Command;
        let marker_value = format!("{:016x}", rand::random::<u64>());
        let mut marked = Command::new("sleep")
            .arg("30")
            .env(RUN_MARKER_VAR, &marker_value)
            .spawn()
            .unwrap();
        let mut unmarked = Command::new("sleep")
            .arg("30")
            .env(RUN_MARKER_VAR, "another-run")
            .spawn()
            .unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(kill_marked(&format!("{RUN_MARKER_VAR}={marker_value}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let status = marked.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(
            unmarked.try_wait().unwrap().is_none(),
            "unmarked was killed"
        );
        unmarked.kill().unwrap();
        unmarked.wait().unwrap();
    }

    #[test]
    fn signal_names_have_no_sig_prefix() {
        assert_eq!(signal_name_of(&Sig::KILL), "KILL");
        assert_eq!(signal_name_of(&Sig::Custom("WINCH".into())), "WINCH");
    }

    #[test]
    fn io_errors_map_to_what_happened() {
        let addr: SocketAddr = "198.51.100.2:22".parse().unwrap();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            io_error(addr, refused, Duration::ZERO),
            SshError::ConnectionRefused { .. }
        ));
        let unreachable = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        let err = io_error(addr, unreachable, Duration::ZERO);
        assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("198.51.100.2:22"), "{err}");
    }

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIKQDon7DBltbjZH+hxj71vAOB9ziHwqNfWK5WB9pab5 a";

    fn handler(pin: HostKeyPin) -> PinningHandler {
        PinningHandler {
            pin,
            presented: Arc::new(Mutex::new(None)),
            addr: "198.51.100.2:22".parse().unwrap(),
        }
    }

    fn other_key() -> PublicKey {
        let tmp = tempfile::tempdir().unwrap();
        ClientKey::load_or_create(tmp.path())
            .unwrap()
            .public_key()
            .clone()
    }

    #[tokio::test]
    async fn first_use_accepts_and_records_the_key() {
        use client::Handler;
        let key = PublicKey::from_openssh(KEY_A).unwrap();
        let mut h = handler(HostKeyPin::FirstUse);
        let ok = h.check_server_key(&key.clone().into()).await.unwrap();
        assert!(ok);
        let seen = h.presented.lock().unwrap().clone().unwrap();
        assert_eq!(seen.key_data(), key.key_data());
    }

    #[tokio::test]
    async fn expected_key_matches_regardless_of_comment() {
        use client::Handler;
        let mut pinned = PublicKey::from_openssh(KEY_A).unwrap();
        pinned.set_comment("stored by crowbar");
        let presented = PublicKey::from_openssh(KEY_A).unwrap();
        let mut h = handler(HostKeyPin::Expect(pinned));
        assert!(h.check_server_key(&presented.into()).await.unwrap());
    }

    #[tokio::test]
    async fn another_key_is_refused_with_both_fingerprints() {
        use client::Handler;
        let pinned = PublicKey::from_openssh(KEY_A).unwrap();
        let presented = other_key();
        let mut h = handler(HostKeyPin::Expect(pinned.clone()));
        match h.check_server_key(&presented.clone().into()).await {
            Err(HandlerError::HostKeyChanged {
                expected,
                presented: seen,
            }) => {
                assert_eq!(expected, fingerprint(&pinned));
                assert_eq!(seen, fingerprint(&presented));
            }
            other => panic!("expected HostKeyChanged, got {other:?}"),
        }
    }

    #[test]
    fn pin_mismatch_names_both_fingerprints() {
        let a = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIKQDon7DBltbjZH+hxj71vAOB9ziHwqNfWK5WB9pab5 a",
        )
        .unwrap();
        let err = SshError::HostKeyChanged {
            addr: "198.51.100.2:22".parse().unwrap(),
            expected: fingerprint(&a),
            presented: "SHA256:other".into(),
        };
        let msg = err.to_string();
        assert!(msg.contains("198.51.100.2:22"), "{msg}");
        assert!(
            msg.contains("SHA256:uRvjRhrwrueQXn6z1Yc7Q/aHgiIQ3G3eVAOT4OTO6Y4"),
            "{msg}"
        );
    }
}
