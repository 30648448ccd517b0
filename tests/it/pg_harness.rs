//! The harness itself: every test database is real, migrated and private.

use crate::support::db::test_db;

#[tokio::test]
async fn each_test_gets_a_fresh_migrated_database() {
    let a = test_db().await;
    let b = test_db().await;
    assert_ne!(a.name, b.name);
    assert!(crowbar::db::ready(&a.pool).await);
    sqlx::query("UPDATE deployments SET description = 'changed' WHERE system")
        .execute(&a.pool)
        .await
        .unwrap();
    let untouched: String = sqlx::query_scalar("SELECT description FROM deployments WHERE system")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_ne!(untouched, "changed", "databases must not share state");
}
