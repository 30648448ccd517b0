//! Admin API tokens. Only sha-256 hashes are stored; node tokens live on `nodes`.

use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    keys::{fetch_by_key, new_token, token_hash},
};
use crate::domain::key::Key;

/// The name of the admin token `token` belongs to, unless it is unknown or revoked.
pub async fn admin_by_token(pool: &PgPool, token: &str) -> Result<Option<String>> {
    Ok(admin_token(pool, token).await?.map(|(_, name)| name))
}

/// The id and name of the admin token `token` is, unless it is unknown or revoked.
pub async fn admin_token(pool: &PgPool, token: &str) -> Result<Option<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?)
}

/// Stores `hash` as the token called `name`, replacing (and un-revoking) an older one.
pub async fn upsert(conn: &mut PgConnection, name: &str, hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, revoked_at = NULL
          WHERE api_tokens.token_hash IS DISTINCT FROM EXCLUDED.token_hash
             OR api_tokens.revoked_at IS NOT NULL",
    )
    .bind(name)
    .bind(hash)
    .execute(conn)
    .await
    .map_err(Error::from_constraint)?;
    Ok(())
}

/// An admin token as listed: never the token, never its hash.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it stopped working; null while it works.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

const TOKEN_COLUMNS: &str = "id, name, created_at, revoked_at";

/// Every admin token, revoked ones included (their names stay taken), by id.
pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<TokenInfo>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<TokenInfo> {
    fetch_by_key(
        conn,
        format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 OR name = $2"),
        key,
        "token",
    )
    .await
}

/// A new admin token called `name`; returns it with the token, which exists only here.
pub async fn create(conn: &mut PgConnection, name: &str) -> Result<(TokenInfo, String)> {
    let token = new_token();
    let info = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2) RETURNING {TOKEN_COLUMNS}"
    )))
    .bind(name)
    .bind(token_hash(&token))
    .fetch_one(conn)
    .await
    .map_err(Error::from_constraint)?;
    Ok((info, token))
}

/// Revokes an admin token: it stops working at once, and the UI sessions opened with it
/// end (a trigger of migration 0007). The last working token cannot go, or nobody could
/// administer the installation any more. Revoking twice is a no-op.
pub async fn revoke(conn: &mut PgConnection, key: &Key) -> Result<TokenInfo> {
    // one revocation at a time, so two cannot each leave the other as the last one
    sqlx::query("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let token = get(conn, key).await?;
    if token.revoked_at.is_some() {
        return Ok(token);
    }
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL AND id <> $1")
            .bind(token.id)
            .fetch_one(&mut *conn)
            .await?;
    if others == 0 {
        return Err(Error::conflict(
            "last_token",
            format!(
                "`{}` is the last working admin token; create another before revoking it",
                token.name
            ),
        ));
    }
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 RETURNING {TOKEN_COLUMNS}"
    )))
    .bind(token.id)
    .fetch_one(conn)
    .await?)
}
