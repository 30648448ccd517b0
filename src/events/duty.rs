//! Duties one daemon at a time performs for all of them: numbering events and dispatching
//! hooks as soon as a notification says there are some. Every daemon hears every
//! notification; when each of them tried, each round numbered a third as many events for
//! the same fixed cost per round (three daemons spent three times the server time on it).
//!
//! The duty is a session-level advisory lock ([`Lock::EventDuty`]) on a connection of its
//! own: PostgreSQL releases it when the holder's session ends, and another daemon takes it
//! within [`TRY_INTERVAL`]. The others still do the same work on their one-second poll, so
//! a holder that hangs while its session lives delays events by at most that poll, never
//! longer. Numbering and dispatching are correct whoever runs them (each takes its own
//! row lock); the duty only decides who hurries.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::db::locks::{self, Lock};

/// How often a daemon without the duty tries to take it, and how often the holder checks
/// that its session is still there.
pub const TRY_INTERVAL: Duration = Duration::from_secs(1);

/// Whether this daemon holds the event duty: cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Duty {
    held: Arc<AtomicBool>,
}

impl Duty {
    /// A duty this process always performs: one daemon alone in its database (tests,
    /// tools), where nobody else could.
    pub fn always() -> Self {
        Duty {
            held: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether this daemon should act on notifications now.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Tries for the duty now and every [`TRY_INTERVAL`] until `shutdown`, on a session
    /// of its own (taken out of `pool`), and keeps it while that session lives.
    pub fn keep(pool: PgPool, shutdown: CancellationToken) -> Self {
        let duty = Duty {
            held: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(keep(pool, duty.held.clone(), shutdown));
        duty
    }
}

async fn keep(pool: PgPool, held: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut session: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(TRY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if session.is_none() {
            // out of the pool for good: the lock lives as long as this session
            session = pool.acquire().await.ok().map(|conn| conn.detach());
        }
        let holds = match session.as_mut() {
            Some(conn) => match look(conn, held.load(Ordering::Relaxed)).await {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::debug!(error = %e, "the event duty's session is gone");
                    session = None;
                    false
                }
            },
            None => false,
        };
        match (held.swap(holds, Ordering::Relaxed), holds) {
            (false, true) => tracing::debug!("this daemon holds the event duty"),
            (true, false) => {
                tracing::info!("this daemon lost the event duty's session; another takes it over")
            }
            _ => {}
        }
    }
    held.store(false, Ordering::Relaxed);
    if let Some(conn) = session {
        // the lock ends with the session
        let _ = conn.close().await;
    }
}

/// Whether `conn` holds the duty after one look: the holder's session still answers, or a
/// session without it takes it now. An error: the session is gone.
async fn look(conn: &mut PgConnection, held: bool) -> crate::db::Result<bool> {
    if held {
        conn.ping().await?;
        Ok(true)
    } else {
        locks::try_hold_session(conn, Lock::EventDuty).await
    }
}
