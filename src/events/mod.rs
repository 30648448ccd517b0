//! The event stream's machinery in a daemon: numbering events for delivery, waking readers,
//! and deleting old events.
//!
//! Every change is recorded in `events` in its own transaction (`db::events`). For the
//! stream, events get a delivery number `seq` (`event_order`, see migrations 0002 and 0011) from
//! [`db::events::sequence_pending`], run by the [`EventHub`] task of every daemon (one at a
//! time wins the lock): by the daemon holding the event [`duty`] when a transaction that
//! recorded events commits (NOTIFY `crowbar_events`), and by every daemon every
//! [`POLL_INTERVAL`]. A sequencer that numbered events
//! NOTIFYs `crowbar_events_sequenced`; each daemon's hub turns that into a wake-up on a
//! broadcast channel that its stream readers wait on (they also poll, in case a
//! notification is lost). The same task deletes events and audit records older than their
//! retentions.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::db::events::{self, CHANNEL_EVENTS, CHANNEL_SEQUENCED};

pub mod duty;

pub use duty::Duty;

/// How often the hub numbers events even without notifications, and how often a reader
/// looks again without a wake-up.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Most events numbered in one transaction.
const SEQUENCE_BATCH: i64 = 5000;

/// Default retention (`--event-retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86400);

/// Default retention of the audit trail (`--audit-retention`).
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86400);

/// How long what the hub sweeps is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub events: Duration,
    pub audit: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: DEFAULT_RETENTION,
            audit: DEFAULT_AUDIT_RETENTION,
        }
    }
}

/// The hub of a daemon: cheap to clone, started once.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    retention: Retention,
    duty: Duty,
    wake: broadcast::Sender<()>,
    started: OnceLock<()>,
}

impl EventHub {
    /// A hub that numbers events on notifications while `duty` is held, and on its poll
    /// always.
    pub fn new(pool: PgPool, retention: Retention, duty: Duty) -> Self {
        let (wake, _) = broadcast::channel(16);
        EventHub {
            inner: Arc::new(Inner {
                pool,
                retention,
                duty,
                wake,
                started: OnceLock::new(),
            }),
        }
    }

    /// Starts the hub's task unless it runs already; it stops when `shutdown` is cancelled.
    /// A daemon starts it when it starts serving; a stream opened on a hub nobody started
    /// starts it with the stream's shutdown token.
    pub fn start(&self, shutdown: CancellationToken) {
        let mut first = false;
        self.inner.started.get_or_init(|| first = true);
        if first {
            tokio::spawn(run(self.inner.clone(), shutdown));
        }
    }

    /// A receiver that gets `()` whenever events may have been numbered.
    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.inner.wake.subscribe()
    }
}

async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut listener: Option<PgListener> = None;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // a daily sweep is plenty for days of retention; short retentions sweep more often
    let mut sweep = tokio::time::interval(
        (inner.retention.events.min(inner.retention.audit) / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600)),
    );
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            listener = connect(&inner.pool).await;
        }
        let woke = {
            let message = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|n| n.channel() == CHANNEL_SEQUENCED),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = message => Wake::Notified(message),
                _ = poll.tick() => Wake::Poll,
                _ = sweep.tick() => Wake::Sweep,
            }
        };
        match woke {
            Wake::Notified(Ok(true)) => {
                let _ = inner.wake.send(());
            }
            Wake::Notified(Ok(false)) if inner.duty.held() => sequence(&inner).await,
            Wake::Notified(Ok(false)) => {}
            Wake::Poll => sequence(&inner).await,
            Wake::Notified(Err(e)) => {
                tracing::warn!(error = %e, "event LISTEN connection lost; reconnecting");
                listener = None;
            }
            Wake::Sweep => sweep_old(&inner).await,
        }
    }
}

/// Deletes events and audit records past their retentions.
async fn sweep_old(inner: &Inner) {
    match events::expire(&inner.pool, inner.retention.events).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(deleted = n, retention = ?inner.retention.events, "expired old events")
        }
        Err(e) => tracing::warn!(error = %e, "expiring old events failed"),
    }
    match crate::db::audit::expire(&inner.pool, inner.retention.audit).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(deleted = n, retention = ?inner.retention.audit, "expired old audit records")
        }
        Err(e) => tracing::warn!(error = %e, "expiring old audit records failed"),
    }
}

enum Wake {
    /// A notification: `true` when events were numbered (by any daemon).
    Notified(sqlx::Result<bool>),
    Poll,
    Sweep,
}

async fn connect(pool: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for events; polling");
            return None;
        }
    };
    match listener
        .listen_all([CHANNEL_EVENTS, CHANNEL_SEQUENCED])
        .await
    {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "LISTEN for events failed; polling");
            None
        }
    }
}

/// Numbers what is pending; wakes local readers when it numbered anything (other daemons
/// hear it on `crowbar_events_sequenced`).
async fn sequence(inner: &Inner) {
    loop {
        match events::sequence_pending(&inner.pool, SEQUENCE_BATCH).await {
            Ok(0) => return,
            Ok(n) => {
                let _ = inner.wake.send(());
                if (n as i64) < SEQUENCE_BATCH {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "numbering events failed");
                return;
            }
        }
    }
}
