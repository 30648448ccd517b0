//! API tokens. Only sha-256 hashes are stored; node tokens live on `nodes`.
//!
//! A token carries a role (at most its user's: [`Role::narrowest`] is applied when it is
//! used, so demoting a user narrows its tokens at once), may belong to a user (none: the
//! built-in admin token and the tokens made with it) and may expire.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    keys::{fetch_by_key, new_token, token_hash},
};
use crate::domain::{key::Key, policy::Role};

/// A working token, as a caller: what the audit trail calls it and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCaller {
    pub id: i64,
    pub name: String,
    /// The token's role narrowed by its user's.
    pub role: Role,
    /// The user it belongs to, if any.
    pub user_id: Option<i64>,
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Valid(TokenCaller),
    /// A real token past its `expires_at`.
    Expired,
    /// Unknown or revoked.
    Unknown,
}

/// Who `token` is, if it works.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Lookup> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        name: String,
        role: String,
        user_role: Option<String>,
        user_id: Option<i64>,
        expired: bool,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT t.id, t.name, t.role, u.role AS user_role, t.user_id,
                t.expires_at IS NOT NULL AND t.expires_at <= now() AS expired
           FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Lookup::Unknown,
        Some(row) if row.expired => Lookup::Expired,
        Some(row) => Lookup::Valid(TokenCaller {
            id: row.id,
            name: row.name,
            role: parse_role(&row.role)?
                .narrowest(row.user_role.as_deref().map(parse_role).transpose()?),
            user_id: row.user_id,
        }),
    })
}

/// A role column's value (the tables' checks allow only roles).
pub fn parse_role(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|e: crate::domain::policy::UnknownRole| {
            Error::invalid("invalid_role", e.to_string())
        })
}

/// The name of the token `token`, if it works (whatever its role).
pub async fn working_name(pool: &PgPool, token: &str) -> Result<Option<String>> {
    Ok(match authenticate(pool, token).await? {
        Lookup::Valid(caller) => Some(caller.name),
        _ => None,
    })
}

/// Stores `hash` as the admin token called `name` (no user, no expiry), replacing (and
/// un-revoking) an older one.
pub async fn upsert(conn: &mut PgConnection, name: &str, hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (name, token_hash, role) VALUES ($1, $2, 'admin')
         ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, revoked_at = NULL,
                role = 'admin', user_id = NULL, expires_at = NULL
          WHERE api_tokens.token_hash IS DISTINCT FROM EXCLUDED.token_hash
             OR api_tokens.revoked_at IS NOT NULL
             OR api_tokens.role <> 'admin' OR api_tokens.user_id IS NOT NULL
             OR api_tokens.expires_at IS NOT NULL",
    )
    .bind(name)
    .bind(hash)
    .execute(conn)
    .await
    .map_err(Error::from_constraint)?;
    Ok(())
}

/// A token as listed: never the token, never its hash.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// What it may do (at most its user's role, whatever this says).
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The user it belongs to; null for the built-in admin token and tokens made with it.
    pub user: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it stops working by itself; null: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it stopped working; null while it works.
    pub revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str =
    "t.id, t.name, t.role, u.name AS user, t.created_at, t.expires_at, t.revoked_at";
const TOKEN_FROM: &str = "api_tokens t LEFT JOIN users u ON u.id = t.user_id";

/// Every token, revoked ones included (their names stay taken), by id.
pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<TokenInfo>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} ORDER BY t.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<TokenInfo> {
    fetch_by_key(
        conn,
        format!("SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.id = $1 OR t.name = $2"),
        key,
        "token",
    )
    .await
}

/// A token to make.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: Role,
    /// Whose it is; `None`: nobody's (made with the built-in admin token).
    pub user_id: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new token; returns it with the token, which exists only here.
pub async fn create(conn: &mut PgConnection, new: &NewToken<'_>) -> Result<(TokenInfo, String)> {
    let token = new_token();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (name, token_hash, role, user_id, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(new.name)
    .bind(token_hash(&token))
    .bind(new.role.as_str())
    .bind(new.user_id)
    .bind(new.expires_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::from_constraint)?;
    Ok((get(conn, &Key::Id(id)).await?, token))
}

/// Revokes a token: it stops working at once, and the UI sessions opened with it
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
    // another admin token that does not expire, and whose user (if any) is an admin
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
          WHERE t.revoked_at IS NULL AND t.id <> $1 AND t.role = 'admin'
            AND t.expires_at IS NULL AND (t.user_id IS NULL OR u.role = 'admin')",
    )
    .bind(token.id)
    .fetch_one(&mut *conn)
    .await?;
    if token.role == Role::Admin && token.expires_at.is_none() && others == 0 {
        return Err(Error::conflict(
            "last_token",
            format!(
                "`{}` is the last working admin token; create another before revoking it",
                token.name
            ),
        ));
    }
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1")
        .bind(token.id)
        .execute(&mut *conn)
        .await?;
    get(conn, &Key::Id(token.id)).await
}

/// Revokes every working token of a user (when the user is deleted).
pub async fn revoke_all_of(conn: &mut PgConnection, user_id: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(conn)
    .await?
    .rows_affected())
}
