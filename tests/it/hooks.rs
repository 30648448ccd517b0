//! Role hooks (SEMANTICS.md §7) against real PostgreSQL.

use std::sync::{Arc, Mutex};

use crowbar::{
    db::{keys::Key, node_roles, nodes::NodeUpdate},
    domain::state::NodeRoleState::{self, *},
    hooks::{
        HookContext, HookResult, Hooks, NodeEvent, NodeRoleEvent, RoleHooks, dispatch_pending,
    },
};
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::support::{db::test_db, world::*};

#[derive(Default, Clone)]
struct Recorder {
    role: &'static str,
    states: Arc<Mutex<Vec<(String, NodeRoleState)>>>,
    changes: Arc<Mutex<Vec<NodeEvent>>>,
    veto_binds: bool,
}

impl RoleHooks for Recorder {
    fn role(&self) -> &str {
        self.role
    }
    fn on_state<'a>(
        &'a self,
        _: &'a HookContext,
        e: &'a NodeRoleEvent,
    ) -> BoxFuture<'a, HookResult> {
        self.states.lock().unwrap().push((e.role.clone(), e.state));
        Box::pin(async { Ok(()) })
    }
    fn on_node_change<'a>(
        &'a self,
        _: &'a HookContext,
        n: &'a NodeEvent,
    ) -> BoxFuture<'a, HookResult> {
        self.changes.lock().unwrap().push(n.clone());
        Box::pin(async { Ok(()) })
    }
    fn on_node_bind<'a>(
        &'a self,
        _: &'a mut PgConnection,
        _: i64,
        _: i64,
    ) -> BoxFuture<'a, HookResult> {
        let veto = self.veto_binds;
        Box::pin(async move {
            if veto {
                Err("not on this node".into())
            } else {
                Ok(())
            }
        })
    }
}

/// Dispatches until `done` holds (polling with a deadline: another daemon's sequencer may
/// hold the numbering for a moment).
async fn dispatch_until(pool: &sqlx::PgPool, hooks: &Hooks, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "hooks were not called in time"
        );
        if dispatch_pending(pool, hooks).await.unwrap() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Hooks recording the states of `test-server`, with the dispatch cursor set.
async fn server_recorder(pool: &sqlx::PgPool) -> (Recorder, Hooks) {
    let recorder = Recorder {
        role: "test-server",
        ..Default::default()
    };
    let hooks = Hooks::default().with(recorder.clone());
    dispatch_pending(pool, &hooks).await.unwrap(); // sets the cursor
    (recorder, hooks)
}

/// Binds `test-server` on n1, commits, converges, and dispatches until its hooks saw ACTIVE.
async fn converge_server(pool: &sqlx::PgPool, hooks: &Hooks, recorder: &Recorder) {
    bind(pool, "n1", "test-server", "web").await;
    commit(pool, "web").await;
    drive(pool).await;
    dispatch_until(pool, hooks, || {
        recorder.states.lock().unwrap().last().map(|s| s.1) == Some(Active)
    })
    .await;
}

async fn setup() -> sqlx::PgPool {
    let db = test_db().await;
    load_barclamps(&db.pool).await;
    node(&db.pool, "n1", true).await;
    deployment(&db.pool, "web").await;
    db.pool
}

#[tokio::test]
async fn state_hooks_see_every_committed_change_in_order() {
    let pool = setup().await;
    let (recorder, hooks) = server_recorder(&pool).await;
    converge_server(&pool, &hooks, &recorder).await;
    let states: Vec<NodeRoleState> = recorder
        .states
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1)
        .collect();
    // PROPOSED while the deployment was proposed is not reported (uncommitted deployment)
    assert_eq!(states, vec![Blocked, Todo, Transition, Active]);
    // dispatching again delivers nothing twice
    assert_eq!(dispatch_pending(&pool, &hooks).await.unwrap(), 0);
    assert_eq!(recorder.states.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn node_change_hooks_fire_for_available_nodes_only() {
    let pool = setup().await;
    let recorder = Recorder {
        role: "test-admin",
        ..Default::default()
    };
    let hooks = Hooks::default().with(recorder.clone());
    dispatch_pending(&pool, &hooks).await.unwrap();
    update_node(
        &pool,
        "n1",
        NodeUpdate {
            bootenv: Some("local".into()),
            ..Default::default()
        },
    )
    .await;
    dispatch_until(&pool, &hooks, || {
        !recorder.changes.lock().unwrap().is_empty()
    })
    .await;
    {
        let changes = recorder.changes.lock().unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].changes["bootenv"]["to"], "local");
    }
    set_available(&pool, "n1", false).await;
    update_node(
        &pool,
        "n1",
        NodeUpdate {
            bootenv: Some("sledgehammer".into()),
            ..Default::default()
        },
    )
    .await;
    // a later change of the available node proves the earlier ones were passed over
    set_available(&pool, "n1", true).await;
    dispatch_until(&pool, &hooks, || {
        recorder.changes.lock().unwrap().len() >= 2
    })
    .await;
    let changes = recorder.changes.lock().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[1].changes["available"]["to"], true);
}

#[tokio::test]
async fn a_bind_veto_leaves_no_rows() {
    let pool = setup().await;
    let hooks = Hooks::default().with(Recorder {
        role: "test-admin",
        veto_binds: true,
        ..Default::default()
    });
    let mut tx = pool.begin().await.unwrap();
    let bound = node_roles::bind(
        &mut tx,
        &Key::from("n1"),
        "test-server",
        Some(&Key::from("web")),
        None,
        &admin(),
    )
    .await
    .unwrap();
    let veto = hooks.check_bind(&mut tx, &bound).await.unwrap_err();
    assert!(
        veto.to_string().contains("test-admin.on_node_bind refused"),
        "{veto}"
    );
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn hooks_can_ask_for_high_priority_runs_without_duplicates() {
    let pool = setup().await;
    bind(&pool, "n1", "test-admin", "web").await;
    commit(&pool, "web").await;
    drive(&pool).await;
    let ctx = HookContext { pool: pool.clone() };
    let admin_nr = id_of(&pool, "n1", "test-admin").await;
    ctx.request_run(admin_nr).await.unwrap();
    // queued, not started: asking again refreshes instead of queueing another
    crowbar::annealer::pass(&pool, &queue_config(10), None)
        .await
        .unwrap();
    ctx.request_run(admin_nr).await.unwrap();
    let runs: Vec<(String, String)> = sqlx::query_as("SELECT lane, state FROM runs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(runs, vec![("high".to_string(), "queued".to_string())]);
    assert_eq!(drive(&pool).await, 1);
    let lanes: Vec<String> = sqlx::query_scalar("SELECT lane FROM run_records ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(lanes, vec!["normal", "high"]);
    assert_eq!(state(&pool, "n1", "test-admin").await, Active);
    let run_count: i32 = sqlx::query_scalar("SELECT run_count FROM noderoles WHERE id = $1")
        .bind(admin_nr)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(run_count, 2);
}

/// A long transaction elsewhere on the server (here one holding a transaction id on
/// another connection) does not hold back the hooks of changes that committed meanwhile.
#[tokio::test]
async fn hooks_do_not_wait_for_an_unrelated_long_transaction() {
    let pool = setup().await;
    let (recorder, hooks) = server_recorder(&pool).await;
    let mut long = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await
        .unwrap();
    converge_server(&pool, &hooks, &recorder).await;
    // still open: it held nothing back
    sqlx::query("SELECT 1").execute(&mut *long).await.unwrap();
    long.rollback().await.unwrap();
}
