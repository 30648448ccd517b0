//! The annealer's contract (SEMANTICS.md §3–5) against real PostgreSQL: binding, commit,
//! every row of the outcome table, the ripples, retry, death, availability and recovery.

use crowbar::{
    db::{self, keys::Key},
    domain::state::NodeRoleState::{self, *},
};
use serde_json::json;

use crate::support::{db::test_db, world::*};

/// `role` bound to an alive node `n1` in deployment `web`, committed.
async fn one_node_committed(pool: &sqlx::PgPool, role: &str) {
    node(pool, "n1", true).await;
    deployment(pool, "web").await;
    bind(pool, "n1", role, "web").await;
    commit(pool, "web").await;
}

async fn setup() -> sqlx::PgPool {
    let db = test_db().await;
    load_barclamps(&db.pool).await;
    db.pool
}

#[tokio::test]
async fn binding_creates_parents_proposed_with_cohorts() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    let bound = bind(&pool, "n1", "test-client-client", "web").await;
    let created: Vec<(&str, i32)> = bound
        .created
        .iter()
        .map(|nr| (nr.role.as_str(), nr.cohort))
        .collect();
    assert_eq!(
        created,
        vec![
            ("test-admin", 0),
            ("test-server", 1),
            ("test-library", 0),
            ("test-client", 2)
        ]
    );
    assert_eq!(bound.noderole.cohort, 3);
    assert!(states(&pool).await.iter().all(|s| s.2 == Proposed));
}

#[tokio::test]
async fn refused_bindings_leave_no_rows() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await
        .unwrap();
    let err = try_bind(&pool, "n1", "test-admin", "web", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already bound"), "{err}");
    sqlx::query("UPDATE jigs SET active = false WHERE name = 'test'")
        .execute(&pool)
        .await
        .unwrap();
    let err = try_bind(&pool, "n1", "test-client", "web", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("inactive"), "{err}");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn commit_then_anneal_converges_in_dependency_order() {
    let pool = setup().await;
    for n in ["n1", "n2", "n3"] {
        node(&pool, n, true).await;
    }
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-client", "web").await;
    bind(&pool, "n3", "test-client-client", "web").await;
    let out = commit(&pool, "web").await;
    assert!(out.recorded);
    assert_eq!(out.snapshot.as_ref().unwrap().seq, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    assert_eq!(state(&pool, "n2", "test-library").await, Todo);

    drive(&pool).await;
    assert!(
        states(&pool).await.iter().all(|s| s.2 == Active),
        "{:?}",
        states(&pool).await
    );
    let history = run_history(&pool).await;
    let position = |node: &str, role: &str| {
        history
            .iter()
            .position(|h| h.0 == node && h.1 == role)
            .unwrap()
    };
    assert!(position("n1", "test-admin") < position("n1", "test-server"));
    assert!(position("n1", "test-server") < position("n2", "test-client"));
    assert!(position("n2", "test-library") < position("n2", "test-client"));
    assert!(position("n2", "test-client") < position("n3", "test-client-client"));
    let status = db::anneal::status(&pool, None).await.unwrap();
    assert_eq!(status.status, "finished");
    // the wall came back and run_count counts
    let id = id_of(&pool, "n2", "test-client").await;
    let mut conn = pool.acquire().await.unwrap();
    let detail = db::node_roles::detail(&mut conn, id).await.unwrap();
    assert_eq!(
        detail.wall,
        json!({"test": {"ran": true, "node": "n2", "role": "test-client"}})
    );
    assert_eq!(detail.noderole.run_count, 1);
}

#[tokio::test]
async fn nothing_runs_while_the_deployment_is_proposed() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    assert_eq!(drive(&pool).await, 0);
    let reasons = reasons_of(&pool, "n1", "test-admin").await;
    assert_eq!(reasons["code"], "deployment_proposed");
}

async fn reasons_of(pool: &sqlx::PgPool, node: &str, role: &str) -> serde_json::Value {
    let id = id_of(pool, node, role).await;
    db::explain::reasons(pool, &[id], 10)
        .await
        .unwrap()
        .remove(&id)
        .unwrap_or(json!(null))
}

#[tokio::test]
async fn failure_blocks_descendants_freezes_the_node_and_retry_recovers() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    // server fails on n1 (bound with fail data); the client on n2 depends on it
    try_bind(
        &pool,
        "n1",
        "test-server",
        "web",
        Some(&json!({"test": {"fail": true}})),
    )
    .await
    .unwrap();
    bind(&pool, "n2", "test-client-client", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;

    assert_eq!(state(&pool, "n1", "test-admin").await, Active);
    assert_eq!(state(&pool, "n1", "test-server").await, Error);
    assert_eq!(state(&pool, "n2", "test-client").await, Blocked);
    assert_eq!(state(&pool, "n2", "test-client-client").await, Blocked);
    let status = db::anneal::status(&pool, None).await.unwrap();
    assert_eq!(status.status, "failed");
    let reason = reasons_of(&pool, "n1", "test-server").await;
    assert_eq!(reason["code"], "failed");
    assert!(
        reason["message"]
            .as_str()
            .unwrap()
            .contains("failed as asked")
    );
    let reason = reasons_of(&pool, "n2", "test-client").await;
    assert_eq!(reason["code"], "waiting_on_parent");
    assert_eq!(reason["parent"]["role"], "test-server");

    // retry of a child whose parent is not ACTIVE is a conflict, not a crash
    let err = retry(&pool, "n2", "test-client").await.unwrap_err();
    assert!(err.to_string().contains("test-server"), "{err}");

    // fix the data (propose, edit, commit), retry: everything converges
    let mut tx = pool.begin().await.unwrap();
    db::deployments::propose(&mut tx, &Key::from("web"), &admin())
        .await
        .unwrap();
    let server = id_of(&pool, "n1", "test-server").await;
    db::node_roles::set_data(&mut tx, server, &json!({"test": {"fail": false}}), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    commit(&pool, "web").await;
    retry(&pool, "n1", "test-server").await.ok();
    drive(&pool).await;
    assert!(
        states(&pool).await.iter().all(|s| s.2 == Active),
        "{:?}",
        states(&pool).await
    );
}

#[tokio::test]
async fn an_error_freezes_its_node_until_retried() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-fails", "web").await; // cohort 0, lowest id: runs first
    bind(&pool, "n1", "test-admin", "web").await;
    commit(&pool, "web").await;
    assert_eq!(drive(&pool).await, 1);
    assert_eq!(state(&pool, "n1", "test-fails").await, Error);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    let reason = reasons_of(&pool, "n1", "test-admin").await;
    assert_eq!(reason["code"], "node_frozen");
    assert_eq!(reason["noderole"]["role"], "test-fails");
    assert_eq!(drive(&pool).await, 0, "nothing runs on a frozen node");
    // retrying re-runs the failing role (it fails again, by design of test-fails)
    retry(&pool, "n1", "test-fails").await.unwrap();
    assert_eq!(drive(&pool).await, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    let outcomes: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(outcomes, vec!["failed", "failed"]);
}

/// The reasons that depend on the queue: a queued run, a run waiting for the cap, a node
/// busy with another noderole's run, a running run.
#[tokio::test]
async fn reasons_follow_the_queue() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    bind(&pool, "n1", "test-library", "web").await;
    bind(&pool, "n2", "test-admin", "web").await;
    commit(&pool, "web").await;
    let config = queue_config(1);
    let (_, queued) = crowbar::annealer::pass(&pool, &config, None).await.unwrap();
    assert_eq!(queued, 2, "one run per node");
    // n1's first role is queued; its other role waits for the node
    let (first, second) = (
        id_of(&pool, "n1", "test-admin").await,
        id_of(&pool, "n1", "test-library").await,
    );
    let reasons = db::explain::reasons(&pool, &[first, second], 1)
        .await
        .unwrap();
    assert_eq!(reasons[&first]["code"], "queued", "{reasons:?}");
    assert_eq!(reasons[&second]["code"], "node_busy", "{reasons:?}");
    assert_eq!(reasons[&second]["noderole"]["role"], "test-admin");

    // one run starts: the cap of 1 is reached for the other node's queued run
    let mut conn = pool.acquire().await.unwrap();
    let claimed = db::runs::claim(&mut conn, "test-worker", None, &config, 1)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(claimed.len(), 1);
    let ids = [first, id_of(&pool, "n2", "test-admin").await];
    let reasons = db::explain::reasons(&pool, &ids, 1).await.unwrap();
    let codes: Vec<&str> = ids
        .iter()
        .map(|id| reasons[id]["code"].as_str().unwrap())
        .collect();
    let (running, waiting) = if codes[0] == "running" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(codes[running], "running", "{reasons:?}");
    assert_eq!(codes[waiting], "cap_reached", "{reasons:?}");
    assert_eq!(reasons[&ids[waiting]]["running"], 1);
    assert_eq!(reasons[&ids[waiting]]["cap"], 1);
}

#[tokio::test]
async fn node_death_resets_its_noderoles_and_revival_reconverges() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-client", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));

    set_alive(&pool, "n1", false).await;
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    // ACTIVE children on other nodes stay ACTIVE
    assert_eq!(state(&pool, "n2", "test-client").await, Active);
    assert_eq!(
        reasons_of(&pool, "n1", "test-admin").await["code"],
        "node_dead"
    );
    assert_eq!(drive(&pool).await, 0, "nothing runs on a dead node");
    assert_eq!(
        db::anneal::status(&pool, None).await.unwrap().status,
        "scheduled"
    );

    set_alive(&pool, "n1", true).await;
    assert_eq!(drive(&pool).await, 2);
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
}

#[tokio::test]
async fn unavailable_nodes_run_nothing_and_keep_their_states() {
    let pool = setup().await;
    one_node_committed(&pool, "test-server").await;
    set_available(&pool, "n1", false).await;
    let before = states(&pool).await;
    assert_eq!(drive(&pool).await, 0);
    assert_eq!(states(&pool).await, before);
    assert_eq!(
        reasons_of(&pool, "n1", "test-admin").await["code"],
        "node_unavailable"
    );
    set_available(&pool, "n1", true).await;
    assert_eq!(drive(&pool).await, 2);
}

/// Claims the runnable run on `node` as worker "w" without completing it.
async fn start_one(pool: &sqlx::PgPool) -> Vec<db::runs::ClaimedRun> {
    let config = queue_config(10);
    crowbar::annealer::pass(pool, &config, None).await.unwrap();
    crowbar::runner::claim(pool, "w", None, &config, 10)
        .await
        .unwrap()
}

async fn finish(pool: &sqlx::PgPool, runs: &[db::runs::ClaimedRun], success: bool) {
    let results: Vec<_> = runs
        .iter()
        .map(|r| db::runs::RunResult {
            run_id: r.id,
            outcome: if success {
                db::runs::Outcome::Succeeded
            } else {
                db::runs::Outcome::Failed
            },
            wall: Some(json!({"done": true})),
            runlog: "log".into(),
        })
        .collect();
    crowbar::runner::complete(pool, "w", &results, None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn outcome_success_while_node_was_made_unavailable_is_active() {
    let pool = setup().await;
    one_node_committed(&pool, "test-admin").await;
    let runs = start_one(&pool).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Transition);
    set_available(&pool, "n1", false).await;
    finish(&pool, &runs, true).await;
    assert_eq!(state(&pool, "n1", "test-admin").await, Active);
}

#[tokio::test]
async fn outcome_success_after_node_died_goes_back_by_parent_state() {
    let pool = setup().await;
    one_node_committed(&pool, "test-admin").await;
    let runs = start_one(&pool).await;
    set_alive(&pool, "n1", false).await;
    finish(&pool, &runs, true).await;
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    // a failure on a dead node is the death's business, not an ERROR
    set_alive(&pool, "n1", true).await;
    let runs = start_one(&pool).await;
    set_alive(&pool, "n1", false).await;
    finish(&pool, &runs, false).await;
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
}

#[tokio::test]
async fn a_queued_noderole_that_gets_blocked_loses_its_run_and_frees_the_node() {
    let pool = setup().await;
    one_node_committed(&pool, "test-server").await;
    let admin_runs = start_one(&pool).await;
    finish(&pool, &admin_runs, true).await;
    // the server is queued, not started yet
    let config = queue_config(10);
    crowbar::annealer::pass(&pool, &config, None).await.unwrap();
    let queued = |pool: sqlx::PgPool| async move {
        db::runs::list(&pool, None, 10, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.role)
            .collect::<Vec<_>>()
    };
    assert_eq!(queued(pool.clone()).await, vec!["test-server"]);
    // retrying its parent blocks it (§5): its run could never start, so it goes at once
    retry(&pool, "n1", "test-admin").await.unwrap();
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    assert!(queued(pool.clone()).await.is_empty());
    // and the next pass (no sweep) can queue the parent on that node
    crowbar::annealer::pass(&pool, &config, None).await.unwrap();
    assert_eq!(queued(pool.clone()).await, vec!["test-admin"]);
    let dropped: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(dropped, vec!["succeeded", "dropped"]);
}

#[tokio::test]
async fn a_run_failing_after_its_parent_went_back_to_todo_waits_for_the_parent() {
    let pool = setup().await;
    one_node_committed(&pool, "test-server").await;
    let admin_runs = start_one(&pool).await;
    finish(&pool, &admin_runs, true).await;
    let server_runs = start_one(&pool).await;
    // the parent is retried while the child runs on the same node; then the child fails
    retry(&pool, "n1", "test-admin").await.unwrap();
    finish(&pool, &server_runs, false).await;
    // as if it had failed first and been blocked by the retry: it waits, the node is free
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    assert_eq!(
        reasons_of(&pool, "n1", "test-server").await["code"],
        "waiting_on_parent"
    );
    assert_eq!(drive(&pool).await, 2);
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
}

#[tokio::test]
async fn destructive_roles_skip_the_jig_after_their_first_run() {
    let pool = setup().await;
    one_node_committed(&pool, "test-destructive").await;
    drive(&pool).await;
    retry(&pool, "n1", "test-destructive").await.unwrap();
    drive(&pool).await;
    let outcomes: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(outcomes, vec!["succeeded", "skipped"]);
    let id = id_of(&pool, "n1", "test-destructive").await;
    let run_count: i32 = sqlx::query_scalar("SELECT run_count FROM noderoles WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(run_count, 2);
    assert_eq!(state(&pool, "n1", "test-destructive").await, Active);
}

#[tokio::test]
async fn lost_runs_are_recovered_never_stranded() {
    let pool = setup().await;
    one_node_committed(&pool, "test-admin").await;
    let runs = start_one(&pool).await;
    assert_eq!(runs.len(), 1);
    // the worker dies: its heartbeat stops
    sqlx::query("UPDATE runs SET heartbeat_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let repaired = db::runs::recover(
        &mut tx,
        &db::runs::Recovery::heartbeat_only(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(repaired, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    // the dead worker's late result changes nothing
    finish(&pool, &runs, true).await;
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(drive(&pool).await, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Active);
    let outcomes: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(outcomes, vec!["lost", "succeeded"]);
}

/// The sweep's window bounds its repairs: a queued run that can no longer start is dropped
/// and a BLOCKED noderole with every parent ACTIVE (a lost trigger) goes to TODO on the
/// window's nodes only; the rest wait for the window to reach them.
#[tokio::test]
async fn a_windowed_sweep_repairs_only_its_nodes() {
    let pool = setup().await;
    let n1 = node(&pool, "n1", true).await;
    let n2 = node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    bind(&pool, "n2", "test-admin", "web").await;
    commit(&pool, "web").await;
    crowbar::annealer::pass(&pool, &queue_config(10), None)
        .await
        .unwrap();
    let queued_on = |pool: sqlx::PgPool| async move {
        let nodes: Vec<i64> =
            sqlx::query_scalar("SELECT node_id FROM runs WHERE state = 'queued' ORDER BY node_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        nodes
    };
    assert_eq!(queued_on(pool.clone()).await, vec![n1, n2]);
    // both lose the change that should have followed: BLOCKED with no parent, run queued
    sqlx::query("UPDATE noderoles SET state = $1")
        .bind(Blocked.code())
        .execute(&pool)
        .await
        .unwrap();
    let sweep_window = |pool: sqlx::PgPool, node: i64| async move {
        let recovery = db::runs::Recovery::heartbeat_only(std::time::Duration::from_secs(60));
        let mut tx = pool.begin().await.unwrap();
        let repaired = db::runs::recover_on(&mut tx, &recovery, Some(&[node]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        repaired
    };
    assert_eq!(sweep_window(pool.clone(), n1).await, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(state(&pool, "n2", "test-admin").await, Blocked);
    assert_eq!(queued_on(pool.clone()).await, vec![n2]);
    // the window reaches n2
    assert_eq!(sweep_window(pool.clone(), n2).await, 1);
    assert_eq!(state(&pool, "n2", "test-admin").await, Todo);
    assert!(queued_on(pool.clone()).await.is_empty());
    let outcomes: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(outcomes, vec!["dropped", "dropped"]);
}

/// The extra recovery sweep is only due when a run's worker lease is gone: never while
/// nothing runs, nor for a run whose worker still holds its lease; for an orphan, once its
/// heartbeat is `orphaned_after` old.
#[tokio::test]
async fn orphaned_runs_are_due_only_when_their_lease_is_gone() {
    let pool = setup().await;
    let after = std::time::Duration::from_secs(3);
    assert_eq!(db::runs::orphan_due(&pool, after).await.unwrap(), None);
    one_node_committed(&pool, "test-admin").await;
    let lease = db::runs::WorkerLease::take(&pool, None).await.unwrap();
    let config = queue_config(10);
    crowbar::annealer::pass(&pool, &config, None).await.unwrap();
    let runs = crowbar::runner::claim(&pool, "w", Some(lease.key()), &config, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(db::runs::orphan_due(&pool, after).await.unwrap(), None);
    // the worker's session ends, and no other worker holds a lease: what a new primary
    // looks like right after a failover, before the live workers took their leases back.
    // Nothing is due then.
    drop(lease);
    crate::support::site::wait_for(
        std::time::Duration::from_secs(10),
        "the lease's session to end",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                  WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND d.datname = current_database()",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 0
        },
    )
    .await;
    assert_eq!(db::runs::orphan_due(&pool, after).await.unwrap(), None);
    // another worker's lease, once `after` old, shows the leases have settled: the run is due
    let _other = db::runs::WorkerLease::take(&pool, None).await.unwrap();
    crate::support::site::wait_for(
        std::time::Duration::from_secs(10),
        "the leases to settle",
        || async { db::runs::orphan_due(&pool, after).await.unwrap().is_some() },
    )
    .await;
    let due = db::runs::orphan_due(&pool, after).await.unwrap().unwrap();
    assert!(due <= after, "due in {due:?}");
}

/// A pass reads what changed from the event log: the nodes named since its last reading,
/// not those of runs starting and finishing (a completion queues what it unblocked itself).
#[tokio::test]
async fn the_event_log_names_the_nodes_changed_since_a_pass() {
    let pool = setup().await;
    let n1 = node(&pool, "n1", true).await;
    let mut conn = pool.acquire().await.unwrap();
    let first = db::events::changes_since(&mut conn, 0).await.unwrap();
    assert!(first.nodes.contains(&n1), "{first:?}");
    let mut seq = first.seq;
    // numbered or not, each change is read; and read again only while not numbered
    db::events::sequence_pending(&pool, 1000).await.unwrap();
    seq = db::events::changes_since(&mut conn, seq)
        .await
        .unwrap()
        .seq
        .max(seq);
    assert_eq!(
        db::events::changes_since(&mut conn, seq)
            .await
            .unwrap()
            .nodes,
        Vec::<i64>::new()
    );
    let n2 = node(&pool, "n2", true).await;
    let changes = db::events::changes_since(&mut conn, seq).await.unwrap();
    assert_eq!(changes.nodes, vec![n2]);
    assert!(!changes.jigs_changed);
    db::events::sequence_pending(&pool, 1000).await.unwrap();
    seq = db::events::changes_since(&mut conn, seq).await.unwrap().seq;
    // a run started and finished by a worker is not news for the annealer
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    commit(&pool, "web").await;
    db::events::sequence_pending(&pool, 1000).await.unwrap();
    seq = db::events::changes_since(&mut conn, seq).await.unwrap().seq;
    let runs = start_one(&pool).await;
    finish(&pool, &runs, true).await;
    db::events::sequence_pending(&pool, 1000).await.unwrap();
    let changes = db::events::changes_since(&mut conn, seq).await.unwrap();
    assert_eq!(changes.nodes, Vec::<i64>::new());
    seq = changes.seq;
    // a change of a jig may make any node runnable: read as such, numbered or not
    let mut tx = pool.begin().await.unwrap();
    db::roles::update_jig(
        &mut tx,
        &Key::from("test"),
        &db::roles::JigUpdate {
            active: Some(false),
            description: None,
        },
        &admin(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        db::events::changes_since(&mut conn, seq)
            .await
            .unwrap()
            .jigs_changed
    );
    db::events::sequence_pending(&pool, 1000).await.unwrap();
    let changes = db::events::changes_since(&mut conn, seq).await.unwrap();
    assert!(changes.jigs_changed);
    assert!(
        !db::events::changes_since(&mut conn, changes.seq)
            .await
            .unwrap()
            .jigs_changed
    );
}

#[tokio::test]
async fn the_database_refuses_a_second_run_on_a_node() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    let admin_nr = id_of(&pool, "n1", "test-admin").await;
    let server_nr = id_of(&pool, "n1", "test-server").await;
    let insert = "INSERT INTO runs (noderole_id, node_id, input, input_hash, timeout_secs)
                  SELECT id, node_id, '{}', 'h', 10 FROM noderoles WHERE id = $1";
    sqlx::query(insert)
        .bind(admin_nr)
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query(insert)
        .bind(server_nr)
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("runs_one_per_node")
    );
}

#[tokio::test]
async fn retry_blocks_waiting_children_and_they_rerun_after() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-client-client", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;
    retry(&pool, "n1", "test-server").await.unwrap();
    assert_eq!(state(&pool, "n1", "test-server").await, Todo);
    // ACTIVE children stay ACTIVE
    assert_eq!(state(&pool, "n2", "test-client").await, Active);
    drive(&pool).await;
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
}

#[tokio::test]
async fn cluster_peers_are_all_parents_and_late_peers_adopt_children() {
    let pool = setup().await;
    sqlx::raw_sql(
        "INSERT INTO roles (name, barclamp_id, jig_id, requires)
         SELECT 'test-cluster-user', b.id, j.id, '{test-cluster}'
           FROM barclamps b, jigs j WHERE b.name = 'test' AND j.name = 'test'",
    )
    .execute(&pool)
    .await
    .unwrap();
    for n in ["n1", "n2", "n3", "n4"] {
        node(&pool, n, true).await;
    }
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-cluster", "web").await;
    bind(&pool, "n2", "test-cluster", "web").await;
    let user = bind(&pool, "n3", "test-cluster-user", "web")
        .await
        .noderole
        .id;
    let late = bind(&pool, "n4", "test-cluster", "web").await.noderole.id;
    let mut conn = pool.acquire().await.unwrap();
    let detail = db::node_roles::detail(&mut conn, user).await.unwrap();
    assert_eq!(detail.parents.len(), 3);
    assert!(detail.parents.contains(&late));
}

#[tokio::test]
async fn a_waiting_child_adopted_by_a_new_cluster_peer_waits_for_it() {
    let pool = setup().await;
    sqlx::raw_sql(
        "INSERT INTO roles (name, barclamp_id, jig_id, requires)
         VALUES ('test-cluster-user', 1, 1, '{test-cluster}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for n in ["n1", "n2", "n3"] {
        node(&pool, n, true).await;
    }
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-cluster", "web").await;
    bind(&pool, "n2", "test-cluster-user", "web").await;
    commit(&pool, "web").await;
    let runs = start_one(&pool).await;
    finish(&pool, &runs, true).await;
    assert_eq!(state(&pool, "n2", "test-cluster-user").await, Todo);
    // a new peer (PROPOSED) becomes its parent: it must not run before that peer
    bind(&pool, "n3", "test-cluster", "web").await;
    assert_eq!(state(&pool, "n2", "test-cluster-user").await, Blocked);
    commit(&pool, "web").await;
    drive(&pool).await;
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
    let history = run_history(&pool).await;
    let position = |node: &str, role: &str| {
        history
            .iter()
            .position(|h| h.0 == node && h.1 == role)
            .unwrap()
    };
    assert!(position("n3", "test-cluster") < position("n2", "test-cluster-user"));
}

#[tokio::test]
async fn a_cluster_parent_found_on_the_node_in_another_deployment_brings_its_peers() {
    let pool = setup().await;
    sqlx::raw_sql(
        "INSERT INTO roles (name, barclamp_id, jig_id, requires)
         VALUES ('test-cluster-user', 1, 1, '{test-cluster}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for n in ["n1", "n2"] {
        node(&pool, n, true).await;
    }
    deployment(&pool, "web").await;
    deployment(&pool, "db").await;
    let first = bind(&pool, "n1", "test-cluster", "db").await.noderole.id;
    let second = bind(&pool, "n2", "test-cluster", "db").await.noderole.id;
    // `db` is not up `web`'s tree, but the cluster noderole on n1 is taken: with its peers
    let user = bind(&pool, "n1", "test-cluster-user", "web")
        .await
        .noderole
        .id;
    let mut conn = pool.acquire().await.unwrap();
    let detail = db::node_roles::detail(&mut conn, user).await.unwrap();
    assert_eq!(detail.parents, vec![first, second]);
}

#[tokio::test]
async fn identical_commits_record_no_new_snapshot() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    let first = commit(&pool, "web").await;
    let again = commit(&pool, "web").await;
    assert!(first.recorded && !again.recorded);
    assert_eq!(again.snapshot.unwrap().seq, 1);
    // snapshots cannot be edited
    let err = sqlx::query("UPDATE snapshots SET committed_by = 'mallory'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"));
}

/// The schema accepts exactly the state codes the model knows.
#[tokio::test]
async fn the_schema_accepts_exactly_the_known_state_codes() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    let id = bind(&pool, "n1", "test-admin", "web").await.noderole.id;
    for code in -2i16..=5 {
        let stored = sqlx::query("UPDATE noderoles SET state = $2 WHERE id = $1")
            .bind(id)
            .bind(code)
            .execute(&pool)
            .await
            .is_ok();
        assert_eq!(
            stored,
            NodeRoleState::from_code(code).is_some(),
            "state code {code}"
        );
    }
}

#[tokio::test]
async fn changed_wanted_attribs_poke_their_consumers_unchanged_ones_do_not() {
    let pool = setup().await;
    crowbar::barclamps::import_document(
        &pool,
        "poketest.yml",
        "barclamp: {name: poketest, parent: test}
roles:
  - name: poke-source
    jig: test
    attribs: [{name: poke-value, map: poke/value, default: 0}]
  - name: poke-sink
    jig: test
    wants-attribs: [poke-value]
",
    )
    .await
    .unwrap();
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    try_bind(
        &pool,
        "n1",
        "poke-source",
        "web",
        Some(&json!({"poke": {"value": 1}})),
    )
    .await
    .unwrap();
    bind(&pool, "n2", "poke-sink", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;
    let sink_runs =
        |h: &[(String, String, String)]| h.iter().filter(|r| r.1 == "poke-sink").count();
    assert_eq!(sink_runs(&run_history(&pool).await), 1);

    // a changed value re-runs the source (its data changed) and then pokes the sink
    let mut tx = pool.begin().await.unwrap();
    db::deployments::propose(&mut tx, &Key::from("web"), &admin())
        .await
        .unwrap();
    let source = id_of(&pool, "n1", "poke-source").await;
    db::node_roles::set_data(&mut tx, source, &json!({"poke": {"value": 2}}), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    commit(&pool, "web").await;
    drive(&pool).await;
    assert_eq!(sink_runs(&run_history(&pool).await), 2);

    // the source runs again with the same value: the sink is left alone
    retry(&pool, "n1", "poke-source").await.unwrap();
    drive(&pool).await;
    let history = run_history(&pool).await;
    assert_eq!(history.iter().filter(|r| r.1 == "poke-source").count(), 3);
    assert_eq!(sink_runs(&history), 2);
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
}

#[tokio::test]
async fn a_run_past_its_role_timeout_fails() {
    let pool = setup().await;
    sqlx::query("UPDATE roles SET timeout_secs = 1 WHERE name = 'test-slow'")
        .execute(&pool)
        .await
        .unwrap();
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    try_bind(
        &pool,
        "n1",
        "test-slow",
        "web",
        Some(&json!({"test": {"delay": 30}})),
    )
    .await
    .unwrap();
    commit(&pool, "web").await;
    let started = std::time::Instant::now();
    drive(&pool).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "the jig was cut short"
    );
    assert_eq!(state(&pool, "n1", "test-slow").await, Error);
    let outcomes: Vec<String> = run_history(&pool).await.into_iter().map(|h| h.2).collect();
    assert_eq!(outcomes, vec!["timed_out"]);
    assert!(
        reasons_of(&pool, "n1", "test-slow").await["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s")
    );
}

#[tokio::test]
async fn deletion_follows_the_rules() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-client", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;
    let server = id_of(&pool, "n1", "test-server").await;
    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::delete(&mut tx, server, &admin())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("test-client on n2"), "{err}");
    drop(tx);
    // the client's descendants are all on its node: it goes, with them
    let client = id_of(&pool, "n2", "test-client").await;
    let mut tx = pool.begin().await.unwrap();
    let removed = db::node_roles::delete(&mut tx, client, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(removed, vec![client]);
    // now the server has no children elsewhere
    let mut tx = pool.begin().await.unwrap();
    db::node_roles::delete(&mut tx, server, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // deleting a deployment moves its nodes to the parent and removes its noderoles
    update_node(
        &pool,
        "n1",
        crowbar::db::nodes::NodeUpdate {
            deployment: Some(Key::from("web")),
            ..Default::default()
        },
    )
    .await;
    let mut tx = pool.begin().await.unwrap();
    db::deployments::delete(&mut tx, &Key::from("web"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let n1 = db::nodes::get(&mut conn, &Key::from("n1")).await.unwrap();
    assert_eq!(n1.deployment, "system");
    assert!(states(&pool).await.is_empty());
}

/// Nodes n1 and n2 with `role` bound and committed, its two runs claimed by worker "w".
async fn two_nodes_running(pool: &sqlx::PgPool, role: &str) -> Vec<db::runs::ClaimedRun> {
    for n in ["n1", "n2"] {
        node(pool, n, true).await;
    }
    deployment(pool, "web").await;
    for n in ["n1", "n2"] {
        bind(pool, n, role, "web").await;
    }
    commit(pool, "web").await;
    let runs = start_one(pool).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    runs
}

/// A result the database refuses (here a runlog with a raw NUL, which the runner itself
/// never hands over) fails only its own run, with a readable reason; the other runs of the
/// batch complete, no run is left running, and the failed one no longer holds its node.
#[tokio::test]
async fn a_result_the_database_refuses_fails_only_its_run() {
    let pool = setup().await;
    let runs = two_nodes_running(&pool, "test-admin").await;
    let results: Vec<_> = runs
        .iter()
        .map(|r| db::runs::RunResult {
            run_id: r.id,
            outcome: db::runs::Outcome::Succeeded,
            wall: Some(json!({"done": true})),
            runlog: if r.node == "n1" {
                "A=1\0B=2".into()
            } else {
                "fine".into()
            },
        })
        .collect();
    assert!(
        crowbar::runner::complete(&pool, "w", &results, None, None)
            .await
            .is_err(),
        "the batch as a whole is refused"
    );
    let (done, lost) = crowbar::runner::complete_each(&pool, "w", &results, None, None).await;
    assert_eq!((done.completed, lost.len()), (2, 0));
    assert_eq!(state(&pool, "n1", "test-admin").await, Error);
    assert_eq!(state(&pool, "n2", "test-admin").await, Active);
    let runlog: String = sqlx::query_scalar(
        "SELECT nr.runlog FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id WHERE n.name = 'n1' AND r.name = 'test-admin'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        runlog.starts_with("crowbar could not record this run's result (succeeded run)"),
        "{runlog}"
    );
    assert!(runlog.contains("A=1\u{FFFD}B=2"), "{runlog}");
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(running, 0);
}

/// A worker heart-beats only the runs it still holds: one it gave up on (its result could
/// not be recorded at all) ages, and the recovery sweep takes it back.
#[tokio::test]
async fn only_the_runs_a_worker_still_holds_are_heart_beaten() {
    let pool = setup().await;
    let runs = two_nodes_running(&pool, "test-admin").await;
    sqlx::query("UPDATE runs SET heartbeat_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    let held = runs.iter().find(|r| r.node == "n2").unwrap().id;
    let beaten = db::runs::heartbeat(&pool, "w", &[held]).await.unwrap();
    assert_eq!(beaten, 1);
    assert_eq!(db::runs::heartbeat(&pool, "w", &[]).await.unwrap(), 0);
    let mut tx = pool.begin().await.unwrap();
    let repaired = db::runs::recover(
        &mut tx,
        &db::runs::Recovery::heartbeat_only(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(repaired, 1, "only the run given up on");
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(state(&pool, "n2", "test-admin").await, Transition);
}

/// The sequencer vacuums its table of pending events when its numbers cross a multiple of
/// `PENDING_VACUUM_EVERY`, and not in between.
#[tokio::test]
async fn the_sequencer_vacuums_pending_events_every_so_many_numbers() {
    let pool = setup().await;
    let vacuums = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'events_pending'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let record = |n: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO events (type, actor) SELECT 'test.filler', 'test' FROM generate_series(1, $1)",
            )
            .bind(n)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let every = db::events::PENDING_VACUUM_EVERY;
    // number everything so far; then stop short of the next multiple
    while db::events::sequence_pending(&pool, every).await.unwrap() > 0 {}
    let numbered = db::events::last_seq(&pool).await.unwrap();
    let before = vacuums().await;
    record(every - 1 - numbered % every).await;
    while db::events::sequence_pending(&pool, every).await.unwrap() > 0 {}
    assert_eq!(vacuums().await, before, "no vacuum short of the multiple");
    // the next number crosses it
    record(1).await;
    assert_eq!(db::events::sequence_pending(&pool, every).await.unwrap(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while vacuums().await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no vacuum after the multiple"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
