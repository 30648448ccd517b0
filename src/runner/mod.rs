//! The runner: claims queued runs, executes their jigs with a timeout while heart-beating,
//! and completes them in batches (one transaction per batch applies every outcome).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use sqlx::PgPool;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    db::{
        error::{is_retryable, is_unavailable},
        locks::{self, Lock},
        runs::{self, ClaimedRun, Completion, Outcome, QueueConfig, RunResult, WorkerLease},
    },
    domain::untrusted,
    jig::{JigJob, JigRegistry},
    telemetry::metrics,
};

/// The most of a runlog kept: the tail, which usually says what went wrong.
pub const RUNLOG_LIMIT: usize = 64 * 1024;

/// Executes one claimed run: destructive roles that already ran skip their jig (§5); the
/// jig gets the run's timeout; its output becomes the runlog (bounded). What came from the
/// node is made fit to store ([`untrusted`]).
pub async fn execute(jigs: &JigRegistry, run: &ClaimedRun) -> RunResult {
    let result = |outcome, wall: Option<serde_json::Value>, runlog: String| RunResult {
        run_id: run.id,
        outcome,
        wall: wall.map(untrusted::json),
        runlog: bound_log(untrusted::text(runlog), RUNLOG_LIMIT),
    };
    if run.destructive && run.run_count > 0 {
        return result(
            Outcome::Skipped,
            None,
            format!("{} is destructive and already ran: jig skipped", run.role),
        );
    }
    let Some(jig) = jigs.get(&run.jig) else {
        return result(
            Outcome::Failed,
            None,
            format!("this daemon has no `{}` jig", run.jig),
        );
    };
    let timeout = Duration::from_secs(run.timeout_secs.max(1) as u64);
    let job = JigJob {
        run_id: run.id,
        node_id: run.node_id,
        node: run.node.clone(),
        role: run.role.clone(),
        barclamp: run.barclamp.clone(),
        barclamp_source: run.barclamp_source.clone(),
        timeout,
        input: run.input.clone(),
    };
    // every line the jig logs, here or on other tasks it awaits, names the run
    let span = tracing::info_span!("run", run = run.id, node = %run.node, role = %run.role);
    match tokio::time::timeout(timeout, jig.run(&job))
        .instrument(span)
        .await
    {
        Ok(out) if out.success => result(Outcome::Succeeded, out.wall, out.log),
        Ok(out) => result(Outcome::Failed, None, out.log),
        Err(_) => result(
            Outcome::TimedOut,
            None,
            format!("timed out after {}s", timeout.as_secs()),
        ),
    }
}

/// Keeps the last `limit` bytes of `log` (on a character boundary) and says what was cut.
pub fn bound_log(log: String, limit: usize) -> String {
    if log.len() <= limit {
        return log;
    }
    let mut start = log.len() - limit;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!("[{start} earlier bytes cut]\n{}", &log[start..])
}

/// Completes a batch like [`complete`]; when the batch as a whole cannot be recorded, each
/// run is recorded alone, and a run that cannot be recorded even alone fails with a
/// readable reason instead ([`unrecordable`]). So one bad result never holds back the
/// others, and its run never stays running. Returns the ids of the runs that could not be
/// recorded at all (the database is unreachable): the recovery sweep requeues those.
/// With `slot`, as that completion writer (see [`COMPLETERS`]).
pub async fn complete_each(
    pool: &PgPool,
    worker: &str,
    results: &[RunResult],
    next: Option<&QueueConfig>,
    slot: Option<u8>,
) -> (Completion, Vec<i64>) {
    let e = match complete(pool, worker, results, next, slot).await {
        Ok(done) => return (done, Vec::new()),
        Err(e) => e,
    };
    if is_unavailable(&e) {
        tracing::error!(error = %e, runs = results.len(), "the database stayed away; the recovery sweep will requeue these runs");
        return (
            Completion::default(),
            results.iter().map(|r| r.run_id).collect(),
        );
    }
    tracing::warn!(error = %e, runs = results.len(), "completing a batch failed; completing its runs one by one");
    let mut total = Completion::default();
    let mut lost = Vec::new();
    for result in results {
        let done = match complete(pool, worker, std::slice::from_ref(result), next, slot).await {
            Ok(done) => Ok(done),
            Err(e) => {
                tracing::error!(run = result.run_id, error = %e, "cannot record a run's result; failing the run");
                complete(pool, worker, &[unrecordable(result, &e)], next, slot).await
            }
        };
        match done {
            Ok(done) => {
                total.completed += done.completed;
                total.changed.extend(done.changed);
            }
            Err(e) => {
                tracing::error!(run = result.run_id, error = %e, "cannot complete a run; the recovery sweep will requeue it");
                lost.push(result.run_id);
            }
        }
    }
    (total, lost)
}

/// The result that replaces one the database refused: the run failed, saying why, with no
/// wall and only a short, clean excerpt of what the node said.
pub fn unrecordable(result: &RunResult, error: &crate::db::Error) -> RunResult {
    let excerpt: String = untrusted::text(result.runlog.clone())
        .chars()
        .take(2000)
        .collect();
    RunResult {
        run_id: result.run_id,
        outcome: Outcome::Failed,
        wall: None,
        runlog: format!(
            "crowbar could not record this run's result ({} run): {error}\n\
             the first characters of its log:\n{excerpt}",
            result.outcome.as_str()
        ),
    }
}

/// How long a completion waits for a database that is away (a failover, a restart) before
/// it gives up and leaves its runs to the recovery sweep. The runs stay in flight (and
/// heart-beaten) meanwhile, so a run that finished while the database was away is recorded
/// once, when it is back, instead of being run again.
pub const UNAVAILABLE_WAIT: Duration = Duration::from_secs(60);

/// Completes a batch, retrying on deadlock or serialization failure, and while the
/// database is away (up to [`UNAVAILABLE_WAIT`]); with `next`, queues what it made
/// runnable ([`runs::complete`]). A retry after a commit whose answer was lost changes
/// nothing: only runs still running are completed. With `slot`, as that completion writer:
/// the transaction first waits for that slot's lock (see [`COMPLETERS`]).
pub async fn complete(
    pool: &PgPool,
    worker: &str,
    results: &[RunResult],
    next: Option<&QueueConfig>,
    slot: Option<u8>,
) -> crate::db::Result<Completion> {
    let mut attempt = 0;
    let mut away: Option<(std::time::Instant, Duration)> = None;
    loop {
        let tried = async {
            let mut tx = pool.begin().await?;
            if let Some(slot) = slot {
                locks::hold(&mut tx, Lock::CompletionWriter(slot)).await?;
            }
            let done = runs::complete(&mut tx, worker, results, next).await?;
            tx.commit().await?;
            Ok(done)
        }
        .await;
        match tried {
            Ok(done) => {
                if let Some((since, _)) = away {
                    tracing::info!(
                        runs = results.len(),
                        waited_ms = since.elapsed().as_millis() as u64,
                        "recorded results that waited for the database"
                    );
                }
                return Ok(done);
            }
            Err(e) if is_retryable(&e) && attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "completion conflicted; retrying");
            }
            Err(e) if is_unavailable(&e) => {
                let (since, backoff) = *away.get_or_insert_with(|| {
                    tracing::warn!(error = %e, runs = results.len(), "the database is away; results wait for it");
                    (std::time::Instant::now(), Duration::from_millis(50))
                });
                if since.elapsed() >= UNAVAILABLE_WAIT {
                    return Err(e);
                }
                tokio::time::sleep(backoff).await;
                away = Some((since, (backoff * 2).min(Duration::from_secs(1))));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Claims runs, retrying on deadlock or serialization failure.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Option<i32>,
    config: &QueueConfig,
    max: i64,
) -> crate::db::Result<Vec<ClaimedRun>> {
    let mut tx = pool.begin().await?;
    let claimed = runs::claim(&mut tx, worker, lease, config, max).await?;
    tx.commit().await?;
    Ok(claimed)
}

/// The runner loop of one daemon.
///
/// Claiming, executing and completing overlap: results go to a completer task that applies
/// them in batches (whatever finished while the previous batch was being written), so the
/// runner keeps claiming while the database records outcomes.
pub struct Runner {
    pub pool: PgPool,
    pub worker: String,
    pub config: QueueConfig,
    pub jigs: Arc<JigRegistry>,
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for executing runs before handing them back.
    pub shutdown_grace: Duration,
}

/// The lease as it stands after a check: the same one while its session lives; else taken
/// again, by the same key when it is free (the runs claimed under it stay covered).
pub(crate) async fn keep_lease(
    pool: &PgPool,
    lease: Option<WorkerLease>,
    key: Option<i32>,
) -> Option<WorkerLease> {
    if let Some(mut lease) = lease {
        if lease.holds().await {
            return Some(lease);
        }
        tracing::warn!(
            key = lease.key(),
            "the worker lease's session ended; taking it again"
        );
    }
    match WorkerLease::take(pool, key).await {
        Ok(lease) => {
            if Some(lease.key()) != key {
                tracing::warn!(key = lease.key(), "worker lease taken under a new key");
            }
            Some(lease)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot take a worker lease; not claiming runs");
            None
        }
    }
}

/// Most results one completion transaction applies.
const COMPLETION_BATCH: usize = 2000;

/// The runs this daemon claimed and has not finished with: they count against its
/// capacity, and only they are heart-beaten. A run whose completion could not be recorded
/// leaves the set, so that its heartbeat stops and the recovery sweep takes it back.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashSet<i64>>);

impl InFlight {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn len(&self) -> i64 {
        self.set().len() as i64
    }
    fn ids(&self) -> Vec<i64> {
        self.set().iter().copied().collect()
    }
    fn add(&self, ids: impl IntoIterator<Item = i64>) {
        self.set().extend(ids);
    }
    fn remove(&self, ids: impl IntoIterator<Item = i64>) {
        let mut set = self.set();
        for id in ids {
            set.remove(&id);
        }
    }
}

impl Runner {
    /// Runs until `shutdown`; `wake` is notified when runs are queued; `annealer` is
    /// notified after completions.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let capacity = (self.config.cap + self.config.high_cap).max(1);
        let in_flight = Arc::new(InFlight::default());
        let (results, completions) = mpsc::unbounded_channel::<RunResult>();
        let completer = tokio::spawn(complete_loop(
            self.pool.clone(),
            self.worker.clone(),
            self.config.clone(),
            completions,
            in_flight.clone(),
            wake.clone(),
        ));
        let mut executing: JoinSet<()> = JoinSet::new();
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        // Held for the runner's life: when this daemon's session ends, its runs are
        // recovered at once (runs::Recovery). Claims wait until a lease is held.
        let mut lease = WorkerLease::take(&self.pool, None)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "cannot take a worker lease yet"))
            .ok();
        let mut lease_key = lease.as_ref().map(WorkerLease::key);
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            let free = capacity - in_flight.len();
            if free > 0 && !shutdown.is_cancelled() && lease.is_some() {
                let started = std::time::Instant::now();
                let result = claim(&self.pool, &self.worker, lease_key, &self.config, free).await;
                metrics::annealer_phase("claim", started.elapsed());
                match result {
                    Ok(claimed) => {
                        tracing::debug!(
                            claimed = claimed.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "claim"
                        );
                        in_flight.add(claimed.iter().map(|run| run.id));
                        for run in claimed {
                            let jigs = self.jigs.clone();
                            let results = results.clone();
                            executing.spawn(async move {
                                let started = std::time::Instant::now();
                                let result = execute(&jigs, &run).await;
                                metrics::run_finished(result.outcome.as_str(), started.elapsed());
                                let _ = results.send(result);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming runs failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {},
                _ = poll.tick() => {},
                _ = heartbeat.tick() => {
                    if let Err(e) = runs::heartbeat(&self.pool, &self.worker, &in_flight.ids()).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                    lease = keep_lease(&self.pool, lease, lease_key).await;
                    lease_key = lease.as_ref().map(WorkerLease::key).or(lease_key);
                },
                Some(_) = executing.join_next(), if !executing.is_empty() => {
                    while executing.try_join_next().is_some() {}
                }
            }
        }
        // Shutdown: executing runs get the grace period; their results still complete.
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        while !executing.is_empty() {
            if tokio::time::timeout_at(deadline, executing.join_next())
                .await
                .is_err()
            {
                break;
            }
        }
        executing.abort_all();
        drop(results);
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(5), completer).await;
        if let Err(e) = release(&self.pool, &self.worker).await {
            tracing::warn!(error = %e, "handing back unfinished runs failed; the recovery sweep will");
        }
    }
}

/// Batches written at once, by one daemon and by all the daemons sharing a database. A
/// completion is a few dozen set-based statements, most of the time waiting on the
/// database; with two in flight the next batch's statements run while the last one's are
/// being applied (a second core on the server, or the first one's round trips), instead
/// of every result waiting for one serial writer.
///
/// Each writer holds a slot (an advisory lock, [`Lock::CompletionWriter`]) for its
/// transaction, and a daemon's writers take different slots, so several daemons together
/// still write [`COMPLETERS`] batches at once. Unbounded, three daemons wrote six at once,
/// each a third of the size: the same rows in three times the statements, contending for
/// the same index pages, and every statement cost more per row.
const COMPLETERS: usize = 2;

/// Applies results in batches, [`COMPLETERS`] at a time, until the channel closes.
async fn complete_loop(
    pool: PgPool,
    worker: String,
    config: QueueConfig,
    mut completions: mpsc::UnboundedReceiver<RunResult>,
    in_flight: Arc<InFlight>,
    runner: Arc<Notify>,
) {
    let mut writing = JoinSet::new();
    // the slot each writer of this daemon holds
    let mut held: HashMap<tokio::task::Id, u8> = HashMap::new();
    loop {
        let free = (0..COMPLETERS as u8).find(|slot| !held.values().any(|h| h == slot));
        let Some(slot) = free else {
            if let Some(done) = writing.join_next_with_id().await {
                held.remove(&finished_id(&done));
            }
            continue;
        };
        let mut batch = Vec::new();
        tokio::select! {
            received = completions.recv_many(&mut batch, COMPLETION_BATCH) => {
                if received == 0 {
                    break;
                }
                let writer = writing.spawn(complete_batch(
                    pool.clone(),
                    worker.clone(),
                    config.clone(),
                    batch,
                    in_flight.clone(),
                    runner.clone(),
                    slot,
                ));
                held.insert(writer.id(), slot);
            }
            Some(done) = writing.join_next_with_id(), if !writing.is_empty() => {
                held.remove(&finished_id(&done));
            }
        }
    }
    while writing.join_next().await.is_some() {}
}

/// The task a [`JoinSet::join_next_with_id`] answer is about, whether it finished or not.
fn finished_id<T>(done: &Result<(tokio::task::Id, T), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, _)) => *id,
        Err(e) => e.id(),
    }
}

/// One batch of results, applied; its runs leave the in-flight set and the runner looks
/// for more work.
async fn complete_batch(
    pool: PgPool,
    worker: String,
    config: QueueConfig,
    batch: Vec<RunResult>,
    in_flight: Arc<InFlight>,
    runner: Arc<Notify>,
    slot: u8,
) {
    let started = std::time::Instant::now();
    // what the outcomes made runnable is queued with them: no annealer pass needed
    let (_, lost) = complete_each(&pool, &worker, &batch, Some(&config), Some(slot)).await;
    metrics::annealer_phase("complete", started.elapsed());
    tracing::debug!(
        runs = batch.len(),
        lost = lost.len(),
        ms = started.elapsed().as_millis() as u64,
        "complete"
    );
    in_flight.remove(batch.iter().map(|result| result.run_id));
    runner.notify_one();
}

/// Hands back this worker's unfinished runs: their noderoles return to TODO/BLOCKED.
pub async fn release(pool: &PgPool, worker: &str) -> crate::db::Result<usize> {
    let mut tx = pool.begin().await?;
    let released = runs::release_worker(&mut tx, worker).await?;
    tx.commit().await?;
    Ok(released)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;

    use super::*;
    use crate::jig::{Jig, JigOutput};

    /// A jig that only logs, from a task of its own as real jigs do.
    struct Chatty;

    impl Jig for Chatty {
        fn name(&self) -> &'static str {
            "chatty"
        }
        fn run<'a>(&'a self, _job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
            Box::pin(async {
                tracing::info!("the jig speaks");
                JigOutput::ok(None, "")
            })
        }
    }

    /// Collects what the log subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn claimed(id: i64) -> ClaimedRun {
        ClaimedRun {
            id,
            noderole_id: 3,
            node_id: 2,
            node: "n7.example.com".into(),
            role: "chatter".into(),
            barclamp: "test".into(),
            barclamp_source: String::new(),
            jig: "chatty".into(),
            destructive: false,
            run_count: 0,
            timeout_secs: 30,
            input: serde_json::json!({}),
        }
    }

    /// One run can be followed through the log by its id: what its jig logs names the run,
    /// the node and the role.
    #[tokio::test(flavor = "current_thread")]
    async fn a_jigs_log_lines_name_their_run() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let jigs = JigRegistry::default().with(Chatty);
        let result = execute(&jigs, &claimed(4711)).await;
        assert_eq!(result.outcome, Outcome::Succeeded);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = log
            .lines()
            .find(|l| l.contains("the jig speaks"))
            .unwrap_or_else(|| panic!("the jig's line is missing from:\n{log}"));
        for field in ["run=4711", "node=n7.example.com", "role=chatter"] {
            assert!(line.contains(field), "{field} missing from {line:?}");
        }
    }
}
