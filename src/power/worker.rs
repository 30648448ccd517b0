//! A daemon's power worker: claims queued power operations (one per BMC at a time, at most
//! `--power-ops-cap` over every daemon), carries each out in a task of its own (a hung BMC
//! costs its own timeouts, never another operation), and records how it ended. It holds a
//! worker lease for its life, like the runner: when a daemon dies, the operations it had
//! claimed are taken back by any other daemon's worker as soon as its database session is
//! gone, and finished towards the power state that was asked for.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{PowerSettings, node::PowerControl};
use crate::db::{
    self,
    power_ops::{self, CHANNEL_POWER, ClaimedOp},
    runs::WorkerLease,
};

/// A running operation's heartbeat; one silent for [`HUNG_AFTER`] is taken back even while
/// its worker's session lives (a daemon hung, not dead).
const HEARTBEAT: Duration = Duration::from_secs(5);
const HUNG_AFTER: Duration = Duration::from_secs(60);
/// How often queued and orphaned operations are looked for without a wake-up.
const POLL: Duration = Duration::from_secs(2);

pub struct PowerWorker {
    pub pool: PgPool,
    pub control: Arc<PowerControl>,
    pub settings: PowerSettings,
    /// How long a stopping daemon lets operations under way finish.
    pub shutdown_grace: Duration,
}

/// The operations this worker is carrying out.
#[derive(Default)]
struct Executing(Mutex<HashSet<i64>>);

impl Executing {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn ids(&self) -> Vec<i64> {
        self.set().iter().copied().collect()
    }
}

impl PowerWorker {
    /// Starts the worker; it stops at `shutdown`, handing back what it has not finished
    /// within the grace.
    pub fn start(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, shutdown: CancellationToken) {
        let worker = format!("power:{}", crate::annealer::worker_id());
        let mut lease = WorkerLease::take(&self.pool, None)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "power worker: no worker lease yet"))
            .ok();
        let mut lease_key = lease.as_ref().map(WorkerLease::key);
        let mut wake = Wake::default();
        let executing = Arc::new(Executing::default());
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut poll = tokio::time::interval(POLL);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            wake.reconnect(&self.pool).await;
            if let Err(e) = self.take_back(None).await {
                tracing::warn!(error = %e, "power worker: taking back orphaned operations failed");
            }
            let free = self.settings.power_ops_cap - tasks.len() as i64;
            if free > 0 && lease.is_some() && !shutdown.is_cancelled() {
                match self.claim(&worker, lease_key, free).await {
                    Ok(claimed) => {
                        for op in claimed {
                            executing.set().insert(op.id);
                            tasks.spawn(self.carry_out(worker.clone(), op, executing.clone()));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "power worker: claiming failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.next() => {}
                _ = poll.tick() => {}
                _ = heartbeat.tick() => {
                    if let Err(e) = power_ops::heartbeat(&self.pool, &worker, &executing.ids()).await {
                        tracing::warn!(error = %e, "power worker: heartbeat failed");
                    }
                    lease = crate::runner::keep_lease(&self.pool, lease, lease_key).await;
                    lease_key = lease.as_ref().map(WorkerLease::key).or(lease_key);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        while !tasks.is_empty() {
            if tokio::time::timeout_at(deadline, tasks.join_next())
                .await
                .is_err()
            {
                break;
            }
        }
        tasks.abort_all();
        if let Err(e) = self.take_back(Some(&worker)).await {
            tracing::warn!(error = %e, "power worker: handing back operations failed; another daemon takes them back");
        }
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Option<i32>,
        max: i64,
    ) -> db::Result<Vec<ClaimedOp>> {
        let mut tx = self.pool.begin().await?;
        let claimed =
            power_ops::claim(&mut tx, worker, lease, self.settings.power_ops_cap, max).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn take_back(&self, worker: Option<&str>) -> db::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let taken = power_ops::take_back(&mut tx, HUNG_AFTER, HEARTBEAT * 2, worker).await?;
        tx.commit().await?;
        if taken > 0 {
            tracing::info!(
                operations = taken,
                "power operations taken back from a stopped worker"
            );
        }
        Ok(taken)
    }

    /// One operation, carried out and recorded.
    fn carry_out(
        &self,
        worker: String,
        op: ClaimedOp,
        executing: Arc<Executing>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let pool = self.pool.clone();
        let control = self.control.clone();
        let polling = self.settings.polling();
        async move {
            tracing::info!(node = %op.node, action = %op.action, op = op.id, "power operation");
            let result = control.apply(&op, polling).await;
            let (succeeded, reason) = match &result {
                Ok(done) => (true, done.clone()),
                Err(e) => (false, e.to_string()),
            };
            if !succeeded {
                tracing::warn!(node = %op.node, action = %op.action, op = op.id, %reason, "power operation failed");
            }
            let recorded = async {
                let mut tx = pool.begin().await?;
                power_ops::finish(&mut tx, &worker, op.id, succeeded, &reason).await?;
                tx.commit().await?;
                Ok::<_, db::Error>(())
            }
            .await;
            if let Err(e) = recorded {
                tracing::warn!(op = op.id, error = %e, "power operation ended but its outcome was not recorded; it is taken back");
            }
            executing.set().remove(&op.id);
        }
    }
}

/// Wake-ups on [`CHANNEL_POWER`]; losing the connection loses only the speed-up.
#[derive(Default)]
struct Wake {
    listener: Option<PgListener>,
}

impl Wake {
    async fn reconnect(&mut self, pool: &PgPool) {
        if self.listener.is_some() {
            return;
        }
        let connected = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL_POWER).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match connected {
            Ok(listener) => self.listener = Some(listener),
            Err(e) => tracing::warn!(error = %e, "power worker: cannot LISTEN; polling"),
        }
    }

    async fn next(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        if listener.recv().await.is_err() {
            self.listener = None;
        }
    }
}
