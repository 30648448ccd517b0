//! Migrations that move data, run over data written under the schema before them.

use crate::support::db::{database_before, drop_database, test_db};

#[tokio::test]
async fn sessions_opened_before_0007_keep_a_live_owner_or_end() {
    let test = test_db().await;
    let name = format!("{}_before_0007", test.name);
    let (pool, _) = database_before(7, &name).await;
    sqlx::raw_sql(
        "INSERT INTO api_tokens (name, token_hash) VALUES ('ops', 'h-ops');
         INSERT INTO api_tokens (name, token_hash, revoked_at) VALUES ('old', 'h-old', now());
         INSERT INTO users (name, password_hash) VALUES ('alice', '$argon2id$v=19$x');
         INSERT INTO ui_sessions (token_hash, actor, expires_at) VALUES
           ('s-ops', 'admin:ops', now() + interval '1 hour'),
           ('s-old', 'admin:old', now() + interval '1 hour'),
           ('s-alice', 'user:alice', now() + interval '1 hour'),
           ('s-bob', 'user:bob', now() + interval '1 hour'),
           ('s-gone', 'admin:gone', now() + interval '1 hour');",
    )
    .execute(&pool)
    .await
    .unwrap();

    crowbar::db::migrate(&pool).await.unwrap();
    let kept: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT s.token_hash, t.name, u.name FROM ui_sessions s
           LEFT JOIN api_tokens t ON t.id = s.token_id
           LEFT JOIN users u ON u.id = s.user_id
          ORDER BY s.token_hash",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        [
            ("s-alice".to_string(), None, Some("alice".to_string())),
            ("s-ops".to_string(), Some("ops".to_string()), None),
        ]
    );
    pool.close().await;
    drop_database(&name).await;
}
