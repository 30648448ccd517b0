//! Admin API tokens. Only sha-256 hashes are stored; node tokens live on `nodes`.

use sqlx::{PgConnection, PgPool};

use super::{error::StoreError, keys::token_hash};

/// The name of the admin token `token` belongs to, unless it is unknown or revoked.
pub async fn admin_by_token(pool: &PgPool, token: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await
}

/// Stores `hash` as the token called `name`, replacing (and un-revoking) an older one.
pub async fn upsert(conn: &mut PgConnection, name: &str, hash: &str) -> Result<(), StoreError> {
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
    .map_err(StoreError::from_constraint)?;
    Ok(())
}
