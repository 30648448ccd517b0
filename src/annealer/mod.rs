//! The annealer (SEMANTICS.md §5): passes that queue every runnable noderole, woken by
//! NOTIFY and by a periodic sweep that also recovers lost runs and lost triggers.
//!
//! A pass looks only at what changed: the nodes named in the event log since the last one
//! (a completion queues what it made runnable itself, in its own transaction). The sweep
//! looks at a window of nodes that moves on each time. So neither costs more with a bigger
//! fleet; only a daemon's start (and a jig switched on) looks at every node once.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    db::{
        self,
        events::{CHANNEL_ANNEAL, CHANNEL_EVENTS, CHANNEL_RUNS, CHANNEL_SEQUENCED},
        runs::{self, QueueConfig, Recovery, orphan_due},
    },
    events::Duty,
    hooks::{Dispatcher, Hooks},
    jig::JigRegistry,
    runner::{self, Runner},
    units::parse_duration,
};

/// Settings of the annealer and the run queue.
#[derive(Debug, Clone, clap::Args)]
pub struct AnnealerSettings {
    /// Runs executing at once across all daemons (normal lane).
    #[arg(long, env = "CROWBAR_RUN_CAP", default_value_t = 10)]
    pub run_cap: i64,
    /// Runs executing at once in the high-priority lane (DHCP/DNS/provisioner databases).
    #[arg(long, env = "CROWBAR_HIGH_LANE_CAP", default_value_t = 2)]
    pub high_lane_cap: i64,
    /// Timeout of a run whose role sets none.
    #[arg(long, env = "CROWBAR_RUN_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub run_timeout: Duration,
    /// How often the sweep runs even without notifications.
    #[arg(long, env = "CROWBAR_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// How often a daemon tells the database its runs are still executing.
    #[arg(long, env = "CROWBAR_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// A run whose heartbeat is older than this is lost and its noderole runs again (a run
    /// whose daemon's database session ended is lost after two missed heartbeats).
    #[arg(long, env = "CROWBAR_RUN_LOST_AFTER", default_value = "20s", value_parser = parse_duration)]
    pub run_lost_after: Duration,
    /// Most runs one pass queues.
    #[arg(long, env = "CROWBAR_QUEUE_BATCH", default_value_t = 2000)]
    pub queue_batch: i64,
}

impl Default for AnnealerSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

impl AnnealerSettings {
    /// When the sweep counts a run lost: its heartbeat stopped for `run_lost_after`, or its
    /// daemon's database session ended and two heartbeats were missed.
    pub fn recovery(&self) -> Recovery {
        Recovery {
            lost_after: self.run_lost_after,
            orphaned_after: (self.heartbeat_interval * 2).min(self.run_lost_after),
        }
    }

    pub fn queue_config(&self, jigs: &JigRegistry) -> QueueConfig {
        QueueConfig {
            cap: self.run_cap,
            high_cap: self.high_lane_cap,
            default_timeout_secs: self.run_timeout.as_secs().clamp(1, i32::MAX as u64) as i32,
            jigs: jigs.names(),
            batch: self.queue_batch,
        }
    }
}

/// One pass: optionally the recovery sweep, then queue everything runnable.
/// Returns (noderoles repaired, runs queued).
pub async fn pass(
    pool: &PgPool,
    config: &QueueConfig,
    sweep: Option<&Recovery>,
) -> db::Result<(usize, usize)> {
    let mut tx = pool.begin().await?;
    let repaired = match sweep {
        Some(recovery) => runs::recover(&mut tx, recovery).await?,
        None => 0,
    };
    let queued = runs::queue_runnable(&mut tx, config).await?;
    tx.commit().await?;
    Ok((repaired, queued))
}

/// A daemon's background machinery: listener, annealer and runner.
pub struct Engine {
    pub tracker: TaskTracker,
    pub worker: String,
    /// Whether this daemon numbers events and dispatches hooks on notifications (the
    /// daemon's event hub shares it).
    pub event_duty: Duty,
}

impl Engine {
    /// Starts the annealer and the runner; both stop when `shutdown` is cancelled (wait on
    /// `tracker` for them).
    pub fn start(
        pool: PgPool,
        settings: &AnnealerSettings,
        jigs: JigRegistry,
        hooks: Hooks,
        shutdown_grace: Duration,
        shutdown: CancellationToken,
    ) -> Engine {
        let worker = worker_id();
        let config = settings.queue_config(&jigs);
        let wakes = Wakes::default();
        let anneal_wake = wakes.anneal.clone();
        let runs_wake = wakes.runs.clone();
        let tracker = TaskTracker::new();
        let event_duty = Duty::keep(pool.clone(), shutdown.clone());
        tracker.spawn(listen(pool.clone(), wakes.clone(), shutdown.clone()));
        tracker.spawn(
            Dispatcher {
                pool: pool.clone(),
                hooks,
                duty: event_duty.clone(),
            }
            .run(wakes.events.clone(), shutdown.clone()),
        );
        tracker.spawn(anneal_loop(
            pool.clone(),
            config.clone(),
            settings.clone(),
            Wakeups {
                anneal: anneal_wake.clone(),
                runs: runs_wake.clone(),
            },
            event_duty.clone(),
            shutdown.clone(),
        ));
        let runner = Runner {
            pool,
            worker: worker.clone(),
            config,
            jigs: Arc::new(jigs),
            heartbeat_interval: settings.heartbeat_interval,
            shutdown_grace,
        };
        tracker.spawn(runner.run(runs_wake, shutdown));
        tracker.close();
        tracing::info!(worker = %worker, cap = settings.run_cap, "annealer started");
        Engine {
            tracker,
            worker,
            event_duty,
        }
    }
}

pub(crate) fn worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// What NOTIFYs wake.
#[derive(Clone, Default)]
struct Wakes {
    anneal: Arc<Notify>,
    runs: Arc<Notify>,
    events: Arc<Notify>,
}

/// Turns NOTIFYs into wake-ups. Losing the connection loses nothing: the sweep catches up.
async fn listen(pool: PgPool, wakes: Wakes, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; relying on the sweep");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        if let Err(e) = listener
            .listen_all([
                CHANNEL_ANNEAL,
                CHANNEL_RUNS,
                CHANNEL_EVENTS,
                CHANNEL_SEQUENCED,
            ])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed");
            continue;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = listener.recv() => match message {
                    Ok(n) if n.channel() == CHANNEL_RUNS => wakes.runs.notify_one(),
                    Ok(n) if n.channel() == CHANNEL_EVENTS || n.channel() == CHANNEL_SEQUENCED => {
                        wakes.events.notify_one()
                    }
                    Ok(_) => wakes.anneal.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        wakes.anneal.notify_one();
                        break;
                    }
                }
            }
        }
    }
}

/// Where a daemon's annealer has got to: the event log is read up to `seq`; the sweep's
/// window of nodes starts after node id `window`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub seq: i64,
    pub window: i64,
}

/// A pass over what changed: the nodes named by the events recorded since `progress.seq`
/// are queued (every node when a jig changed). Its cost follows the changes, not the fleet.
pub async fn pass_changes(
    pool: &PgPool,
    config: &QueueConfig,
    progress: &mut Progress,
) -> db::Result<usize> {
    let changes = {
        let mut conn = pool.acquire().await?;
        db::events::changes_since(&mut conn, progress.seq).await?
    };
    let queued = if changes.jigs_changed {
        pass_all(pool, config).await?
    } else {
        queue_nodes(pool, config, &changes.nodes).await?
    };
    progress.seq = changes.seq;
    Ok(queued)
}

/// Queues what is runnable on every node, a window of one batch at a time (a daemon's
/// start, a jig switched on).
pub async fn pass_all(pool: &PgPool, config: &QueueConfig) -> db::Result<usize> {
    let mut queued = 0;
    let mut after = 0;
    loop {
        let window = {
            let mut conn = pool.acquire().await?;
            runs::node_window(&mut conn, after, config.batch.max(1)).await?
        };
        queued += queue_nodes(pool, config, &window).await?;
        after = next_window_start(&window, config.batch.max(1));
        if after == 0 {
            return Ok(queued);
        }
    }
}

/// Where the window after `window` (of at most `size` nodes) starts: after its last node,
/// or over at the start of the fleet (0) when it was the last one.
fn next_window_start(window: &[i64], size: i64) -> i64 {
    match window.last() {
        Some(last) if window.len() as i64 == size => *last,
        _ => 0,
    }
}

/// Queues what is runnable on `nodes`, one transaction per batch of them.
///
/// A pass of more than one batch starts at a random place in `nodes` and wraps around. A
/// commit wakes every daemon with the same changes; walked from the same end, their passes
/// computed the same batches side by side (candidates and inputs), and all but one threw
/// theirs away on the queue's one-run-per-node index. From different places, each queues
/// nodes the others have not reached, and skips those they already have.
async fn queue_nodes(pool: &PgPool, config: &QueueConfig, nodes: &[i64]) -> db::Result<usize> {
    let size = config.batch.max(1) as usize;
    let start = if nodes.len() > size {
        rand::random_range(0..nodes.len())
    } else {
        0
    };
    let (head, tail) = nodes.split_at(start);
    let rotated: Vec<i64> = tail.iter().chain(head).copied().collect();
    let mut queued = 0;
    for chunk in rotated.chunks(size) {
        let mut tx = pool.begin().await?;
        queued += runs::queue_runnable_on(&mut tx, config, chunk).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

/// The periodic sweep: lost runs are recovered and lost triggers repaired on a window of
/// one batch of nodes, then what changed and the window's nodes are queued. The window
/// moves on each time and starts over at the end of the fleet: the sweep's cost is bounded
/// by the batch, and every node is looked at in turn. Returns (noderoles repaired, runs
/// queued).
pub async fn sweep(
    pool: &PgPool,
    config: &QueueConfig,
    recovery: &Recovery,
    progress: &mut Progress,
) -> db::Result<(usize, usize)> {
    let size = config.batch.max(1);
    let mut tx = pool.begin().await?;
    let window = runs::node_window(&mut tx, progress.window, size).await?;
    let repaired = runs::recover_on(&mut tx, recovery, Some(&window)).await?;
    tx.commit().await?;
    progress.window = next_window_start(&window, size);
    let queued =
        pass_changes(pool, config, progress).await? + queue_nodes(pool, config, &window).await?;
    Ok((repaired, queued))
}

/// How many sweep intervals a daemon without the event duty lets pass between its own
/// sweeps.
///
/// The sweep's work is the same for the whole database whoever does it (recovery, the
/// window, the tallies): the daemon holding the event duty ([`Duty`]) sweeps on every
/// interval, the others on every `SWEEP_STANDBY_EVERY`th, so three daemons do not sweep three
/// windows, yet a holder that hangs while its session lives still has its runs recovered
/// (after at most this many intervals beyond the heartbeat timeout).
pub const SWEEP_STANDBY_EVERY: u32 = 4;

/// What wakes the annealer, and what it wakes.
struct Wakeups {
    /// Notified when something may have become runnable.
    anneal: Arc<Notify>,
    /// Notified (for the runner) when runs were queued.
    runs: Arc<Notify>,
}

async fn anneal_loop(
    pool: PgPool,
    config: QueueConfig,
    settings: AnnealerSettings,
    wakeups: Wakeups,
    duty: Duty,
    shutdown: CancellationToken,
) {
    let Wakeups {
        anneal: wake,
        runs: runs_wake,
    } = wakeups;
    let recovery = settings.recovery();
    // From here on the event log says what changed; what is runnable now is found by one
    // look at every node.
    let mut progress = Progress {
        seq: db::events::last_seq(&pool).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the event log's position failed; reading it all");
            0
        }),
        window: 0,
    };
    match pass_all(&pool, &config).await {
        Ok(queued) if queued > 0 => runs_wake.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the first pass failed; the sweep will look again"),
    }
    let mut sweep_timer = tokio::time::interval(settings.sweep_interval);
    // an extra sweep when a run of a daemon whose session ended comes due (so a restarted
    // daemon does not wait a whole sweep interval for them)
    let orphans = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(orphans);
    let mut orphans_pending = false;
    let mut ticks: u32 = 0;
    loop {
        let sweeping = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => false,
            _ = sweep_timer.tick() => {
                // the first tick sweeps whoever holds the duty (a daemon that just started)
                let mine = duty.held() || ticks.is_multiple_of(SWEEP_STANDBY_EVERY);
                ticks = ticks.wrapping_add(1);
                mine
            }
            _ = &mut orphans, if orphans_pending => {
                orphans_pending = false;
                true
            }
        };
        let started = std::time::Instant::now();
        let result = if sweeping {
            sweep(&pool, &config, &recovery, &mut progress).await
        } else {
            pass_changes(&pool, &config, &mut progress)
                .await
                .map(|queued| (0, queued))
        };
        crate::telemetry::metrics::annealer_phase("pass", started.elapsed());
        match result {
            Ok((repaired, queued)) => {
                tracing::debug!(
                    sweeping,
                    repaired,
                    queued,
                    ms = started.elapsed().as_millis() as u64,
                    "pass"
                );
                if repaired > 0 {
                    tracing::info!(repaired, "sweep repaired noderoles");
                }
                if queued > 0 {
                    runs_wake.notify_one();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "annealer pass failed; retrying on the next wake-up")
            }
        }
        if sweeping {
            if let Err(e) = crate::db::anneal::fold_tallies(&pool).await {
                tracing::warn!(error = %e, "folding noderole tallies failed; trying again next sweep");
            } else if let Err(e) = crate::db::overview::sample_states(&pool).await {
                tracing::warn!(error = %e, "sampling noderole states failed; trying again next sweep");
            }
            match orphan_due(&pool, recovery.orphaned_after).await {
                Ok(Some(due)) => {
                    orphans
                        .as_mut()
                        .reset(tokio::time::Instant::now() + due + Duration::from_millis(50));
                    orphans_pending = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading orphaned runs failed"),
            }
        }
    }
}

/// Runs passes, claims and executes in the calling task until nothing is queued, running or
/// runnable — a deterministic driver for tests and tools. Returns the runs completed.
pub async fn run_until_idle(
    pool: &PgPool,
    config: &QueueConfig,
    jigs: &JigRegistry,
    worker: &str,
) -> db::Result<usize> {
    let mut completed = 0;
    loop {
        let recovery = Recovery::heartbeat_only(Duration::from_secs(3600));
        pass(pool, config, Some(&recovery)).await?;
        let claimed =
            runner::claim(pool, worker, None, config, config.cap + config.high_cap).await?;
        if claimed.is_empty() {
            return Ok(completed);
        }
        let results =
            futures::future::join_all(claimed.iter().map(|run| runner::execute(jigs, run))).await;
        completed += runner::complete(pool, worker, &results, None, None)
            .await?
            .completed;
    }
}

#[cfg(test)]
mod tests {
    use super::next_window_start;

    #[test]
    fn a_full_window_is_followed_by_the_next_and_a_short_one_starts_over() {
        assert_eq!(next_window_start(&[3, 5, 9], 3), 9);
        assert_eq!(next_window_start(&[3, 5], 3), 0);
        assert_eq!(next_window_start(&[], 3), 0);
    }
}
