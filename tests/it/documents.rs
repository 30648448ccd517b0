//! Desired-state documents, plans and recall (SEMANTICS.md §4) against real PostgreSQL.

use crowbar::{
    db::{self, documents, keys::Key},
    domain::{desired_state::Document, state::NodeRoleState::*},
};
use serde_json::{Value, json};

use crate::support::{db::test_db, world::*};

async fn setup() -> sqlx::PgPool {
    let db = test_db().await;
    load_barclamps(&db.pool).await;
    for n in ["n1", "n2", "n3"] {
        node(&db.pool, n, true).await;
    }
    deployment(&db.pool, "web").await;
    db.pool
}

fn doc(value: Value) -> Document {
    serde_json::from_value(value).expect("a valid document")
}

async fn apply(pool: &sqlx::PgPool, d: &Document) -> Result<documents::Applied, db::Error> {
    let mut tx = pool.begin().await.unwrap();
    let out = documents::apply(&mut tx, &Key::from("web"), d, &admin()).await?;
    tx.commit().await.unwrap();
    Ok(out)
}

/// Everything a failed or no-op request must leave untouched.
async fn fingerprint(pool: &sqlx::PgPool) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
            'noderoles', (SELECT coalesce(jsonb_agg(to_jsonb(nr) - 'updated_at' ORDER BY nr.id), '[]') FROM noderoles nr),
            'snapshots', (SELECT count(*) FROM snapshots),
            'deployments', (SELECT jsonb_agg(jsonb_build_object('name', name, 'state', state) ORDER BY id) FROM deployments),
            'deployment_roles', (SELECT coalesce(jsonb_agg(to_jsonb(dr) - 'updated_at' ORDER BY dr.id), '[]') FROM deployment_roles dr),
            'runs', (SELECT count(*) FROM runs))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn web_doc(base: Option<i32>) -> Document {
    doc(json!({
        "base": base,
        "roles": {"test-server": {"data": {}}, "test-client": {}},
        "bindings": [
            {"node": "n1", "role": "test-server"},
            {"node": "n2", "role": "test-client", "data": {"x": 1}},
            {"node": "n3", "role": "test-client-client"}
        ]
    }))
}

#[tokio::test]
async fn a_document_commits_a_snapshot_and_converges() {
    let pool = setup().await;
    let applied = apply(&pool, &web_doc(None)).await.unwrap();
    assert!(applied.changed && applied.committed);
    assert_eq!(applied.snapshot, Some(1));
    // the plan: admin first (libraries alongside), then server, then the clients (n3's
    // client-client needs an implicit test-client of its own), then client-client
    let waves: Vec<Vec<String>> = applied
        .plan
        .waves
        .iter()
        .map(|w| w.iter().map(|p| format!("{}/{}", p.node, p.role)).collect())
        .collect();
    assert_eq!(
        waves[0],
        vec!["n1/test-admin", "n2/test-library", "n3/test-library"]
    );
    assert_eq!(waves[1], vec!["n1/test-server"]);
    assert_eq!(waves[2], vec!["n2/test-client", "n3/test-client"]);
    assert_eq!(waves[3], vec!["n3/test-client-client"]);
    drive(&pool).await;
    assert!(states(&pool).await.iter().all(|s| s.2 == Active));
    let mut conn = pool.acquire().await.unwrap();
    let snapshot = db::deployments::snapshot(&mut conn, &Key::from("web"), 1)
        .await
        .unwrap();
    assert_eq!(snapshot.content, web_doc(None).content());
    assert_eq!(snapshot.committed_by, "token:test");
}

#[tokio::test]
async fn an_identical_document_records_nothing_and_reruns_nothing() {
    let pool = setup().await;
    apply(&pool, &web_doc(None)).await.unwrap();
    drive(&pool).await;
    let before = fingerprint(&pool).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let again = apply(&pool, &web_doc(Some(1))).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.snapshot, Some(1));
    assert_eq!(fingerprint(&pool).await, before);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, after, "no event, nothing re-runs");
    assert_eq!(drive(&pool).await, 0);
}

#[tokio::test]
async fn a_stale_base_is_refused_and_changes_nothing() {
    let pool = setup().await;
    apply(&pool, &web_doc(None)).await.unwrap();
    let before = fingerprint(&pool).await;
    let mut stale = web_doc(None);
    stale.bindings.pop();
    let err = apply(&pool, &stale).await.unwrap_err();
    match err {
        db::Error::Conflict { code, details, .. } => {
            assert_eq!(code, "stale_base");
            assert_eq!(details["latest"], 1);
        }
        other => panic!("expected stale_base, got {other:?}"),
    }
    assert_eq!(fingerprint(&pool).await, before);
}

#[tokio::test]
async fn changed_data_reruns_and_removed_bindings_go() {
    let pool = setup().await;
    apply(&pool, &web_doc(None)).await.unwrap();
    drive(&pool).await;
    let mut next = web_doc(Some(1));
    next.bindings.retain(|b| b.role != "test-client-client");
    next.bindings[1].data = Some(json!({"x": 2}));
    let applied = apply(&pool, &next).await.unwrap();
    assert_eq!(applied.snapshot, Some(2));
    let removed: Vec<String> = applied.plan.remove.iter().map(|p| p.role.clone()).collect();
    assert_eq!(removed, vec!["test-client-client"]);
    let rerun: Vec<String> = applied.plan.rerun.iter().map(|p| p.role.clone()).collect();
    assert_eq!(rerun, vec!["test-client"]);
    assert_eq!(state(&pool, "n2", "test-client").await, Todo);
    assert_eq!(state(&pool, "n1", "test-server").await, Active);
    assert_eq!(drive(&pool).await, 1);
}

#[tokio::test]
async fn plans_change_nothing_and_name_held_nodes() {
    let pool = setup().await;
    bind(&pool, "n1", "test-server", "web").await;
    set_alive(&pool, "n1", false).await;
    let before = fingerprint(&pool).await;
    let plan = documents::plan(&pool, &Key::from("web"), &admin())
        .await
        .unwrap();
    assert_eq!(
        plan.create.len(),
        0,
        "the proposal's noderoles exist already"
    );
    assert_eq!(plan.waves.len(), 2);
    assert_eq!(plan.held.len(), 1);
    assert_eq!(plan.held[0].node, "n1");
    assert_eq!(plan.held[0].reason, "dead");
    let doc_plan = documents::plan_document(&pool, &Key::from("web"), &web_doc(None), &admin())
        .await
        .unwrap();
    assert!(
        doc_plan
            .create
            .iter()
            .any(|p| p.role == "test-client-client")
    );
    assert_eq!(fingerprint(&pool).await, before);
}

#[tokio::test]
async fn recall_proposes_an_older_snapshot() {
    let pool = setup().await;
    apply(&pool, &web_doc(None)).await.unwrap();
    let mut next = web_doc(Some(1));
    next.bindings.retain(|b| b.role != "test-client-client");
    apply(&pool, &next).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let recalled = documents::recall(&mut tx, &Key::from("web"), 1, &admin())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!recalled.committed);
    let mut conn = pool.acquire().await.unwrap();
    let web = db::deployments::get(&mut conn, &Key::from("web"))
        .await
        .unwrap();
    assert_eq!(web.state, "proposed");
    let out = commit(&pool, "web").await;
    let snapshot = out.snapshot.unwrap();
    assert_eq!(snapshot.seq, 3);
    assert_eq!(snapshot.content, web_doc(None).content());
}

#[tokio::test]
async fn proposals_from_documents_wait_for_commit() {
    let pool = setup().await;
    let mut proposal = web_doc(None);
    proposal.commit = false;
    let applied = apply(&pool, &proposal).await.unwrap();
    assert!(!applied.committed);
    assert!(
        !applied.plan.waves.is_empty(),
        "the plan says what a commit would run"
    );
    assert!(states(&pool).await.iter().all(|s| s.2 == Proposed));
    assert_eq!(drive(&pool).await, 0);
}
