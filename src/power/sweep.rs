//! The power sweep: every BMC's power state read periodically, a bounded number at once, so
//! the nodes page shows what the machines are, not what they were when someone last asked.
//! One daemon sweeps at a time (a session-level advisory lock), however many share the
//! database; a hung BMC costs its own timeouts, never another BMC's read.

use std::sync::Arc;

use futures::{StreamExt, stream};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{PowerSettings, node::PowerControl};
use crate::db;

/// What one sweep read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub read: usize,
    pub failed: usize,
}

/// Reads every enrolled BMC once, `concurrency` at a time; each result (or why there is
/// none) is recorded on its BMC.
pub async fn sweep_once(
    control: &PowerControl,
    pool: &PgPool,
    concurrency: usize,
) -> db::Result<SweepReport> {
    let nodes = db::bmcs::idle(pool).await?;
    let results: Vec<bool> = stream::iter(nodes)
        .map(|(id, name)| async move {
            match control.read(id, &name).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "power read failed");
                    false
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let read = results.iter().filter(|ok| **ok).count();
    Ok(SweepReport {
        read,
        failed: results.len() - read,
    })
}

/// Sweeps every `interval` until `shutdown`, when no other daemon is sweeping.
pub async fn run(
    control: Arc<PowerControl>,
    pool: PgPool,
    settings: PowerSettings,
    shutdown: CancellationToken,
) {
    if settings.power_sweep_interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(settings.power_sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match locked_sweep(&control, &pool, settings.power_sweep_concurrency).await {
            Ok(Some(report)) if report.read + report.failed > 0 => {
                tracing::info!(read = report.read, failed = report.failed, "power sweep")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "power sweep failed; trying again next interval"),
        }
    }
}

/// One sweep under the sweep lock; `None` when another daemon holds it.
async fn locked_sweep(
    control: &PowerControl,
    pool: &PgPool,
    concurrency: usize,
) -> db::Result<Option<SweepReport>> {
    let mut lock = pool.acquire().await?;
    if !db::locks::try_hold_session(&mut lock, db::locks::Lock::PowerSweep).await? {
        return Ok(None);
    }
    let report = sweep_once(control, pool, concurrency).await;
    // the lock ends with the session too, should this fail
    let _ = db::locks::release_session(&mut lock, db::locks::Lock::PowerSweep).await;
    report.map(Some)
}
