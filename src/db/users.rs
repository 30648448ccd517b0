//! Web UI users (name + argon2 password hash) and their login sessions. Session cookies are
//! high-entropy tokens: only their SHA-256 is stored, like API tokens.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::{error::StoreError, keys::token_hash};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Adds a user with an already hashed password; a taken name is a 409.
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    password_hash: &str,
) -> Result<User, StoreError> {
    if !valid_name(name) {
        return Err(StoreError::invalid(
            "invalid_name",
            "a user name is 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    sqlx::query_as(
        "INSERT INTO users (name, password_hash) VALUES ($1, $2)
         RETURNING id, name, created_at",
    )
    .bind(name)
    .bind(password_hash)
    .fetch_one(conn)
    .await
    .map_err(StoreError::from_constraint)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<User>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, name, created_at FROM users ORDER BY id LIMIT $1 OFFSET $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?,
    )
}

/// The stored password hash of `name`, if there is such a user.
pub async fn password_hash(pool: &PgPool, name: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Opens a session for `actor` lasting `lifetime`; returns the cookie token (shown only here).
pub async fn open_session(
    pool: &PgPool,
    actor: &str,
    lifetime: std::time::Duration,
) -> sqlx::Result<String> {
    let token = super::keys::new_token();
    // expired sessions go when new ones come: the table stays small without a sweeper
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at < now()")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO ui_sessions (token_hash, actor, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash(&token))
    .bind(actor)
    .bind(lifetime.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(token)
}

/// The actor of the live session with this cookie token.
pub async fn session_actor(pool: &PgPool, token: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT actor FROM ui_sessions WHERE token_hash = $1 AND expires_at > now()")
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await
}

pub async fn close_session(pool: &PgPool, token: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn user_names() {
        assert!(valid_name("admin"));
        assert!(valid_name("ops.team-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("Admin"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
