//! `crowbar simulate`: a fleet of simulated nodes converged through the real annealer,
//! runner and PostgreSQL, to see what a rollout of that size does — how long it takes, how
//! long work waits under the run cap, and what a given failure rate holds back.
//!
//! The fleet ([`fleet`]) lives in a deployment of its own with a unique name; what each
//! noderole does is drawn from the seed ([`draws`]) and written into its data before the
//! commit, so a seed replays the same outcome. The annealer runs only the simulation's jig
//! ([`jig`]); the report ([`report`], [`chart`]) is computed from the final states and the
//! run records. Documented in docs/simulate.md.

pub mod chart;
pub mod draws;
pub mod fleet;
pub mod jig;
pub mod report;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::{
    draws::Draws,
    fleet::Fleet,
    report::{Ending, Final, Inputs, Report, RunTiming, Setup},
};
use crate::{
    annealer::{AnnealerSettings, Engine},
    db::{self, events::Actor, keys::Key, simulation::Population},
    domain::state::NodeRoleState,
    hooks::Hooks,
};

/// A step of the simulation failed; says which, with the cause.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct SimulateError {
    step: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Names the step an error comes from, whatever layer's error it is.
fn step<E: std::error::Error + Send + Sync + 'static>(
    step: impl Into<String>,
) -> impl FnOnce(E) -> SimulateError {
    move |source| SimulateError {
        step: step.into(),
        source: Box::new(source),
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub fleet: Fleet,
    pub draws: Draws,
    /// The annealer's run cap; `None`: the daemon's (`CROWBAR_RUN_CAP`, else its default).
    pub cap: Option<i64>,
    /// How long to wait for convergence after the commit.
    pub timeout: Duration,
    /// Leave the deployment and its nodes in the database afterwards, proposed: as the
    /// simulation left them, and never run again.
    pub keep: bool,
}

/// Where a simulation is, about once a second.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step of setting up or cleaning up, as a line to show.
    Note(String),
    /// Converging: seconds since the commit, noderoles by state, and runs finished per
    /// second since the last tick.
    Converging {
        seconds: f64,
        counts: BTreeMap<String, i64>,
        runs_per_second: f64,
    },
}

/// How often convergence is checked, and how often progress is told.
const POLL: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_secs(1);
/// How long in-flight runs may finish once the simulation stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl Simulation {
    /// Sets up the fleet in a new deployment of the database behind `pool` (migrated), lets
    /// the annealer converge it until nothing can move, the timeout passes or `stop` is
    /// cancelled, and reports. Unless [`Simulation::keep`], the deployment and its nodes are
    /// removed afterwards, whatever happened. Refused while another simulation's work can
    /// still run in that database.
    pub async fn run(
        &self,
        pool: &PgPool,
        stop: &CancellationToken,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Report, SimulateError> {
        let setup_start = Instant::now();
        progress(Progress::Note(format!(
            "writing {} nodes x {} roles...",
            self.fleet.nodes, self.fleet.roles
        )));
        self.refuse_beside_another(pool).await?;
        self.import_roles(pool).await?;
        let (id, name) = self.populate(pool).await?;
        let result = self
            .converge(pool, id, &name, setup_start, stop, progress)
            .await;
        // the report stands even when the clean-up fails: say so beside it
        if let Err(why) = self.clean_up(pool, id).await {
            progress(Progress::Note(format!(
                "deployment {name} was left in the database as it is: {why}"
            )));
        }
        result
    }

    /// Refuses to start while another simulation's work can run in the same database: the
    /// annealers of both would run the work of both.
    async fn refuse_beside_another(&self, pool: &PgPool) -> Result<(), SimulateError> {
        let busy = db::simulation::busy_with_jig(pool, fleet::JIG)
            .await
            .map_err(step("looking for other simulations"))?;
        if busy.is_empty() {
            return Ok(());
        }
        Err(SimulateError {
            step: "another simulation".into(),
            source: format!(
                "deployment {} still has simulated work that can run (a simulation going on, \
                 or one killed before it cleaned up); run one simulation at a time in a \
                 database, or use another",
                busy.join(", ")
            )
            .into(),
        })
    }

    /// Removes the deployment, or with [`Simulation::keep`] proposes it, so nothing in it
    /// ever runs again (later simulations' annealers skip proposed deployments).
    async fn clean_up(&self, pool: &PgPool, id: i64) -> Result<(), String> {
        if self.keep {
            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
            db::deployments::propose(&mut tx, &Key::Id(id), &actor())
                .await
                .map_err(|e| format!("proposing it failed: {e}"))?;
            return tx.commit().await.map_err(|e| e.to_string());
        }
        match db::simulation::remove(pool, id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("another deployment uses its nodes".into()),
            Err(e) => Err(format!("removing it failed: {e}")),
        }
    }

    /// The simulation's jig and roles, imported (a no-op once they are there).
    async fn import_roles(&self, pool: &PgPool) -> Result<(), SimulateError> {
        for (source, yaml) in [
            ("simulate-base.yml", Fleet::base_barclamp_yaml()),
            ("simulate-fleet.yml", self.fleet.barclamp_yaml()),
        ] {
            crate::barclamps::import_document(pool, source, &yaml)
                .await
                .map_err(step("importing the simulation's roles"))?;
        }
        Ok(())
    }

    /// A new deployment holding the fleet, every noderole PROPOSED with its draw in its
    /// data; returns its id and name.
    async fn populate(&self, pool: &PgPool) -> Result<(i64, String), SimulateError> {
        let name = deployment_name();
        let f = &self.fleet;
        let nodes: Vec<String> = (1..=f.nodes).map(|i| Fleet::node_name(i, &name)).collect();
        let roles: Vec<String> = (1..=f.roles).map(|k| f.role_name(k)).collect();
        let cohorts: Vec<i32> = (1..=f.roles).map(|k| f.cohort(k) as i32).collect();
        let explicit: Vec<bool> = (1..=f.roles).map(|k| f.explicit(k)).collect();
        let edges: Vec<(String, String)> = f
            .edges()
            .into_iter()
            .map(|(p, c)| (f.role_name(p), f.role_name(c)))
            .collect();
        let data: Vec<serde_json::Value> = (1..=f.nodes)
            .flat_map(|node| (1..=f.roles).map(move |role| (node, role)))
            .map(|(node, role)| self.draws.draw(node, role).data())
            .collect();
        let mut tx = pool.begin().await.map_err(step("writing the fleet"))?;
        let deployment = db::deployments::create(
            &mut tx,
            &name,
            &format!(
                "crowbar simulate: {} nodes x {} roles ({}), seed {}",
                f.nodes, f.roles, f.shape, self.draws.seed
            ),
            None,
            &actor(),
        )
        .await
        .map_err(step(format!("creating deployment {name}")))?;
        let population = Population {
            nodes: &nodes,
            roles: &roles,
            cohorts: &cohorts,
            explicit: &explicit,
            edges: &edges,
            data: &data,
        };
        db::simulation::populate(&mut tx, deployment.id, population)
            .await
            .map_err(step(format!("writing the fleet into deployment {name}")))?;
        tx.commit().await.map_err(step("writing the fleet"))?;
        db::simulation::analyze(pool)
            .await
            .map_err(step("analyzing the written fleet"))?;
        Ok((deployment.id, name))
    }

    /// Commits the deployment, runs the annealer until it is done, and reports.
    async fn converge(
        &self,
        pool: &PgPool,
        id: i64,
        name: &str,
        setup_start: Instant,
        stop: &CancellationToken,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Report, SimulateError> {
        let setup_seconds = setup_start.elapsed().as_secs_f64();
        progress(Progress::Note(format!("committing deployment {name}...")));
        let commit_start = Instant::now();
        let mut tx = pool.begin().await.map_err(step("committing"))?;
        db::deployments::commit(&mut tx, &Key::Id(id), &actor())
            .await
            .map_err(step(format!("committing deployment {name}")))?;
        tx.commit().await.map_err(step("committing"))?;
        let committed = clock(pool).await?;
        let commit_seconds = commit_start.elapsed().as_secs_f64();

        let mut settings = AnnealerSettings::default();
        if let Some(cap) = self.cap {
            settings.run_cap = cap;
        }
        let watching = watch(pool, id, name, self.timeout, stop, progress);
        let ending = anneal(pool, &settings, watching).await?;
        let stopped = (clock(pool).await? - committed).as_seconds_f64();

        let (finals, runs) = self.outcome(pool, id, name, committed).await?;
        Ok(Report::build(Inputs {
            deployment: name.to_string(),
            setup: Setup {
                nodes: self.fleet.nodes,
                roles: self.fleet.roles,
                shape: self.fleet.shape.to_string(),
                fail_rate: self.draws.fail_rate,
                delay: self.draws.delay.to_string(),
                seed: self.draws.seed,
                cap: settings.run_cap,
            },
            ending,
            setup_seconds,
            commit_seconds,
            stopped,
            finals,
            runs,
        }))
    }

    /// The final state of every noderole, by its (node, role) indices, and the run
    /// records with times since `committed`.
    async fn outcome(
        &self,
        pool: &PgPool,
        id: i64,
        name: &str,
        committed: DateTime<Utc>,
    ) -> Result<(Vec<Final>, Vec<RunTiming>), SimulateError> {
        let reading = "reading the outcome";
        let outcomes = db::simulation::outcomes(pool, id)
            .await
            .map_err(step(reading))?;
        let finals = outcomes
            .iter()
            .filter_map(|o| {
                Some(Final {
                    node: Fleet::node_index(&o.node, name)?,
                    role: self.fleet.role_index(&o.role)?,
                    state: NodeRoleState::from_code(o.state)?,
                })
            })
            .collect();
        let runs = db::simulation::run_times(pool, id, committed)
            .await
            .map_err(step(reading))?
            .into_iter()
            .map(|r| RunTiming {
                queued: r.queued,
                started: r.started,
                finished: r.finished,
                ready: r.ready.unwrap_or(0.0),
                outcome: r.outcome,
            })
            .collect();
        Ok((finals, runs))
    }
}

/// The database's clock: the run records' times are its.
async fn clock(pool: &PgPool) -> Result<DateTime<Utc>, SimulateError> {
    db::simulation::clock(pool)
        .await
        .map_err(step("reading the database's clock"))
}

/// Runs the real annealer and runner (only the simulation's jig) until `until` ends, then
/// stops them: runs still executing are handed back, as at a daemon's shutdown.
async fn anneal(
    pool: &PgPool,
    settings: &AnnealerSettings,
    until: impl Future<Output = Result<Ending, SimulateError>>,
) -> Result<Ending, SimulateError> {
    let shutdown = CancellationToken::new();
    let engine = Engine::start(
        pool.clone(),
        settings,
        jig::registry(),
        Hooks::default(),
        SHUTDOWN_GRACE,
        shutdown.clone(),
    );
    let watched = until.await;
    shutdown.cancel();
    let stopping = tokio::time::timeout(
        SHUTDOWN_GRACE + Duration::from_secs(10),
        engine.tracker.wait(),
    );
    if stopping.await.is_err() {
        tracing::warn!("the simulation's annealer did not stop in time");
    }
    watched
}

/// Waits until nothing in the deployment can move any more, telling progress once a
/// [`TICK`]; or until `timeout` passes or `stop` is cancelled.
async fn watch(
    pool: &PgPool,
    id: i64,
    name: &str,
    timeout: Duration,
    stop: &CancellationToken,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Ending, SimulateError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut poll = tokio::time::interval(POLL);
    let mut last_tick: Option<(Instant, i64)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(Ending::Interrupted),
            _ = tokio::time::sleep_until(deadline) => return Ok(Ending::TimedOut),
            _ = poll.tick() => {}
        }
        let status = db::anneal::status(pool, Some(name))
            .await
            .map_err(step("reading the convergence status"))?;
        let count = |state: NodeRoleState| status.counts.get(state.name()).copied().unwrap_or(0);
        let done = count(NodeRoleState::Active) + count(NodeRoleState::Error);
        let due = last_tick.is_none_or(|(at, _)| at.elapsed() >= TICK);
        if due {
            let runs_per_second = last_tick.map_or(0.0, |(at, before)| {
                (done - before) as f64 / at.elapsed().as_secs_f64()
            });
            progress(Progress::Converging {
                seconds: start.elapsed().as_secs_f64(),
                counts: status.counts.clone(),
                runs_per_second,
            });
            last_tick = Some((Instant::now(), done));
        }
        // the counts are cheap; the exact check only when nothing is running
        if count(NodeRoleState::Transition) == 0
            && (count(NodeRoleState::Todo) == 0
                || db::simulation::unsettled(pool, id)
                    .await
                    .map_err(step("reading the convergence status"))?
                    == 0)
        {
            return Ok(Ending::Converged);
        }
    }
}

fn actor() -> Actor {
    Actor("simulate".into())
}

/// `simulate-20261127-153012-7f3a`: when, and a random suffix, so two simulations started
/// in the same second never share a deployment.
fn deployment_name() -> String {
    format!(
        "simulate-{}-{:04x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    )
}
