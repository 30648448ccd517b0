//! Looking rows up by [`Key`] (id or name), and the tokens stored only as hashes.

pub use crate::domain::key::Key;

use super::error::{Error, Result};

/// Sha-256 of a high-entropy token, hex: tokens are looked up by hash, never stored.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The one row `query` finds, where `query` matches `$1` against the id and `$2` against
/// the name (`... WHERE x.id = $1 OR x.name = $2`); 404 `kind` when there is none.
pub async fn fetch_by_key<T>(
    conn: &mut sqlx::PgConnection,
    query: String,
    key: &Key,
    kind: &'static str,
) -> Result<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let (id, name) = key.parts();
    sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found(kind, key))
}
