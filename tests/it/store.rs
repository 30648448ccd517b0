//! Store functions the REST API relies on, against real PostgreSQL: committing and
//! proposing single noderoles and whole nodes, the deployment graph, catalog reads, jig
//! updates, admin tokens and the built-in admin token file.

use crowbar::{
    db::{
        self,
        keys::{Key, token_hash},
        node_roles::NodeRoleFilter,
        nodes::NodeFilter,
        paging::Window,
        roles::{JigUpdate, RoleFilter},
    },
    domain::state::NodeRoleState::*,
};
use serde_json::json;

use crate::support::{db::test_db, world::*};

async fn setup() -> sqlx::PgPool {
    let db = test_db().await;
    load_barclamps(&db.pool).await;
    db.pool
}

fn conflict_code(e: db::Error) -> &'static str {
    match e {
        db::Error::Conflict { code, .. } => code,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn committing_one_noderole_waits_for_its_proposed_parents() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    let bound = bind(&pool, "n1", "test-server", "web").await;
    let admin_nr = id_of(&pool, "n1", "test-admin").await;
    sqlx::query("UPDATE noderoles SET proposed_data = '{\"x\": 1}' WHERE id = $1")
        .bind(bound.noderole.id)
        .execute(&pool)
        .await
        .unwrap();

    // the server's parent (test-admin) is still PROPOSED: the server waits
    let mut tx = pool.begin().await.unwrap();
    let nr = db::node_roles::commit_one(&mut tx, bound.noderole.id, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(nr.state, Blocked.code());
    let committed: serde_json::Value =
        sqlx::query_scalar("SELECT committed_data FROM noderoles WHERE id = $1")
            .bind(nr.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(committed, json!({"x": 1}));
    assert_eq!(state(&pool, "n1", "test-admin").await, Proposed);

    // the parent has no parents: TODO
    let mut tx = pool.begin().await.unwrap();
    let nr = db::node_roles::commit_one(&mut tx, admin_nr, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(nr.state, Todo.code());

    // committing again is an illegal transition
    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::commit_one(&mut tx, admin_nr, &admin())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err), "not_proposed");
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::commit_one(&mut tx, 999_999, &admin())
        .await
        .unwrap_err();
    assert!(matches!(err, db::Error::NotFound { .. }), "{err:?}");
}

/// Runs one pass, claims what it queued and completes it successfully.
async fn run_one_step(pool: &sqlx::PgPool) -> usize {
    let config = queue_config(10);
    crowbar::annealer::pass(pool, &config, None).await.unwrap();
    let claimed = crowbar::runner::claim(pool, "w", None, &config, 10)
        .await
        .unwrap();
    let results: Vec<_> = claimed
        .iter()
        .map(|r| db::runs::RunResult {
            run_id: r.id,
            outcome: db::runs::Outcome::Succeeded,
            wall: Some(json!({})),
            runlog: String::new(),
        })
        .collect();
    crowbar::runner::complete(pool, "w", &results, None, None)
        .await
        .unwrap();
    claimed.len()
}

async fn queued_runs(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn proposing_one_noderole_blocks_waiting_children_and_drops_their_queued_runs() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    commit(&pool, "web").await;
    // test-admin runs; test-server becomes TODO and a pass queues its run
    assert_eq!(run_one_step(&pool).await, 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Active);
    assert_eq!(state(&pool, "n1", "test-server").await, Todo);
    crowbar::annealer::pass(&pool, &queue_config(10), None)
        .await
        .unwrap();
    assert_eq!(queued_runs(&pool).await, 1);

    let parent = id_of(&pool, "n1", "test-admin").await;
    let mut tx = pool.begin().await.unwrap();
    let nr = db::node_roles::propose_one(&mut tx, parent, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(nr.state, Proposed.code());
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    assert_eq!(queued_runs(&pool).await, 0);
    let dropped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM run_records WHERE outcome = 'dropped'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dropped, 1);
    // proposing twice changes nothing
    let mut tx = pool.begin().await.unwrap();
    db::node_roles::propose_one(&mut tx, parent, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // committing it again re-runs it, then its child
    let mut tx = pool.begin().await.unwrap();
    let nr = db::node_roles::commit_one(&mut tx, parent, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(nr.state, Todo.code());
    assert_eq!(drive(&pool).await, 2);
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));

    // proposing an ACTIVE parent leaves ACTIVE children ACTIVE
    let mut tx = pool.begin().await.unwrap();
    db::node_roles::propose_one(&mut tx, parent, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(state(&pool, "n1", "test-server").await, Active);
}

#[tokio::test]
async fn a_running_noderole_cannot_be_proposed() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    deployment(&pool, "web").await;
    let bound = bind(&pool, "n1", "test-admin", "web").await;
    commit(&pool, "web").await;
    let config = queue_config(10);
    crowbar::annealer::pass(&pool, &config, None).await.unwrap();
    let claimed = crowbar::runner::claim(&pool, "w", None, &config, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(state(&pool, "n1", "test-admin").await, Transition);

    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::propose_one(&mut tx, bound.noderole.id, &admin())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err), "busy");
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::propose_node(&mut tx, &Key::from("n1"), &admin())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(err), "busy");
    drop(tx);
    assert_eq!(state(&pool, "n1", "test-admin").await, Transition);
}

#[tokio::test]
async fn a_node_commits_and_proposes_all_its_noderoles() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    // n1 stays in `system`; its noderoles live in `web`
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-admin", "system").await;

    let mut tx = pool.begin().await.unwrap();
    let changed = db::node_roles::commit_node(&mut tx, &Key::from("n1"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(state(&pool, "n1", "test-admin").await, Todo);
    assert_eq!(state(&pool, "n1", "test-server").await, Blocked);
    // other nodes are not touched
    assert_eq!(state(&pool, "n2", "test-admin").await, Proposed);
    // nothing left to commit
    let mut tx = pool.begin().await.unwrap();
    let changed = db::node_roles::commit_node(&mut tx, &Key::from("n1"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(changed.is_empty());

    // the deployment is still proposed: nothing runs until it is committed
    assert_eq!(drive(&pool).await, 0);
    commit(&pool, "web").await;
    assert_eq!(drive(&pool).await, 2);

    let mut tx = pool.begin().await.unwrap();
    let changed = db::node_roles::propose_node(&mut tx, &Key::from("n1"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(state(&pool, "n1", "test-admin").await, Proposed);
    assert_eq!(state(&pool, "n1", "test-server").await, Proposed);

    let mut tx = pool.begin().await.unwrap();
    let err = db::node_roles::commit_node(&mut tx, &Key::from("nope"), &admin())
        .await
        .unwrap_err();
    assert!(matches!(err, db::Error::NotFound { .. }));
}

#[tokio::test]
async fn the_graph_holds_a_deployments_noderoles_edges_and_shared_parents() {
    let pool = setup().await;
    node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    deployment(&pool, "base").await;
    bind(&pool, "n1", "test-server", "base").await;
    // `web` under `base` shares base's server
    let mut conn = pool.acquire().await.unwrap();
    db::deployments::create(&mut conn, "web", "", Some(&Key::from("base")), &admin())
        .await
        .unwrap();
    drop(conn);
    bind(&pool, "n2", "test-client", "web").await;

    let mut conn = pool.acquire().await.unwrap();
    let graph = db::deployments::graph(&mut conn, &Key::from("web"))
        .await
        .unwrap();
    let roles: Vec<(&str, &str, &str)> = graph
        .node_roles
        .iter()
        .map(|nr| (nr.node.as_str(), nr.role.as_str(), nr.deployment.as_str()))
        .collect();
    assert!(roles.contains(&("n2", "test-client", "web")));
    assert!(roles.contains(&("n2", "test-library", "web")));
    assert!(roles.contains(&("n1", "test-server", "base")), "{roles:?}");
    assert!(!roles.iter().any(|r| r.1 == "test-admin"), "{roles:?}");
    let server = id_of(&pool, "n1", "test-server").await;
    let client = id_of(&pool, "n2", "test-client").await;
    let library = id_of(&pool, "n2", "test-library").await;
    let edges: Vec<(i64, i64)> = graph.edges.iter().map(|e| (e.parent, e.child)).collect();
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert!(edges.contains(&(server, client)));
    assert!(edges.contains(&(library, client)));
    assert!(graph.node_roles.iter().all(|nr| nr.status == "proposed"));

    let err = db::deployments::graph(&mut conn, &Key::from("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, db::Error::NotFound { .. }));
}

#[tokio::test]
async fn deployments_change_their_description() {
    let pool = setup().await;
    deployment(&pool, "web").await;
    let mut tx = pool.begin().await.unwrap();
    let d = db::deployments::update(&mut tx, &Key::from("web"), Some("the web tier"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(d.description, "the web tier");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'deployment.updated'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(events, 1);
    // unchanged: no event
    let mut tx = pool.begin().await.unwrap();
    db::deployments::update(&mut tx, &Key::from("web"), Some("the web tier"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'deployment.updated'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn lists_filter_by_name_or_id() {
    let pool = setup().await;
    let n1 = node(&pool, "n1", true).await;
    node(&pool, "n2", true).await;
    let web = deployment(&pool, "web").await;
    bind(&pool, "n1", "test-admin", "web").await;
    bind(&pool, "n2", "test-admin", "system").await;
    let by = |deployment: Option<String>, node: Option<String>| NodeRoleFilter {
        deployment,
        node,
        window: Window::first(100),
        ..Default::default()
    };
    let by_name = db::explain::page(&pool, &by(Some("web".into()), None), 10)
        .await
        .unwrap();
    let by_id = db::explain::page(&pool, &by(Some(web.to_string()), None), 10)
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_id.len(), 1);
    let of_node = db::explain::page(&pool, &by(None, Some(n1.to_string())), 10)
        .await
        .unwrap();
    assert_eq!(of_node.len(), 1);
    assert_eq!(of_node[0].0.node, "n1");

    world_move(&pool, "n1", "web").await;
    let nodes = db::nodes::list(
        &pool,
        &NodeFilter {
            deployment: Some(web.to_string()),
            window: Window::first(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "n1");
}

async fn world_move(pool: &sqlx::PgPool, node: &str, deployment: &str) {
    update_node(
        pool,
        node,
        db::nodes::NodeUpdate {
            deployment: Some(Key::from(deployment)),
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn the_catalog_reads_and_jigs_toggle() {
    let pool = setup().await;
    let barclamps = db::roles::list_barclamps(&pool, 100, 0).await.unwrap();
    assert_eq!(
        barclamps.len(),
        5,
        "the shipped core, provisioner, base, demo and test barclamps"
    );
    let mut conn = pool.acquire().await.unwrap();
    let detail = db::roles::get_barclamp(&mut conn, &Key::from("test"))
        .await
        .unwrap();
    assert_eq!(detail.barclamp.name, "test");
    assert!(
        db::roles::get_barclamp(&mut conn, &Key::from("nope"))
            .await
            .is_err()
    );

    let roles = db::roles::list_roles(
        &pool,
        &RoleFilter {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        roles.len(),
        28,
        "core 4, provisioner 4, base 8, demo 3, test 9"
    );
    let client = db::roles::get_role(&mut conn, &Key::from("test-client"))
        .await
        .unwrap();
    assert_eq!(client.flags, vec!["implicit"]);
    assert_eq!(client.requires, vec!["test-server", "test-library"]);
    assert_eq!(client.jig, "test");
    let by_id = db::roles::get_role(&mut conn, &Key::Id(client.id))
        .await
        .unwrap();
    assert_eq!(by_id.name, "test-client");
    let noop_roles = db::roles::list_roles(
        &pool,
        &RoleFilter {
            jig: Some("script".into()),
            barclamp: Some("test".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        noop_roles.is_empty(),
        "the test barclamp has no script roles"
    );

    let jigs = db::roles::list_jigs(&pool, 100, 0).await.unwrap();
    assert_eq!(
        jigs.len(),
        7,
        "noop, script, ansible, dnsmasq, bmc, os-install, test"
    );
    drop(conn);
    let mut tx = pool.begin().await.unwrap();
    let jig = db::roles::update_jig(
        &mut tx,
        &Key::from("test"),
        &JigUpdate {
            active: Some(false),
            description: Some("simulation".into()),
        },
        &admin(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(!jig.active);
    assert_eq!(jig.description, "simulation");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'jig.updated'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    // binding a role on an inactive jig is refused
    node(&pool, "n1", true).await;
    assert!(
        try_bind(&pool, "n1", "test-admin", "system", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn admin_tokens_are_found_by_hash_until_revoked() {
    let pool = setup().await;
    assert_eq!(db::tokens::working_name(&pool, "t1").await.unwrap(), None);
    let mut tx = pool.begin().await.unwrap();
    db::tokens::upsert(&mut tx, "ops", &token_hash("t1"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        db::tokens::working_name(&pool, "t1").await.unwrap(),
        Some("ops".into())
    );
    // replacing the token under the same name retires the old one
    let mut tx = pool.begin().await.unwrap();
    db::tokens::upsert(&mut tx, "ops", &token_hash("t2"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(db::tokens::working_name(&pool, "t1").await.unwrap(), None);
    assert_eq!(
        db::tokens::working_name(&pool, "t2").await.unwrap(),
        Some("ops".into())
    );
    // only hashes are stored
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_hash = 't2'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(db::tokens::working_name(&pool, "t2").await.unwrap(), None);
}

#[tokio::test]
async fn the_builtin_admin_token_is_generated_once_then_reused() {
    use crowbar::admin_token::{AdminTokenSource, admin_token_path, ensure_admin_token};
    use std::os::unix::fs::PermissionsExt;

    let pool = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("var");
    let path = admin_token_path(&data_dir);

    let first = ensure_admin_token(&pool, &data_dir, None).await.unwrap();
    assert_eq!(first, AdminTokenSource::Generated(path.clone()));
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        db::tokens::working_name(&pool, &token).await.unwrap(),
        Some("admin".into())
    );

    // the next start reads the same token
    let second = ensure_admin_token(&pool, &data_dir, None).await.unwrap();
    assert_eq!(second, AdminTokenSource::File(path.clone()));
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    assert!(
        db::tokens::working_name(&pool, &token)
            .await
            .unwrap()
            .is_some()
    );

    // a token given in the settings replaces it (and leaves the file alone)
    let given = crowbar::secret::Secret::new("given-token");
    let third = ensure_admin_token(&pool, &data_dir, Some(&given))
        .await
        .unwrap();
    assert_eq!(third, AdminTokenSource::Setting);
    assert_eq!(
        db::tokens::working_name(&pool, "given-token")
            .await
            .unwrap(),
        Some("admin".into())
    );
    assert_eq!(db::tokens::working_name(&pool, &token).await.unwrap(), None);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    // an empty token is refused, not stored
    let empty = crowbar::secret::Secret::new("  ");
    assert!(
        ensure_admin_token(&pool, &data_dir, Some(&empty))
            .await
            .is_err()
    );
    std::fs::write(&path, "\n").unwrap();
    assert!(ensure_admin_token(&pool, &data_dir, None).await.is_err());
}

/// A run record: id, noderole, node, role.
type RunRecord = (i64, Option<i64>, Option<i64>, Option<i64>);

/// The run records, and how many name no noderole.
async fn run_history(pool: &sqlx::PgPool) -> (Vec<RunRecord>, i64) {
    let rows: Vec<RunRecord> =
        sqlx::query_as("SELECT id, noderole_id, node_id, role_id FROM run_records ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    let unnamed = rows.iter().filter(|r| r.1.is_none()).count() as i64;
    (rows, unnamed)
}

#[tokio::test]
async fn run_history_outlives_the_noderoles_and_nodes_it_names() {
    let pool = setup().await;
    let n1 = node(&pool, "n1", true).await;
    let n2 = node(&pool, "n2", true).await;
    deployment(&pool, "web").await;
    bind(&pool, "n1", "test-server", "web").await;
    bind(&pool, "n2", "test-server", "web").await;
    commit(&pool, "web").await;
    while run_one_step(&pool).await > 0 {}
    let (before, unnamed) = run_history(&pool).await;
    let noderoles: i64 = sqlx::query_scalar("SELECT count(*) FROM noderoles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        before.len() as i64,
        noderoles,
        "each noderole ran once: {before:?}"
    );
    assert!(before.iter().any(|r| r.2 == Some(n2)));
    assert_eq!(unnamed, 0);

    // a deleted noderole: its records stay, without it, still naming the node and role
    let server_n1 = id_of(&pool, "n1", "test-server").await;
    let mut tx = pool.begin().await.unwrap();
    db::node_roles::delete(&mut tx, server_n1, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (after, unnamed) = run_history(&pool).await;
    assert_eq!(after.len(), before.len());
    assert_eq!(unnamed, 1);
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(was.0, is.0);
        assert_eq!(
            is.1,
            if was.1 == Some(server_n1) {
                None
            } else {
                was.1
            }
        );
        assert_eq!((is.2, is.3), (was.2, was.3), "node and role are kept");
    }

    // a deleted node: its records stay, naming neither it nor its noderoles
    let mut tx = pool.begin().await.unwrap();
    db::nodes::delete(&mut tx, &Key::from("n2"), &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (last, _) = run_history(&pool).await;
    assert_eq!(last.len(), before.len());
    for (was, is) in after.iter().zip(&last) {
        if was.2 == Some(n2) {
            assert_eq!((is.1, is.2), (None, None));
        } else {
            assert_eq!(was, is);
            assert_eq!(is.2, Some(n1));
        }
    }
}

/// The daemon's sessions run without PostgreSQL's JIT compiler (it spent about a second
/// compiling each walk up the graph on every new connection), unless the URL asks for it.
#[tokio::test]
async fn the_daemons_sessions_run_without_jit_unless_the_url_asks_for_it() {
    let db = test_db().await;
    let jit = |pool: sqlx::PgPool| async move {
        let setting: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        setting
    };
    let url = db.url.expose();
    assert_eq!(jit(db::connect(url, 2).await.unwrap()).await, "off");
    let separator = if url.contains('?') { '&' } else { '?' };
    let asked = format!("{url}{separator}options=-c%20jit%3Don");
    assert_eq!(jit(db::connect(&asked, 2).await.unwrap()).await, "on");
}
