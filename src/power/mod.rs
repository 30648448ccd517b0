//! Power control through a machine's BMC: the drivers (Redfish over HTTPS with the BMC's
//! certificate pinned; IPMI 2.0 through ipmitool), what they report, and how their failures are told
//! apart — a transient one (timeout, 5xx, busy) is worth another try, a terminal one (wrong
//! credentials, unsupported) is not, and a changed certificate refuses everything until an
//! admin accepts it. Every error names the hop that failed: "BMC 10.0.0.5: HTTP 401 for
//! user crowbar".

pub mod confirm;
pub mod driver;
pub mod inband;
pub mod ipmi;
pub mod node;
pub mod pinning;
pub mod redfish;
pub mod sweep;
pub mod vault;
pub mod worker;

use std::time::Duration;

use crate::units::parse_duration;

/// How BMCs are read and driven.
#[derive(Debug, Clone, clap::Args)]
pub struct PowerSettings {
    /// How often every enrolled BMC's power state is read; 0 turns the sweep off.
    #[arg(long, env = "CROWBAR_POWER_SWEEP_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub power_sweep_interval: Duration,
    /// BMCs read at once by the sweep.
    #[arg(long, env = "CROWBAR_POWER_SWEEP_CONCURRENCY", default_value_t = 32)]
    pub power_sweep_concurrency: usize,
    /// Power operations (on, off, cycle, ...) under way at once over every daemon sharing
    /// the database; each holds a session with one BMC. One per BMC at a time regardless.
    #[arg(long, env = "CROWBAR_POWER_OPS_CAP", default_value_t = 50)]
    pub power_ops_cap: i64,
    /// The longest a power change may take to show in the BMC's power state (a graceful
    /// shutdown waits on the operating system) before its operation fails.
    #[arg(long, env = "CROWBAR_POWER_APPLY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub power_apply_timeout: Duration,
}

impl Default for PowerSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

impl PowerSettings {
    /// How a change is confirmed.
    pub fn polling(&self) -> confirm::Polling {
        confirm::Polling {
            within: self.power_apply_timeout,
            ..confirm::Polling::default()
        }
    }
}

/// A machine's power state as its BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// The BMC answered with something else (powering on, a vendor's own word).
    Unknown,
}

impl PowerState {
    /// The state's name in the API and the database.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
}

/// What a BMC is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    /// Asks the operating system to shut down.
    Off,
    ForceOff,
    /// Off and on again (a reset of a machine that is on; power on of one that is off).
    Cycle,
}

/// Where the machine boots from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    Pxe,
    Disk,
}

/// What a BMC tells of its machine that helps match it to a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    pub serial: Option<String>,
    /// Lower case, colon separated.
    pub macs: Vec<String>,
}

/// Why a BMC operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmcError {
    /// Worth another try: a timeout, a refused connection, HTTP 5xx or 429.
    #[error("{0}")]
    Transient(String),
    /// Another try gives the same answer: wrong credentials, an operation the BMC does not
    /// support, an answer that is not Redfish.
    #[error("{0}")]
    Terminal(String),
    /// The BMC presented another certificate than the one pinned on first contact: nothing
    /// is sent to it until an admin accepts the new one.
    #[error(
        "BMC {address}: its certificate changed (pinned {pinned}, now {presented}); if the BMC's certificate was replaced on purpose, accept the new one"
    )]
    CertificateChanged {
        address: String,
        pinned: String,
        presented: String,
    },
}

impl BmcError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BmcError::Transient(_))
    }
}

/// How long BMC calls may take, and how often a transient failure is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BmcTimeouts {
    /// Establishing the connection (TCP and TLS).
    pub connect: Duration,
    /// Waiting for an answer once connected.
    pub read: Duration,
    /// Tries of an operation that fails transiently (the first included).
    pub attempts: u32,
    /// The wait before the second try; each later wait doubles.
    pub backoff: Duration,
}

impl Default for BmcTimeouts {
    fn default() -> Self {
        BmcTimeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// How often a wait for a power operation looks at it.
const OPERATION_POLL: Duration = Duration::from_millis(100);

/// Waits until the power operation `id` has ended (`done` or `failed`) and returns it as
/// it ended. Some daemon's power worker carries it out; the caller bounds the wait.
pub async fn ended(
    pool: &sqlx::PgPool,
    id: i64,
) -> crate::db::Result<crate::db::power_ops::PowerOp> {
    loop {
        let mut conn = pool.acquire().await?;
        let op = crate::db::power_ops::get(&mut conn, id).await?;
        drop(conn);
        if matches!(op.state.as_str(), "done" | "failed") {
            return Ok(op);
        }
        tokio::time::sleep(OPERATION_POLL).await;
    }
}

/// Runs `op` until it succeeds, fails terminally, or has failed transiently
/// `timeouts.attempts` times, waiting `backoff`, then twice that, ... between tries.
pub async fn with_retries<T, F, Fut>(timeouts: &BmcTimeouts, mut op: F) -> Result<T, BmcError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BmcError>>,
{
    let mut wait = timeouts.backoff;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < timeouts.attempts.max(1) => {
                tracing::debug!(error = %e, attempt, "BMC call failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(BmcError::Transient(message)) if attempt > 1 => {
                return Err(BmcError::Transient(format!(
                    "{message} (tried {attempt} times)"
                )));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> BmcTimeouts {
        BmcTimeouts {
            backoff: Duration::from_millis(1),
            ..BmcTimeouts::default()
        }
    }

    #[tokio::test]
    async fn transient_failures_are_tried_again_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(&quick(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(BmcError::Transient("BMC 10.0.0.5: HTTP 503".into()))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            result,
            Err(BmcError::Transient(
                "BMC 10.0.0.5: HTTP 503 (tried 3 times)".into()
            ))
        );
    }

    #[tokio::test]
    async fn a_terminal_failure_is_not_tried_again_and_a_recovery_succeeds() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(&quick(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(BmcError::Terminal(
                "BMC 10.0.0.5: HTTP 401 for user crowbar".into(),
            ))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!result.unwrap_err().is_transient());

        let calls = AtomicU32::new(0);
        let result = with_retries(&quick(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(BmcError::Transient("busy".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result, Ok(7));
    }
}
