//! The daemon's one way into its nodes (SEMANTICS.md §6).
//!
//! [`NodeAccess`] holds the SSH client with the daemon's key, host keys pinned per node on
//! first contact (`nodes.host_key`), a cache of open connections reused across consecutive
//! runs on a node, and one shared ICMP pinger. The script jig, the installer and the
//! prober (`crate::probe`) all reach nodes through it.
//!
//! A node is alive when it answers ping on its address and root SSH with the daemon's key
//! works (with the pinned host key): [`NodeAccess::check`]. A changed host key is an
//! [`AccessError`] whose reason says `host key changed: ...`; the node stays dead until an
//! admin clears the pin (`DELETE /api/v2/nodes/{id}/host_key`).

mod ping;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::PgPool;

pub use ping::Pinger;

use crate::{
    db::{self, events::Actor},
    ssh::{
        ClientKey, HostKeyPin, PublicKey, Session, SshClient, SshError, SshTimeouts, fingerprint,
    },
    units::parse_duration,
};

/// The SSH port of nodes.
pub const SSH_PORT: u16 = 22;

/// How the daemon reaches nodes: ping and SSH limits.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessSettings {
    /// How long one ping waits for its reply.
    #[arg(long, env = "CROWBAR_PING_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub ping_timeout: Duration,
    /// Pings sent before a node counts as not answering.
    #[arg(long, env = "CROWBAR_PING_ATTEMPTS", default_value_t = 3)]
    pub ping_attempts: u16,
    /// TCP connect plus SSH handshake.
    #[arg(long, env = "CROWBAR_SSH_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub ssh_connect_timeout: Duration,
    /// SSH public key authentication.
    #[arg(long, env = "CROWBAR_SSH_AUTH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ssh_auth_timeout: Duration,
    /// Each SSH command other than a run's scripts (a run's scripts get the run's timeout).
    #[arg(long, env = "CROWBAR_SSH_COMMAND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub ssh_command_timeout: Duration,
    /// How long an unused connection to a node is kept open for the next run.
    #[arg(long, env = "CROWBAR_SSH_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub ssh_idle_timeout: Duration,
    /// The most output (stdout and stderr together) the daemon keeps of one command on a
    /// node, e.g. a run's scripts; a command sending more is stopped and fails. Bounds the
    /// daemon's memory whatever a node sends.
    #[arg(long, env = "CROWBAR_SSH_OUTPUT_LIMIT", default_value = "4MiB", value_parser = crate::units::parse_size)]
    pub ssh_output_limit: usize,
}

impl Default for AccessSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

impl AccessSettings {
    pub fn ssh_timeouts(&self) -> SshTimeouts {
        SshTimeouts {
            connect: self.ssh_connect_timeout,
            auth: self.ssh_auth_timeout,
            command: self.ssh_command_timeout,
        }
    }
}

/// A node to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub id: i64,
    pub name: String,
    pub addr: IpAddr,
}

impl NodeRef {
    pub fn ssh_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, SSH_PORT)
    }
}

/// Why a node could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Ping(String),
    #[error("ssh: {0}")]
    Ssh(#[from] SshError),
    /// The pinned host key in the database is not a public key.
    #[error("the pinned host key is unreadable ({0}); clear it to pin the node's key again")]
    BadPin(String),
    #[error("database error while reaching the node: {0}")]
    Db(#[from] db::Error),
}

impl AccessError {
    /// The failure says the node is not alive (§6), as opposed to a problem of ours.
    pub fn node_is_dead(&self) -> bool {
        !matches!(self, AccessError::Db(_) | AccessError::BadPin(_))
    }

    /// The reason recorded when this failure marks the node dead.
    pub fn reason(&self) -> String {
        match self {
            AccessError::Ssh(SshError::HostKeyChanged {
                expected,
                presented,
                ..
            }) => format!(
                "host key changed: pinned {expected}, presented {presented}; nothing runs on \
                 the node until an admin accepts the new key (DELETE /api/v2/nodes/<node>/host_key)"
            ),
            other => other.to_string(),
        }
    }
}

struct Cached {
    addr: SocketAddr,
    session: Arc<Session>,
    last_used: Instant,
}

/// The daemon's way into its nodes; share one per daemon.
pub struct NodeAccess {
    pool: PgPool,
    ssh: SshClient,
    key: ClientKey,
    pinger: Pinger,
    sessions: Mutex<HashMap<i64, Cached>>,
    settings: AccessSettings,
}

impl std::fmt::Debug for NodeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAccess")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl NodeAccess {
    pub fn new(pool: PgPool, key: ClientKey, settings: AccessSettings) -> Arc<NodeAccess> {
        Arc::new(NodeAccess {
            pool,
            ssh: SshClient::new(key.clone(), settings.ssh_timeouts())
                .with_output_limit(settings.ssh_output_limit),
            key,
            pinger: Pinger::default(),
            sessions: Mutex::new(HashMap::new()),
            settings,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> &AccessSettings {
        &self.settings
    }

    /// The daemon's key, as nodes authorize it.
    pub fn client_key(&self) -> &ClientKey {
        &self.key
    }

    /// Pings the node (several attempts, see [`AccessSettings`]).
    pub async fn ping(&self, node: &NodeRef) -> Result<Duration, AccessError> {
        self.pinger
            .ping(
                node.addr,
                self.settings.ping_timeout,
                self.settings.ping_attempts,
            )
            .await
            .map_err(AccessError::Ping)
    }

    /// An open, authenticated connection to the node: the cached one when it is still
    /// open, else a new one (checked against the pinned host key, pinning it on first
    /// contact).
    pub async fn session(&self, node: &NodeRef) -> Result<Arc<Session>, AccessError> {
        let addr = node.ssh_addr();
        if let Some(session) = self.cached(node.id, addr) {
            return Ok(session);
        }
        let session = Arc::new(self.connect(node, "jig:script").await?);
        let mut sessions = self.sessions.lock().expect("session cache poisoned");
        let previous = sessions.insert(
            node.id,
            Cached {
                addr,
                session: session.clone(),
                last_used: Instant::now(),
            },
        );
        if let Some(previous) = previous {
            previous.session.abort();
        }
        Ok(session)
    }

    fn cached(&self, node_id: i64, addr: SocketAddr) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("session cache poisoned");
        let cached = sessions.get_mut(&node_id)?;
        if cached.addr == addr && !cached.session.is_closed() {
            cached.last_used = Instant::now();
            return Some(cached.session.clone());
        }
        if let Some(stale) = sessions.remove(&node_id) {
            stale.session.abort();
        }
        None
    }

    /// Drops the cached connection to a node, cutting it: commands still running on it
    /// fail at once.
    pub fn forget(&self, node_id: i64) {
        let removed = self
            .sessions
            .lock()
            .expect("session cache poisoned")
            .remove(&node_id);
        if let Some(cached) = removed {
            cached.session.abort();
        }
    }

    /// Closes connections unused for longer than the idle timeout.
    pub fn evict_idle(&self) {
        let limit = self.settings.ssh_idle_timeout;
        self.sessions
            .lock()
            .expect("session cache poisoned")
            .retain(|_, cached| {
                let keep = cached.last_used.elapsed() < limit && !cached.session.is_closed();
                if !keep {
                    cached.session.abort();
                }
                keep
            });
    }

    /// Open cached connections (for tests and metrics).
    pub fn cached_sessions(&self) -> usize {
        self.sessions.lock().expect("session cache poisoned").len()
    }

    /// A new connection to the node, host key checked against the pin (or pinned now).
    /// `actor` names who pins a first key in the node's history.
    #[tracing::instrument(skip_all, fields(node = %node.name, node_id = node.id))]
    pub async fn connect(&self, node: &NodeRef, actor: &str) -> Result<Session, AccessError> {
        let pinned = db::host_keys::pinned(&self.pool, node.id).await?;
        let pin = match &pinned {
            Some(line) => HostKeyPin::Expect(
                PublicKey::from_openssh(line).map_err(|e| AccessError::BadPin(e.to_string()))?,
            ),
            None => HostKeyPin::FirstUse,
        };
        let session = self.ssh.connect(node.ssh_addr(), pin).await?;
        if pinned.is_none() {
            let presented = session.host_key();
            let mut line = presented
                .to_openssh()
                .map_err(|e| AccessError::BadPin(e.to_string()))?;
            if presented.comment().is_empty() {
                line = line.trim_end().to_string();
            }
            let print = fingerprint(presented);
            let mut tx = self.pool.begin().await.map_err(db::Error::from)?;
            let now =
                db::host_keys::pin_first(&mut tx, node.id, &line, &print, &Actor(actor.into()))
                    .await?;
            tx.commit().await.map_err(db::Error::from)?;
            // Another daemon pinned another key first: that one counts.
            if let Some(now) = now
                && let Ok(stored) = PublicKey::from_openssh(&now)
                && stored.key_data() != presented.key_data()
            {
                let addr = session.addr();
                session.close().await;
                return Err(AccessError::Ssh(SshError::HostKeyChanged {
                    addr,
                    expected: fingerprint(&stored),
                    presented: print,
                }));
            }
            tracing::info!(node = %node.name, host_key = %print, "host key pinned on first contact");
        }
        Ok(session)
    }

    /// The full aliveness check (§6): ping, then a fresh SSH connection with the daemon's
    /// key against the pinned host key.
    pub async fn check(&self, node: &NodeRef) -> Result<(), AccessError> {
        self.ping(node).await?;
        let session = self.connect(node, "probe").await?;
        session.close().await;
        Ok(())
    }

    /// The check before a jig's run on the node: a ping, then its (cached, pinned)
    /// connection.
    pub async fn reach(&self, node: &NodeRef) -> Result<Arc<Session>, AccessError> {
        self.ping(node).await?;
        self.session(node).await
    }

    /// A jig's run (of `role`, by `actor`) could not reach the node `when` (before or during
    /// the run): the node is dead (§6) unless the failure was ours. The runlog's line.
    pub async fn unreachable(
        &self,
        node: &NodeRef,
        actor: &str,
        role: &str,
        error: AccessError,
        when: &str,
    ) -> String {
        self.forget(node.id);
        let reason = error.reason();
        if !error.node_is_dead() {
            return reason;
        }
        let why = format!("{reason} ({when} of {role})");
        if let Err(e) = self.mark_dead(node.id, actor, &why).await {
            tracing::warn!(node = %node.name, error = %e, "cannot mark the node dead");
        }
        format!("{} is unreachable {when}; marked dead: {reason}", node.name)
    }

    /// Marks a node dead (running the death ripple) unless it is already; cuts its cached
    /// connection. Records `actor` and `reason` in the node's history.
    pub async fn mark_dead(&self, node_id: i64, actor: &str, reason: &str) -> db::Result<bool> {
        self.forget(node_id);
        self.set_alive(node_id, false, actor, reason).await
    }

    /// Marks a node alive unless it is already (the annealer resumes on it).
    pub async fn mark_alive(&self, node_id: i64, actor: &str, reason: &str) -> db::Result<bool> {
        self.set_alive(node_id, true, actor, reason).await
    }

    /// Returns whether the flag changed.
    async fn set_alive(
        &self,
        node_id: i64,
        alive: bool,
        actor: &str,
        reason: &str,
    ) -> db::Result<bool> {
        db::aliveness::set(&self.pool, node_id, alive, &Actor(actor.into()), reason).await
    }
}
