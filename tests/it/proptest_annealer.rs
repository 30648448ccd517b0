//! Property tests of the annealer's state machine (SEMANTICS.md §2–6) against real
//! PostgreSQL.
//!
//! Each case builds a random role DAG, three nodes (of which it uses one to three) and three
//! nested deployments (`system` ⊃ `d1` ⊃ `d2`) in a database emptied for it, then applies a
//! random sequence of operations: binds, commits, proposals, data edits, annealer steps (a
//! pass, claims, and completions with chosen outcomes), retries, deaths and revivals,
//! availability flips, recovery sweeps and lost workers.
//!
//! After every step the invariants are read back with SQL: at most one run per node and per
//! noderole, within the cap; a running run is exactly a TRANSITION noderole and a queued run
//! waits for a TODO one; TODO means every parent is ACTIVE and BLOCKED means some parent is
//! not (no lost trigger); at most one TRANSITION or ERROR per node, ERROR only on live nodes;
//! cohort = 1 + the highest parent cohort; every required role has a parent (implicit ones
//! on the same node, cluster ones with all their peers); and the failure ripple holds for as
//! long as the ERROR does. Each operation also checks its own postconditions: the pass queues
//! the lowest (cohort, id) runnable noderole per free node, claims start only runnable ones,
//! outcomes follow the §5 table, retries are refused exactly when §5 says, deaths reset
//! exactly their node, availability and proposals change no state, refusals leave nothing
//! behind, the sweep never finds anything to repair. At the end the world is healed (all
//! nodes up, everything committed, errors retried) and must converge.
//!
//! `PROPTEST_CASES=500 cargo test --test it proptest_annealer` searches deeper.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
};

use crowbar::{
    annealer,
    db::{
        self, deployments,
        keys::Key,
        node_roles,
        nodes::{self, NodeUpdate},
        runs::{self, ClaimedRun, Outcome, QueueConfig, RunResult},
    },
    domain::state::NodeRoleState::{self, *},
    jig::JigRegistry,
    runner,
};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestError, TestRunner},
};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{db::test_db, world::admin};

const NODES: [&str; 3] = ["n0", "n1", "n2"];
/// `system`, `d1` under it, `d2` under `d1`.
const DEPLOYMENTS: [&str; 3] = ["system", "d1", "d2"];
const WORKER: &str = "w";

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

// ---------------------------------------------------------------------------------------
// Cases

#[derive(Clone)]
struct RoleDef {
    /// Indexes of earlier roles.
    requires: Vec<usize>,
    implicit: bool,
    cluster: bool,
    destructive: bool,
}

#[derive(Clone)]
enum Op {
    /// Nothing: what shrinking turns irrelevant operations into.
    Skip,
    Bind {
        role: usize,
        node: usize,
        deployment: usize,
    },
    Commit {
        deployment: usize,
    },
    Propose {
        deployment: usize,
    },
    /// Proposes data `{"v": value}` for the k-th noderole (by id, modulo their number).
    SetData {
        noderole: usize,
        value: u8,
    },
    /// A pass, then claims up to `claim` runs, then completes the runs held whose bit is
    /// set in `complete` (failing those whose bit is set in `fail`); with `stale`, the
    /// results of lost runs are sent too.
    Anneal {
        claim: u8,
        complete: u8,
        fail: u8,
        stale: bool,
    },
    /// Retries the k-th committed noderole (by id, modulo their number), or the k-th of all
    /// when none is committed; with `busy_parent`, the k-th parent of a running noderole
    /// when there is one (the interleavings where a parent goes back under a running child).
    Retry {
        noderole: usize,
        busy_parent: bool,
    },
    SetAlive {
        node: usize,
        alive: bool,
    },
    SetAvailable {
        node: usize,
        available: bool,
    },
    /// The periodic sweep with nothing lost.
    Sweep,
    /// The worker stops heart-beating for the held runs whose bit is set; a sweep follows.
    LoseRuns {
        which: u8,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Skip => write!(f, "skip"),
            Op::Bind {
                role,
                node,
                deployment,
            } => write!(
                f,
                "bind r{role} to {} in {}",
                NODES[*node], DEPLOYMENTS[*deployment]
            ),
            Op::Commit { deployment } => write!(f, "commit {}", DEPLOYMENTS[*deployment]),
            Op::Propose { deployment } => write!(f, "propose {}", DEPLOYMENTS[*deployment]),
            Op::SetData { noderole, value } => {
                write!(f, "set data of noderole #{noderole} to {{\"v\": {value}}}")
            }
            Op::Anneal {
                claim,
                complete,
                fail,
                stale,
            } => write!(
                f,
                "anneal: claim {claim}, complete {complete:08b}, fail {fail:08b}{}",
                if *stale { ", send stale results" } else { "" }
            ),
            Op::Retry {
                noderole,
                busy_parent: false,
            } => write!(f, "retry committed noderole #{noderole}"),
            Op::Retry {
                noderole,
                busy_parent: true,
            } => write!(f, "retry parent #{noderole} of a running noderole"),
            Op::SetAlive { node, alive } => write!(f, "{} alive = {alive}", NODES[*node]),
            Op::SetAvailable { node, available } => {
                write!(f, "{} available = {available}", NODES[*node])
            }
            Op::Sweep => write!(f, "sweep"),
            Op::LoseRuns { which } => write!(f, "lose runs {which:08b}"),
        }
    }
}

#[derive(Clone)]
struct Case {
    roles: Vec<RoleDef>,
    ops: Vec<Op>,
}

impl fmt::Debug for RoleDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requires: Vec<String> = self.requires.iter().map(|p| format!("r{p}")).collect();
        write!(
            f,
            "{}{}{}requires [{}]",
            if self.implicit { "implicit " } else { "" },
            if self.cluster { "cluster " } else { "" },
            if self.destructive { "destructive " } else { "" },
            requires.join(", ")
        )
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nroles:")?;
        for (i, role) in self.roles.iter().enumerate() {
            writeln!(f, "  r{i}: {role:?}")?;
        }
        writeln!(f, "ops:")?;
        for op in self.ops.iter().filter(|op| !matches!(op, Op::Skip)) {
            writeln!(f, "  {op:?}")?;
        }
        Ok(())
    }
}

fn role_defs() -> impl Strategy<Value = Vec<RoleDef>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<u8>(), 0..3),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.1),
        ),
        2..7,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (requires, implicit, cluster, destructive))| {
                let mut requires: Vec<usize> = if i == 0 {
                    vec![]
                } else {
                    requires.iter().map(|r| *r as usize % i).collect()
                };
                requires.sort_unstable();
                requires.dedup();
                RoleDef {
                    requires,
                    implicit,
                    cluster,
                    destructive,
                }
            })
            .collect()
    })
}

/// An operation with its role as a raw number, made concrete once the roles are known.
fn raw_op() -> impl Strategy<Value = (u8, Op)> {
    let node = 0..NODES.len();
    let deployment = 0..DEPLOYMENTS.len();
    // Shrinking moves towards earlier alternatives: first comes `Skip`.
    prop_oneof![
        1 => Just((0, Op::Skip)),
        3 => (any::<u8>(), node.clone(), deployment.clone()).prop_map(|(role, node, deployment)| {
            (role, Op::Bind { role: 0, node, deployment })
        }),
        6 => deployment.clone().prop_map(|deployment| (0, Op::Commit { deployment })),
        1 => (1..DEPLOYMENTS.len()).prop_map(|deployment| (0, Op::Propose { deployment })),
        1 => (0..16usize, any::<u8>())
            .prop_map(|(noderole, value)| (0, Op::SetData { noderole, value: value % 4 })),
        8 => (0u8..4, any::<u8>(), any::<u8>(), prop::bool::weighted(0.2)).prop_map(
            |(claim, complete, fail, stale)| {
                // failures are rarer than successes
                (0, Op::Anneal { claim, complete, fail: fail & (fail >> 1), stale })
            }
        ),
        3 => (0..16usize, prop::bool::weighted(0.3))
            .prop_map(|(noderole, busy_parent)| (0, Op::Retry { noderole, busy_parent })),
        1 => (node.clone(), prop::bool::weighted(0.5))
            .prop_map(|(node, alive)| (0, Op::SetAlive { node, alive })),
        1 => (node, prop::bool::weighted(0.7))
            .prop_map(|(node, available)| (0, Op::SetAvailable { node, available })),
        1 => Just((0, Op::Sweep)),
        1 => any::<u8>().prop_map(|which| (0, Op::LoseRuns { which })),
    ]
}

/// Cases use one to three nodes: with fewer, more parents and children share a node.
fn cases(steps: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (
        role_defs(),
        1..=NODES.len(),
        prop::collection::vec(raw_op(), steps),
    )
        .prop_map(|(roles, nodes, ops)| {
            let ops = ops
                .into_iter()
                .map(|(role, op)| match op {
                    Op::Bind {
                        node, deployment, ..
                    } => Op::Bind {
                        role: role as usize % roles.len(),
                        node: node % nodes,
                        deployment,
                    },
                    Op::SetAlive { node, alive } => Op::SetAlive {
                        node: node % nodes,
                        alive,
                    },
                    Op::SetAvailable { node, available } => Op::SetAvailable {
                        node: node % nodes,
                        available,
                    },
                    op => op,
                })
                .collect();
            Case { roles, ops }
        })
}

// ---------------------------------------------------------------------------------------
// What the database holds, read back after every step

#[derive(Debug, Clone, PartialEq)]
struct Nr {
    node: i64,
    role: usize,
    deployment: i64,
    state: NodeRoleState,
    cohort: i32,
    run_count: i32,
}

#[derive(Debug, Clone, PartialEq)]
struct RunRow {
    noderole: i64,
    node: i64,
    running: bool,
    lane: String,
}

#[derive(Debug, Clone, PartialEq)]
struct NodeRow {
    index: usize,
    alive: bool,
    available: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Snap {
    nrs: BTreeMap<i64, Nr>,
    /// child -> parents
    parents: BTreeMap<i64, BTreeSet<i64>>,
    /// parent -> children
    children: BTreeMap<i64, BTreeSet<i64>>,
    runs: BTreeMap<i64, RunRow>,
    nodes: BTreeMap<i64, NodeRow>,
    /// deployment id -> committed
    committed: BTreeMap<i64, bool>,
    deployment_names: BTreeMap<i64, String>,
}

async fn snapshot(pool: &PgPool) -> Result<Snap, String> {
    let sql = |e: sqlx::Error| format!("reading the state failed: {e}");
    let rows: Vec<(i64, i64, String, i64, i16, i32, i32)> = sqlx::query_as(
        "SELECT nr.id, nr.node_id, r.name, nr.deployment_id, nr.state, nr.cohort, nr.run_count
           FROM noderoles nr JOIN roles r ON r.id = nr.role_id",
    )
    .fetch_all(pool)
    .await
    .map_err(sql)?;
    let mut snap = Snap::default();
    for (id, node, role, deployment, state, cohort, run_count) in rows {
        let role = role[1..].parse().map_err(|_| format!("odd role {role}"))?;
        let state = NodeRoleState::from_code(state).ok_or("odd state")?;
        snap.nrs.insert(
            id,
            Nr {
                node,
                role,
                deployment,
                state,
                cohort,
                run_count,
            },
        );
    }
    let edges: Vec<(i64, i64)> = sqlx::query_as("SELECT parent_id, child_id FROM noderole_edges")
        .fetch_all(pool)
        .await
        .map_err(sql)?;
    for (parent, child) in edges {
        snap.parents.entry(child).or_default().insert(parent);
        snap.children.entry(parent).or_default().insert(child);
    }
    let runs: Vec<(i64, i64, i64, String, String)> =
        sqlx::query_as("SELECT id, noderole_id, node_id, state, lane FROM runs")
            .fetch_all(pool)
            .await
            .map_err(sql)?;
    for (id, noderole, node, state, lane) in runs {
        snap.runs.insert(
            id,
            RunRow {
                noderole,
                node,
                running: state == "running",
                lane,
            },
        );
    }
    let nodes: Vec<(i64, String, bool, bool)> =
        sqlx::query_as("SELECT id, name, alive, available FROM nodes")
            .fetch_all(pool)
            .await
            .map_err(sql)?;
    for (id, name, alive, available) in nodes {
        let index = NODES.iter().position(|n| *n == name).ok_or("odd node")?;
        snap.nodes.insert(
            id,
            NodeRow {
                index,
                alive,
                available,
            },
        );
    }
    let deployments: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, name, state FROM deployments")
            .fetch_all(pool)
            .await
            .map_err(sql)?;
    for (id, name, state) in deployments {
        snap.committed.insert(id, state == "committed");
        snap.deployment_names.insert(id, name);
    }
    Ok(snap)
}

impl Snap {
    fn state(&self, id: i64) -> NodeRoleState {
        self.nrs[&id].state
    }

    fn parents_of(&self, id: i64) -> impl Iterator<Item = i64> + '_ {
        self.parents.get(&id).into_iter().flatten().copied()
    }

    fn children_of(&self, id: i64) -> impl Iterator<Item = i64> + '_ {
        self.children.get(&id).into_iter().flatten().copied()
    }

    fn parents_active(&self, id: i64) -> bool {
        self.parents_of(id).all(|p| self.state(p) == Active)
    }

    /// Transitive descendants of `id` (not `id`), following edges that `follow` accepts.
    fn descendants(&self, id: i64, follow: impl Fn(i64, i64) -> bool) -> BTreeSet<i64> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![id];
        while let Some(p) = pending.pop() {
            for c in self.children_of(p) {
                if follow(p, c) && seen.insert(c) {
                    pending.push(c);
                }
            }
        }
        seen
    }

    /// `r2@n1` for messages.
    fn name(&self, id: i64) -> String {
        match self.nrs.get(&id) {
            Some(nr) => format!(
                "r{}@{}#{id}",
                nr.role,
                self.nodes.get(&nr.node).map_or("?", |n| NODES[n.index])
            ),
            None => format!("#{id}"),
        }
    }

    fn node_id(&self, index: usize) -> i64 {
        *self
            .nodes
            .iter()
            .find(|(_, n)| n.index == index)
            .expect("every node exists")
            .0
    }

    /// The k-th noderole by id, modulo their number.
    fn pick(&self, k: usize) -> Option<i64> {
        if self.nrs.is_empty() {
            return None;
        }
        self.nrs.keys().nth(k % self.nrs.len()).copied()
    }

    fn states(&self) -> BTreeMap<i64, NodeRoleState> {
        self.nrs.iter().map(|(id, nr)| (*id, nr.state)).collect()
    }

    /// Noderoles the annealer may start now (§5 conditions 1–5, plus a free run slot).
    fn runnable(&self) -> BTreeMap<i64, Vec<i64>> {
        let mut by_node: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, nr) in &self.nrs {
            let node = &self.nodes[&nr.node];
            let frozen = self
                .nrs
                .values()
                .any(|o| o.node == nr.node && matches!(o.state, Transition | Error));
            let slot_taken = self.runs.values().any(|r| r.node == nr.node);
            if nr.state == Todo
                && self.committed[&nr.deployment]
                && node.alive
                && node.available
                && !frozen
                && !slot_taken
            {
                by_node.entry(nr.node).or_default().push(*id);
            }
        }
        by_node
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (id, nr) in &self.nrs {
            let parents: Vec<String> = self.parents_of(*id).map(|p| format!("#{p}")).collect();
            out.push_str(&format!(
                "  {} in {} {} cohort {} runs {} parents [{}]\n",
                self.name(*id),
                self.deployment_names[&nr.deployment],
                nr.state,
                nr.cohort,
                nr.run_count,
                parents.join(", ")
            ));
        }
        for (id, run) in &self.runs {
            out.push_str(&format!(
                "  run {id}: {} {}\n",
                self.name(run.noderole),
                if run.running { "running" } else { "queued" }
            ));
        }
        for node in self.nodes.values() {
            out.push_str(&format!(
                "  {}: alive {} available {}\n",
                NODES[node.index], node.alive, node.available
            ));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The machine

struct Machine {
    pool: PgPool,
    roles: Vec<RoleDef>,
    config: QueueConfig,
    /// Runs this worker claimed and has not completed.
    running: Vec<ClaimedRun>,
    /// Runs taken away from this worker by the sweep; their results must be ignored.
    lost: Vec<ClaimedRun>,
    /// ERROR noderole -> its descendants that were in TRANSITION when it failed.
    episodes: HashMap<i64, BTreeSet<i64>>,
    /// What each step did, for the failure message.
    log: Vec<String>,
}

fn sql<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: unexpected SQL error: {e}")
}

/// Whether a database error is a refusal (409), and its code; anything else is a failure.
fn refusal(what: &str, e: db::Error) -> Result<&'static str, String> {
    match e {
        db::Error::Conflict { code, .. } => Ok(code),
        other => Err(format!("{what}: unexpected error: {other:?}")),
    }
}

impl Machine {
    /// Empties the database and builds the case's world in it: the roles on the `test`
    /// jig, `d1` and `d2`, and three alive nodes.
    async fn new(pool: &PgPool, roles: Vec<RoleDef>) -> Result<Machine, String> {
        let pool = pool.clone();
        let mut setup = String::from(
            "DELETE FROM runs; DELETE FROM run_records; DELETE FROM noderole_edges;
             DELETE FROM noderoles; DELETE FROM snapshots; DELETE FROM deployment_roles;
             DELETE FROM events; DELETE FROM nodes; DELETE FROM deployments WHERE NOT system;
             DELETE FROM attribs; DELETE FROM roles; DELETE FROM jigs; DELETE FROM barclamps;
             INSERT INTO barclamps (name, content_hash, document) VALUES ('prop', 'x', '{}');
             INSERT INTO jigs (name, barclamp_id) SELECT 'test', id FROM barclamps;",
        );
        for (i, role) in roles.iter().enumerate() {
            let requires: Vec<String> = role.requires.iter().map(|p| format!("r{p}")).collect();
            setup.push_str(&format!(
                "INSERT INTO roles (name, barclamp_id, jig_id, implicit, cluster, destructive, requires)
                 SELECT 'r{i}', barclamp_id, id, {}, {}, {}, '{{{}}}' FROM jigs;",
                role.implicit,
                role.cluster,
                role.destructive,
                requires.join(",")
            ));
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&pool)
            .await
            .map_err(sql("resetting the database"))?;
        let mut conn = pool.acquire().await.map_err(sql("connect"))?;
        deployments::create(&mut conn, "d1", "", None, &admin())
            .await
            .map_err(|e| format!("{e}"))?;
        deployments::create(&mut conn, "d2", "", Some(&Key::from("d1")), &admin())
            .await
            .map_err(|e| format!("{e}"))?;
        for name in NODES {
            nodes::create(
                &mut conn,
                &nodes::NewNode {
                    name: name.into(),
                    ..Default::default()
                },
                &admin(),
            )
            .await
            .map_err(|e| format!("{e}"))?;
            nodes::update(
                &mut conn,
                &Key::from(name),
                &NodeUpdate {
                    alive: Some(true),
                    ..Default::default()
                },
                &admin(),
                "test",
            )
            .await
            .map_err(|e| format!("{e}"))?;
        }
        drop(conn);
        Ok(Machine {
            pool,
            roles,
            config: QueueConfig {
                cap: 2,
                high_cap: 1,
                default_timeout_secs: 30,
                jigs: JigRegistry::builtin().names(),
                batch: 1000,
            },
            running: vec![],
            lost: vec![],
            episodes: HashMap::new(),
            log: vec![],
        })
    }

    async fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        let mut snap = snapshot(&self.pool).await?;
        self.invariants(&snap)?;
        let ops = ops.iter().filter(|op| !matches!(op, Op::Skip));
        for (step, op) in ops.enumerate() {
            self.log.push(format!("{step:>3}: {op:?}"));
            let after = self.apply(op, &snap).await?;
            self.invariants(&after)
                .map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
            // the tallies stay exact, folded or not
            if step % 3 == 2 {
                crowbar::db::anneal::fold_tallies(&self.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let mismatches = crate::support::world::tally_mismatches(&self.pool).await;
            if !mismatches.is_empty() {
                return Err(format!(
                    "after step {step} ({op:?}): tallies are off: {mismatches:?}"
                ));
            }
            snap = after;
        }
        self.heal_and_converge().await
    }

    async fn apply(&mut self, op: &Op, before: &Snap) -> Result<Snap, String> {
        match op {
            Op::Skip => Ok(before.clone()),
            Op::Bind {
                role,
                node,
                deployment,
            } => self.bind(*role, *node, *deployment, before).await,
            Op::Commit { deployment } => self.commit(*deployment, before).await,
            Op::Propose { deployment } => self.propose(*deployment, before).await,
            Op::SetData { noderole, value } => self.set_data(*noderole, *value, before).await,
            Op::Anneal {
                claim,
                complete,
                fail,
                stale,
            } => self.anneal(*claim, *complete, *fail, *stale, before).await,
            Op::Retry {
                noderole,
                busy_parent,
            } => self.retry(*noderole, *busy_parent, before).await,
            Op::SetAlive { node, alive } => self.set_alive(*node, *alive, before).await,
            Op::SetAvailable { node, available } => {
                self.set_available(*node, *available, before).await
            }
            Op::Sweep => {
                let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
                let repaired = runs::recover(
                    &mut tx,
                    &runs::Recovery::heartbeat_only(std::time::Duration::from_secs(3600)),
                )
                .await
                .map_err(sql("sweep"))?;
                tx.commit().await.map_err(sql("commit"))?;
                let after = snapshot(&self.pool).await?;
                // every trigger fired: there is never anything to repair
                ensure!(
                    repaired == 0,
                    "the sweep repaired {repaired} noderoles: a trigger was lost\nbefore:\n{}after:\n{}",
                    before.describe(),
                    after.describe()
                );
                ensure!(
                    after.states() == before.states(),
                    "the sweep changed states"
                );
                Ok(after)
            }
            Op::LoseRuns { which } => self.lose_runs(*which, before).await,
        }
    }

    async fn bind(
        &mut self,
        role: usize,
        node: usize,
        deployment: usize,
        before: &Snap,
    ) -> Result<Snap, String> {
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        let result = node_roles::bind(
            &mut tx,
            &Key::from(NODES[node]),
            &format!("r{role}"),
            Some(&Key::from(DEPLOYMENTS[deployment])),
            None,
            &admin(),
        )
        .await;
        match result {
            Ok(bound) => {
                tx.commit().await.map_err(sql("commit bind"))?;
                let after = snapshot(&self.pool).await?;
                self.log
                    .push(format!("     bound {}", after.name(bound.noderole.id)));
                for (id, nr) in &after.nrs {
                    match before.nrs.get(id) {
                        None => ensure!(
                            nr.state == Proposed,
                            "bind created {} in state {}",
                            after.name(*id),
                            nr.state
                        ),
                        Some(old) => ensure!(
                            old.state == nr.state
                                || (matches!(old.state, Todo | Error) && nr.state == Blocked),
                            "bind moved {} from {} to {}",
                            after.name(*id),
                            old.state,
                            nr.state
                        ),
                    }
                }
                Ok(after)
            }
            Err(e) => {
                let code = refusal("bind", e)?;
                ensure!(code == "bind_refused", "bind answered {code}");
                tx.rollback().await.map_err(sql("rollback"))?;
                self.log.push(format!("     refused ({code})"));
                let after = snapshot(&self.pool).await?;
                ensure!(after == *before, "a refused bind left changes behind");
                Ok(after)
            }
        }
    }

    async fn commit(&mut self, deployment: usize, before: &Snap) -> Result<Snap, String> {
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        deployments::commit(&mut tx, &Key::from(DEPLOYMENTS[deployment]), &admin())
            .await
            .map_err(|e| format!("commit: {e:?}"))?;
        tx.commit().await.map_err(sql("commit"))?;
        let after = snapshot(&self.pool).await?;
        let name = DEPLOYMENTS[deployment];
        for (id, nr) in &after.nrs {
            let old = before.nrs[id].state;
            let here = after.deployment_names[&nr.deployment] == name;
            ensure!(
                !(here && nr.state == Proposed),
                "{} is still proposed after its deployment was committed",
                after.name(*id)
            );
            ensure!(
                old == nr.state
                    || (here && matches!(old, Proposed | Active | Error))
                    || (matches!(old, Todo | Error) && nr.state == Blocked),
                "commit of {name} moved {} from {old} to {}",
                after.name(*id),
                nr.state
            );
        }
        Ok(after)
    }

    async fn propose(&mut self, deployment: usize, before: &Snap) -> Result<Snap, String> {
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        let result =
            deployments::propose(&mut tx, &Key::from(DEPLOYMENTS[deployment]), &admin()).await;
        match result {
            Ok(_) => tx.commit().await.map_err(sql("commit"))?,
            Err(e) => {
                let code = refusal("propose", e)?;
                ensure!(deployment == 0, "propose answered {code}");
            }
        }
        let after = snapshot(&self.pool).await?;
        ensure!(
            after.states() == before.states() && after.runs == before.runs,
            "proposing changed noderoles or runs"
        );
        Ok(after)
    }

    async fn set_data(&mut self, k: usize, value: u8, before: &Snap) -> Result<Snap, String> {
        let Some(id) = before.pick(k) else {
            return Ok(before.clone());
        };
        let nr = &before.nrs[&id];
        let editable = nr.state == Proposed || !before.committed[&nr.deployment];
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        match node_roles::set_data(&mut tx, id, &json!({ "v": value }), &admin()).await {
            Ok(_) => {
                ensure!(editable, "set data of {} was accepted", before.name(id));
                tx.commit().await.map_err(sql("commit"))?;
            }
            Err(e) => {
                let code = refusal("set data", e)?;
                ensure!(
                    !editable && code == "not_proposed",
                    "set data of {} answered {code}",
                    before.name(id)
                );
            }
        }
        self.log.push(format!("     on {}", before.name(id)));
        let after = snapshot(&self.pool).await?;
        ensure!(
            after.states() == before.states() && after.runs == before.runs,
            "setting data changed noderoles or runs"
        );
        Ok(after)
    }

    async fn retry(&mut self, k: usize, busy_parent: bool, before: &Snap) -> Result<Snap, String> {
        // among committed noderoles: retrying a PROPOSED one is always refused
        let mut candidates: Vec<i64> = before
            .nrs
            .iter()
            .filter(|(_, nr)| nr.state != Proposed)
            .map(|(id, _)| *id)
            .collect();
        let busy_parents: Vec<i64> = candidates
            .iter()
            .copied()
            .filter(|id| {
                before
                    .children_of(*id)
                    .any(|c| before.state(c) == Transition)
            })
            .collect();
        if busy_parent && !busy_parents.is_empty() {
            candidates = busy_parents;
        }
        let id = match candidates.get(k % candidates.len().max(1)) {
            Some(id) => *id,
            None => match before.pick(k) {
                Some(id) => id,
                None => return Ok(before.clone()),
            },
        };
        let state = before.state(id);
        let expected: Result<(), &str> = match state {
            Todo => Ok(()),
            Transition => Err("busy"),
            Proposed => Err("not_committed"),
            _ if !before.parents_active(id) => Err("parent_not_active"),
            _ => Ok(()),
        };
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        let result = node_roles::retry(&mut tx, id, &admin()).await;
        let got = match result {
            Ok(_) => {
                tx.commit().await.map_err(sql("commit"))?;
                Ok(())
            }
            Err(e) => Err(refusal("retry", e)?),
        };
        self.log
            .push(format!("     on {} ({state}): {got:?}", before.name(id)));
        ensure!(
            got == expected,
            "retry of {} in {state}: got {got:?}, want {expected:?}",
            before.name(id)
        );
        let after = snapshot(&self.pool).await?;
        if got.is_err() {
            ensure!(after == *before, "a refused retry changed something");
            return Ok(after);
        }
        ensure!(after.state(id) == Todo, "retried noderole is not TODO");
        let below = before.descendants(id, |_, _| true);
        for (other, nr) in &after.nrs {
            let old = before.state(*other);
            if *other == id || old == nr.state {
                continue;
            }
            ensure!(
                matches!(old, Todo | Error) && nr.state == Blocked && below.contains(other),
                "retry of {} moved {} from {old} to {}",
                before.name(id),
                after.name(*other),
                nr.state
            );
        }
        Ok(after)
    }

    async fn set_alive(&mut self, node: usize, alive: bool, before: &Snap) -> Result<Snap, String> {
        let node_id = before.node_id(node);
        let was = before.nodes[&node_id].alive;
        self.update_node(
            node,
            NodeUpdate {
                alive: Some(alive),
                ..Default::default()
            },
        )
        .await?;
        let after = snapshot(&self.pool).await?;
        if was == alive || alive {
            ensure!(
                after.states() == before.states() && after.runs == before.runs,
                "{} alive {was} -> {alive} changed noderoles or runs",
                NODES[node]
            );
            return Ok(after);
        }
        // death (§6)
        for (id, run) in &after.runs {
            ensure!(
                run.node != node_id || run.running,
                "a queued run {id} survived the death of its node"
            );
        }
        for (id, nr) in &after.nrs {
            let old = before.state(*id);
            if nr.node == node_id {
                let want = match old {
                    Proposed | Transition => old,
                    _ if after.parents_active(*id) => Todo,
                    _ => Blocked,
                };
                ensure!(
                    nr.state == want,
                    "death: {} went from {old} to {}, want {want}",
                    after.name(*id),
                    nr.state
                );
            } else {
                ensure!(
                    old == nr.state || (matches!(old, Todo | Error) && nr.state == Blocked),
                    "death of {} moved {} elsewhere from {old} to {}",
                    NODES[node],
                    after.name(*id),
                    nr.state
                );
            }
        }
        Ok(after)
    }

    async fn set_available(
        &mut self,
        node: usize,
        available: bool,
        before: &Snap,
    ) -> Result<Snap, String> {
        self.update_node(
            node,
            NodeUpdate {
                available: Some(available),
                ..Default::default()
            },
        )
        .await?;
        let after = snapshot(&self.pool).await?;
        ensure!(
            after.states() == before.states() && after.runs == before.runs,
            "availability changed noderoles or runs"
        );
        Ok(after)
    }

    async fn update_node(&mut self, node: usize, update: NodeUpdate) -> Result<(), String> {
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        nodes::update(&mut tx, &Key::from(NODES[node]), &update, &admin(), "test")
            .await
            .map_err(|e| format!("node update: {e:?}"))?;
        tx.commit().await.map_err(sql("commit"))
    }

    async fn lose_runs(&mut self, which: u8, before: &Snap) -> Result<Snap, String> {
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| which & (1 << (i % 8)) != 0);
        self.running = kept.into_iter().map(|(_, r)| r).collect();
        let lost: Vec<ClaimedRun> = lost.into_iter().map(|(_, r)| r).collect();
        let ids: Vec<i64> = lost.iter().map(|r| r.id).collect();
        sqlx::query("UPDATE runs SET heartbeat_at = now() - interval '1 hour' WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .map_err(sql("aging heartbeats"))?;
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        runs::recover(
            &mut tx,
            &runs::Recovery::heartbeat_only(std::time::Duration::from_secs(60)),
        )
        .await
        .map_err(sql("recover"))?;
        tx.commit().await.map_err(sql("commit"))?;
        let after = snapshot(&self.pool).await?;
        for run in &lost {
            let id = run.noderole_id;
            ensure!(
                !after.runs.contains_key(&run.id),
                "lost run {} is still there",
                run.id
            );
            let want = if after.parents_active(id) {
                Todo
            } else {
                Blocked
            };
            ensure!(
                after.state(id) == want,
                "lost run of {} left it {}, want {want}",
                after.name(id),
                after.state(id)
            );
            self.log.push(format!("     lost {}", after.name(id)));
        }
        for (id, nr) in &after.nrs {
            let old = before.state(*id);
            ensure!(
                old == nr.state || lost.iter().any(|r| r.noderole_id == *id),
                "losing runs moved {} from {old} to {}",
                after.name(*id),
                nr.state
            );
        }
        self.lost.extend(lost);
        Ok(after)
    }

    /// One annealer step: a pass, claims, completions, each checked against §5.
    async fn anneal(
        &mut self,
        claim: u8,
        complete: u8,
        fail: u8,
        stale: bool,
        before: &Snap,
    ) -> Result<Snap, String> {
        // The pass queues, per node with a free slot, the runnable noderole with the lowest
        // (cohort, id), and changes no state.
        let runnable = before.runnable();
        annealer::pass(&self.pool, &self.config, None)
            .await
            .map_err(sql("pass"))?;
        let queued = snapshot(&self.pool).await?;
        ensure!(queued.states() == before.states(), "a pass changed states");
        for (node, candidates) in &runnable {
            let first = candidates
                .iter()
                .min_by_key(|id| (before.nrs[id].cohort, **id))
                .copied();
            let on_node: Vec<&RunRow> = queued.runs.values().filter(|r| r.node == *node).collect();
            ensure!(
                on_node.len() == 1 && Some(on_node[0].noderole) == first,
                "the pass queued {:?} on node {node}, want {} first\n{}",
                on_node
                    .iter()
                    .map(|r| queued.name(r.noderole))
                    .collect::<Vec<_>>(),
                first.map_or("nothing".into(), |f| before.name(f)),
                before.describe()
            );
        }
        for (id, run) in &queued.runs {
            ensure!(
                before.runs.contains_key(id) || runnable.contains_key(&run.node),
                "the pass queued {} on a node with nothing runnable",
                queued.name(run.noderole)
            );
        }

        // Claims: only runnable noderoles, one per node, within the cap (§5).
        let claimed = runner::claim(&self.pool, WORKER, None, &self.config, claim as i64)
            .await
            .map_err(sql("claim"))?;
        let claimed_snap = snapshot(&self.pool).await?;
        let running_before = queued
            .runs
            .values()
            .filter(|r| r.running && r.lane == "normal")
            .count() as i64;
        let claimable: Vec<i64> = queued
            .runs
            .iter()
            .filter(|(_, r)| !r.running)
            .filter(|(_, r)| {
                let nr = &queued.nrs[&r.noderole];
                let node = &queued.nodes[&r.node];
                nr.state == Todo
                    && queued.committed[&nr.deployment]
                    && node.alive
                    && node.available
                    && !queued
                        .nrs
                        .values()
                        .any(|o| o.node == r.node && matches!(o.state, Transition | Error))
            })
            .map(|(id, _)| *id)
            .collect();
        let budget = (claim as i64).min(self.config.cap - running_before).max(0);
        ensure!(
            claimed.len() as i64 == budget.min(claimable.len() as i64),
            "claimed {} runs; budget {budget}, claimable {:?}",
            claimed.len(),
            claimable
        );
        let mut claimed_nodes = BTreeSet::new();
        for run in &claimed {
            ensure!(
                claimable.contains(&run.id),
                "claimed run {} of {}, which may not start\n{}",
                run.id,
                queued.name(run.noderole_id),
                queued.describe()
            );
            ensure!(
                claimed_nodes.insert(run.node_id),
                "two runs claimed on one node"
            );
            ensure!(
                !queued
                    .runs
                    .values()
                    .any(|r| r.node == run.node_id && r.running),
                "claimed a run on a node that is running one"
            );
            ensure!(
                claimed_snap.state(run.noderole_id) == Transition,
                "a claimed noderole is not in TRANSITION"
            );
            self.log
                .push(format!("     claimed {}", queued.name(run.noderole_id)));
        }
        self.running.extend(claimed);

        // Completions with the chosen outcomes (§5 outcome table).
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| complete & (1 << (i % 8)) != 0);
        self.running = kept.into_iter().map(|(_, r)| r).collect();
        let stale = stale && !self.lost.is_empty();
        if done.is_empty() && !stale {
            return Ok(claimed_snap);
        }
        let mut results = Vec::new();
        let mut failed = BTreeSet::new();
        let mut succeeded = BTreeSet::new();
        for (i, run) in &done {
            let fails = fail & (1 << (i % 8)) != 0;
            if fails {
                failed.insert(run.noderole_id);
            } else {
                succeeded.insert(run.noderole_id);
            }
            results.push(RunResult {
                run_id: run.id,
                outcome: if fails {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                },
                wall: Some(json!({"ran": run.id})),
                runlog: format!("run {}", run.id),
            });
        }
        if stale {
            results.extend(self.lost.iter().map(|run| RunResult {
                run_id: run.id,
                outcome: Outcome::Succeeded,
                wall: None,
                runlog: "late".into(),
            }));
        }
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        let completion = runs::complete(&mut tx, WORKER, &results, None)
            .await
            .map_err(sql("complete"))?;
        tx.commit().await.map_err(sql("commit"))?;
        let after = snapshot(&self.pool).await?;
        ensure!(
            completion.completed == done.len(),
            "completed {} of {} live runs (stale results must be ignored)",
            completion.completed,
            done.len()
        );
        let ripple: BTreeSet<i64> = failed
            .iter()
            .filter(|id| claimed_snap.nodes[&claimed_snap.nrs[*id].node].alive)
            .flat_map(|id| after.descendants(*id, |_, _| true))
            .collect();
        for (_, run) in &done {
            let id = run.noderole_id;
            let nr = &after.nrs[&id];
            let alive = claimed_snap.nodes[&nr.node].alive;
            let old_count = claimed_snap.nrs[&id].run_count;
            let outcome = if failed.contains(&id) {
                "failure"
            } else {
                "success"
            };
            self.log.push(format!(
                "     {outcome} of {}{}: {}",
                after.name(id),
                if alive { "" } else { " (dead node)" },
                nr.state
            ));
            let want = match (alive, failed.contains(&id)) {
                (false, _) if after.parents_active(id) => Todo,
                (false, _) => Blocked,
                _ if ripple.contains(&id) => Blocked,
                (true, false) => Active,
                // a parent went back to TODO or BLOCKED while it ran: it waits for it
                (true, true) if !after.parents_active(id) => Blocked,
                (true, true) => Error,
            };
            ensure!(
                nr.state == want,
                "{outcome} of {} left it {}, want {want}",
                after.name(id),
                nr.state
            );
            if alive && succeeded.contains(&id) {
                ensure!(nr.run_count == old_count + 1, "run_count did not count");
            }
        }
        // failure ripple: every descendant not PROPOSED or TRANSITION is BLOCKED
        for id in &ripple {
            let state = after.state(*id);
            ensure!(
                matches!(state, Blocked | Proposed | Transition),
                "{} is {state} though an ancestor just failed\n{}",
                after.name(*id),
                after.describe()
            );
        }
        for id in &failed {
            if after.state(*id) == Error {
                let in_flight = after
                    .descendants(*id, |_, _| true)
                    .into_iter()
                    .filter(|d| after.state(*d) == Transition)
                    .collect();
                self.episodes.insert(*id, in_flight);
            }
        }
        Ok(after)
    }

    /// Invariants that hold between any two steps.
    fn invariants(&mut self, s: &Snap) -> Result<(), String> {
        self.invariants_inner(s)
            .map_err(|e| format!("{e}\nstate:\n{}", s.describe()))
    }

    fn invariants_inner(&mut self, s: &Snap) -> Result<(), String> {
        // Runs: one per node, one per noderole, within the caps; a running run is exactly a
        // TRANSITION noderole; a queued run waits for a TODO noderole.
        let mut per_node: BTreeMap<i64, usize> = BTreeMap::new();
        let mut per_noderole: BTreeMap<i64, usize> = BTreeMap::new();
        for run in s.runs.values() {
            *per_node.entry(run.node).or_default() += 1;
            *per_noderole.entry(run.noderole).or_default() += 1;
            let state = s.state(run.noderole);
            ensure!(
                s.nrs[&run.noderole].node == run.node,
                "a run's node is not its noderole's"
            );
            if run.running {
                ensure!(
                    state == Transition,
                    "{} has a running run but is {state}",
                    s.name(run.noderole)
                );
            } else {
                ensure!(
                    state == Todo,
                    "{} has a queued run but is {state}",
                    s.name(run.noderole)
                );
            }
        }
        ensure!(
            per_node.values().all(|n| *n <= 1),
            "a node has more than one run"
        );
        ensure!(
            per_noderole.values().all(|n| *n <= 1),
            "a noderole has more than one run"
        );
        let running_normal = s
            .runs
            .values()
            .filter(|r| r.running && r.lane == "normal")
            .count() as i64;
        ensure!(
            running_normal <= self.config.cap,
            "{running_normal} runs execute, over the cap"
        );
        for (id, nr) in &s.nrs {
            let node = &s.nodes[&nr.node];
            match nr.state {
                Transition => ensure!(
                    s.runs
                        .values()
                        .filter(|r| r.noderole == *id && r.running)
                        .count()
                        == 1,
                    "{} is in TRANSITION without exactly one running run",
                    s.name(*id)
                ),
                // TODO means every parent is ACTIVE (§2)
                Todo => {
                    for p in s.parents_of(*id) {
                        ensure!(
                            s.state(p) == Active,
                            "{} is TODO but its parent {} is {}",
                            s.name(*id),
                            s.name(p),
                            s.state(p)
                        );
                    }
                }
                // a BLOCKED noderole waits for some parent; else a trigger was lost
                Blocked => ensure!(
                    !s.parents_active(*id),
                    "{} is BLOCKED but every parent is ACTIVE (a lost trigger)",
                    s.name(*id)
                ),
                Error => ensure!(node.alive, "{} is ERROR on a dead node", s.name(*id)),
                Proposed => ensure!(
                    nr.run_count == 0 && !s.runs.values().any(|r| r.noderole == *id),
                    "{} is PROPOSED but has run",
                    s.name(*id)
                ),
                Active => {}
            }
            // cohort = 1 + max(parent cohorts), 0 without parents (§3.5)
            let want = s
                .parents_of(*id)
                .map(|p| s.nrs[&p].cohort + 1)
                .max()
                .unwrap_or(0);
            ensure!(
                nr.cohort == want,
                "{} has cohort {}, want {want}",
                s.name(*id),
                nr.cohort
            );
        }
        // a node is frozen by one ERROR or busy with one TRANSITION, never more
        for node in s.nodes.keys() {
            let hot: Vec<i64> = s
                .nrs
                .iter()
                .filter(|(_, nr)| nr.node == *node && matches!(nr.state, Transition | Error))
                .map(|(id, _)| *id)
                .collect();
            ensure!(
                hot.len() <= 1,
                "node {node} has several noderoles in TRANSITION or ERROR: {:?}",
                hot.iter().map(|h| s.name(*h)).collect::<Vec<_>>()
            );
            if !s.nodes[node].alive {
                ensure!(
                    !s.runs.values().any(|r| r.node == *node && !r.running),
                    "a dead node has a queued run"
                );
            }
        }
        self.check_structure(s)?;
        self.check_error_episodes(s)
    }

    /// Every noderole has a parent for every role its role requires; implicit parents share
    /// its node; it has no other parents; a cluster parent comes with all its peers (§3).
    fn check_structure(&self, s: &Snap) -> Result<(), String> {
        for (id, nr) in &s.nrs {
            let def = &self.roles[nr.role];
            let parents: Vec<&Nr> = s.parents_of(*id).map(|p| &s.nrs[&p]).collect();
            for p in &parents {
                ensure!(
                    def.requires.contains(&p.role),
                    "{} has a parent of r{}, which it does not require",
                    s.name(*id),
                    p.role
                );
            }
            for wanted in &def.requires {
                let filling: Vec<&&Nr> = parents.iter().filter(|p| p.role == *wanted).collect();
                ensure!(
                    !filling.is_empty(),
                    "{} requires r{wanted} but has no such parent",
                    s.name(*id)
                );
                if self.roles[*wanted].implicit {
                    ensure!(
                        filling.iter().any(|p| p.node == nr.node),
                        "{}'s implicit parent r{wanted} is not on its node",
                        s.name(*id)
                    );
                }
            }
            for p in s.parents_of(*id) {
                let parent = &s.nrs[&p];
                if !self.roles[parent.role].cluster {
                    continue;
                }
                for (peer, other) in &s.nrs {
                    if other.role == parent.role && other.deployment == parent.deployment {
                        ensure!(
                            s.parents_of(*id).any(|q| q == *peer),
                            "{} has cluster parent {} but not its peer {}",
                            s.name(*id),
                            s.name(p),
                            s.name(*peer)
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The failure ripple holds for as long as the ERROR does (§5): what was below the failed
    /// noderole when it failed stays BLOCKED (or PROPOSED) unless it descends through a
    /// noderole that was already running then (which may finish, §5 outcome table). Edges a
    /// new cluster peer adds to existing children (parent id > child id) leave those
    /// children as they were, so they are not followed.
    fn check_error_episodes(&mut self, s: &Snap) -> Result<(), String> {
        self.episodes
            .retain(|id, _| s.nrs.get(id).is_some_and(|nr| nr.state == Error));
        for (id, nr) in &s.nrs {
            if nr.state != Error {
                continue;
            }
            let Some(in_flight) = self.episodes.get(id) else {
                return Err(format!("{} is ERROR without a failed run", s.name(*id)));
            };
            let held = s.descendants(*id, |p, c| p < c && !in_flight.contains(&c));
            for d in held {
                let state = s.state(d);
                ensure!(
                    matches!(state, Blocked | Proposed),
                    "{} is {state}, below {} which is ERROR",
                    s.name(d),
                    s.name(*id)
                );
            }
        }
        Ok(())
    }

    /// Brings every node up, finishes held runs, commits everything and retries errors:
    /// the annealer must then converge with every noderole ACTIVE (§5 status `finished`).
    async fn heal_and_converge(&mut self) -> Result<(), String> {
        self.log
            .push("heal: finish held runs, nodes up, commit all".into());
        let results: Vec<RunResult> = self
            .running
            .drain(..)
            .map(|run| RunResult {
                run_id: run.id,
                outcome: Outcome::Succeeded,
                wall: None,
                runlog: String::new(),
            })
            .collect();
        let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
        runs::complete(&mut tx, WORKER, &results, None)
            .await
            .map_err(sql("complete"))?;
        tx.commit().await.map_err(sql("commit"))?;
        for node in 0..NODES.len() {
            self.update_node(
                node,
                NodeUpdate {
                    alive: Some(true),
                    available: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        }
        for deployment in DEPLOYMENTS {
            let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
            deployments::commit(&mut tx, &Key::from(deployment), &admin())
                .await
                .map_err(|e| format!("commit: {e:?}"))?;
            tx.commit().await.map_err(sql("commit"))?;
        }
        let jigs = JigRegistry::builtin();
        for round in 0..8 {
            annealer::run_until_idle(&self.pool, &self.config, &jigs, WORKER)
                .await
                .map_err(sql("run_until_idle"))?;
            let s = snapshot(&self.pool).await?;
            self.invariants(&s)?;
            let errors: Vec<i64> = s
                .nrs
                .iter()
                .filter(|(_, nr)| nr.state == Error)
                .map(|(id, _)| *id)
                .collect();
            if errors.is_empty() {
                break;
            }
            self.log.push(format!(
                "heal round {round}: retry {:?}",
                errors.iter().map(|e| s.name(*e)).collect::<Vec<_>>()
            ));
            for id in errors {
                let mut tx = self.pool.begin().await.map_err(sql("begin"))?;
                match node_roles::retry(&mut tx, id, &admin()).await {
                    Ok(_) => tx.commit().await.map_err(sql("commit"))?,
                    Err(e) => {
                        refusal("retry", e)?;
                    }
                }
            }
        }
        let s = snapshot(&self.pool).await?;
        let stuck: Vec<String> = s
            .nrs
            .iter()
            .filter(|(_, nr)| nr.state != Active)
            .map(|(id, nr)| format!("{} {}", s.name(*id), nr.state))
            .collect();
        ensure!(
            stuck.is_empty(),
            "after healing, not everything converged: {stuck:?}\n{}",
            s.describe()
        );
        let status = db::anneal::status(&self.pool, None)
            .await
            .map_err(sql("status"))?;
        ensure!(
            status.status == "finished",
            "status is {} after converging",
            status.status
        );
        Ok(())
    }
}

async fn run_case(pool: &PgPool, case: Case) -> Result<(), String> {
    let mut machine = Machine::new(pool, case.roles.clone()).await?;
    let result = machine.run(&case.ops).await;
    result.map_err(|e| format!("{e}\nsteps:\n{}", machine.log.join("\n")))
}

/// Binds, commits everything, and anneals with the real `test` jig and no failures: every
/// noderole ends ACTIVE, parents ran before children, and the status is `finished`.
async fn converge_case(
    pool: &PgPool,
    (roles, binds): (Vec<RoleDef>, Vec<(u8, usize, usize)>),
) -> Result<(), String> {
    let mut machine = Machine::new(pool, roles).await?;
    let result = async {
        for (role, node, deployment) in binds {
            let role = role as usize % machine.roles.len();
            let before = snapshot(&machine.pool).await?;
            machine.bind(role, node, deployment, &before).await?;
        }
        for deployment in 0..DEPLOYMENTS.len() {
            let before = snapshot(&machine.pool).await?;
            machine.commit(deployment, &before).await?;
        }
        let jigs = JigRegistry::builtin();
        annealer::run_until_idle(&machine.pool, &machine.config, &jigs, WORKER)
            .await
            .map_err(sql("run_until_idle"))?;
        let s = snapshot(&machine.pool).await?;
        machine.invariants(&s)?;
        let stuck: Vec<String> = s
            .nrs
            .iter()
            .filter(|(_, nr)| nr.state != Active)
            .map(|(id, nr)| format!("{} {}", s.name(*id), nr.state))
            .collect();
        ensure!(stuck.is_empty(), "did not converge: {stuck:?}");
        let status = db::anneal::status(&machine.pool, None)
            .await
            .map_err(sql("status"))?;
        ensure!(status.status == "finished", "status {}", status.status);
        // dependency order: a child's first run was queued after its parent's first success
        let first_runs: HashMap<i64, (i64, String)> = sqlx::query_as::<_, (i64, i64, String)>(
            "SELECT DISTINCT ON (noderole_id) noderole_id, id, outcome FROM run_records
              ORDER BY noderole_id, id",
        )
        .fetch_all(&machine.pool)
        .await
        .map_err(sql("run records"))?
        .into_iter()
        .map(|(nr, id, outcome)| (nr, (id, outcome)))
        .collect();
        for (id, nr) in &s.nrs {
            let (run, outcome) = first_runs
                .get(id)
                .ok_or(format!("{} never ran", s.name(*id)))?;
            ensure!(outcome == "succeeded", "a first run {outcome}");
            ensure!(
                nr.run_count == 1,
                "{} ran {} times",
                s.name(*id),
                nr.run_count
            );
            for p in s.parents_of(*id) {
                ensure!(
                    first_runs[&p].0 < *run,
                    "{} ran before its parent {}",
                    s.name(*id),
                    s.name(p)
                );
            }
        }
        Ok(())
    }
    .await;
    result.map_err(|e| format!("{e}\nsteps:\n{}", machine.log.join("\n")))
}

/// Runs a property over `cases` cases in one database that each case resets; a failure
/// panics with the minimal input (its Debug output) and the log of what each step did.
fn check<S, F>(cases: u32, strategy: S, test: impl Fn(PgPool, S::Value) -> F)
where
    S: Strategy,
    F: std::future::Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let db = runtime.block_on(test_db());
    let config = ProptestConfig {
        // PROPTEST_CASES runs more (or fewer) cases for a deeper search
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        max_shrink_iters: 2000,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let result = TestRunner::new(config).run(&strategy, |value| {
        runtime
            .block_on(test(db.pool.clone(), value))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            panic!("{reason}\nminimal failing input: {input:?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

#[test]
fn the_annealer_keeps_its_invariants_under_random_operations() {
    check(24, cases(20..40), |pool, case| async move {
        run_case(&pool, case).await
    });
}

#[test]
fn committed_graphs_converge_in_dependency_order() {
    let binds = prop::collection::vec((any::<u8>(), 0..NODES.len(), 0..DEPLOYMENTS.len()), 1..8);
    check(12, (role_defs(), binds), |pool, case| async move {
        converge_case(&pool, case).await
    });
}
