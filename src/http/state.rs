//! What every handler can reach: the pool, the hooks, the event hub, the provisioner and the
//! edge's own limits, built once by the daemon and cloned into each request.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::http::ui::throttle::{LoginSettings, LoginThrottle};

/// A quiet event stream sends a comment line this often, so proxies keep the connection
/// (when the server's idle timeout allows it: [`keep_alive_within`]).
pub const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive interval under a server that closes connections idle for `idle`:
/// [`EVENT_KEEP_ALIVE`], or a third of `idle` when that is shorter.
pub fn keep_alive_within(idle: Duration) -> Duration {
    EVENT_KEEP_ALIVE.min(idle / 3)
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The annealer's run cap, for explaining "global cap reached" in noderole reasons.
    pub run_cap: i64,
    /// Role hooks; veto hooks run inside the transactions of binds and commits.
    pub hooks: crate::hooks::Hooks,
    /// The daemon's SSH public key (`authorized_keys` line) nodes must authorize for root.
    pub ssh_public_key: Option<String>,
    /// Numbers events and wakes event-stream readers.
    pub events: crate::events::EventHub,
    /// Cancelled when the daemon shuts down: long-lived responses (event streams) end.
    pub shutdown: CancellationToken,
    /// Boot environments and where nodes reach crowbar.
    pub provisioner: std::sync::Arc<crate::provisioner::Provisioner>,
    /// Browsers reach crowbar over HTTPS (TLS here or at a proxy): the session cookie is
    /// `Secure`.
    pub secure_cookies: bool,
    /// How often a quiet event stream sends a keep-alive comment: within the server's idle
    /// timeout, so a healthy stream is never taken for an idle connection.
    pub event_keep_alive: Duration,
    /// Password hashing, a bounded number at once.
    pub passwords: crate::passwords::Passwords,
    /// Failed UI logins, to back off from.
    pub logins: std::sync::Arc<LoginThrottle>,
    /// Refused requests recorded in the audit trail, a bounded number a minute.
    pub refusals: std::sync::Arc<crate::http::audit::Refusals>,
    /// Nodes' BMCs: their sealed credentials' vault and the drivers' timeouts.
    pub power: std::sync::Arc<crate::power::node::PowerControl>,
}

impl AppState {
    /// State with the run cap of the annealer's settings (flag defaults and `CROWBAR_*`),
    /// the default event retention and login limits, and a shutdown token of its own.
    pub fn new(pool: PgPool) -> Self {
        Self {
            events: crate::events::EventHub::new(
                pool.clone(),
                crate::events::Retention::default(),
                crate::events::Duty::always(),
            ),
            pool: pool.clone(),
            run_cap: crate::annealer::AnnealerSettings::default().run_cap,
            hooks: crate::hooks::Hooks::default(),
            ssh_public_key: None,
            shutdown: CancellationToken::new(),
            provisioner: crate::provisioner::Provisioner::new(
                &crate::provisioner::ProvisionerSettings::default(),
                std::net::SocketAddr::from(([127, 0, 0, 1], 3000)),
            )
            .expect("the shipped bootenvs are checked by their tests"),
            secure_cookies: false,
            event_keep_alive: EVENT_KEEP_ALIVE,
            passwords: crate::passwords::Passwords::default(),
            logins: std::sync::Arc::new(LoginThrottle::new(&LoginSettings::default())),
            refusals: std::sync::Arc::default(),
            power: std::sync::Arc::new(crate::power::node::PowerControl::new(
                pool.clone(),
                std::sync::Arc::new(crate::power::vault::Vault::ephemeral()),
                crate::power::BmcTimeouts::default(),
            )),
        }
    }
}
