//! Web UI users (name + argon2 password hash) and their login sessions. Session cookies are
//! high-entropy tokens: only their SHA-256 is stored, like API tokens.
//!
//! A session belongs to what opened it, an admin token or a user, and the database ends it
//! with its owner (migration 0007): deleting the user or revoking the token deletes it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    events::Actor,
    keys::{fetch_by_key, token_hash},
};
use crate::domain::{key::Key, policy::Role};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// What the user (and every token of the user) may do.
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

const USER_COLUMNS: &str = "id, name, role, created_at";

/// Adds a user with an already hashed password; a taken name is a 409.
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User> {
    if !valid_name(name) {
        return Err(Error::invalid(
            "invalid_name",
            "a user name is 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (name, password_hash, role) VALUES ($1, $2, $3)
         RETURNING {USER_COLUMNS}"
    )))
    .bind(name)
    .bind(password_hash)
    .bind(role.as_str())
    .fetch_one(conn)
    .await
    .map_err(Error::from_constraint)
}

/// Whether `name` can be a user's name (the `users.name` check, said in Rust).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<User>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<User> {
    fetch_by_key(
        conn,
        format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 OR name = $2"),
        key,
        "user",
    )
    .await
}

/// The id and stored password hash of the user called `name`, if there is one.
pub async fn credentials(pool: &PgPool, name: &str) -> Result<Option<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT id, password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

/// Deletes a user; its sessions end with it (the foreign key cascades) and its tokens are
/// revoked (their rows stay: the names stay taken).
pub async fn delete(conn: &mut PgConnection, key: &Key) -> Result<User> {
    let user = get(conn, key).await?;
    super::tokens::revoke_all_of(conn, user.id).await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.id)
        .execute(conn)
        .await?;
    Ok(user)
}

/// Gives a user a new (already hashed) password and ends its sessions: whoever logged in
/// with the old one is out.
pub async fn set_password(conn: &mut PgConnection, key: &Key, password_hash: &str) -> Result<User> {
    let user = get(conn, key).await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user.id)
        .bind(password_hash)
        .execute(&mut *conn)
        .await
        .map_err(Error::from_constraint)?;
    sqlx::query("DELETE FROM ui_sessions WHERE user_id = $1")
        .bind(user.id)
        .execute(conn)
        .await?;
    Ok(user)
}

/// Gives a user another role. Its sessions and tokens follow at once: their role is
/// narrowed by the user's whenever they are used.
pub async fn set_role(conn: &mut PgConnection, key: &Key, role: Role) -> Result<User> {
    let user = get(conn, key).await?;
    sqlx::query("UPDATE users SET role = $2, updated_at = now() WHERE id = $1")
        .bind(user.id)
        .bind(role.as_str())
        .execute(&mut *conn)
        .await?;
    get(conn, &Key::Id(user.id)).await
}

/// What opened a session, and ends it by going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOwner {
    /// An admin token (`api_tokens`), by id and name.
    Token { id: i64, name: String },
    /// A password user, by id and name.
    User { id: i64, name: String },
}

impl SessionOwner {
    /// Who the audit trail names for changes made in the session.
    pub fn actor(&self) -> Actor {
        match self {
            SessionOwner::Token { name, .. } => Actor::token(name),
            SessionOwner::User { name, .. } => Actor::user(name),
        }
    }
}

/// Opens a session for `owner` lasting `lifetime`; returns the cookie token (shown only
/// here), or `None` when the owner went meanwhile (the token revoked, the user deleted).
pub async fn open_session(
    pool: &PgPool,
    owner: &SessionOwner,
    lifetime: std::time::Duration,
) -> Result<Option<String>> {
    let token = super::keys::new_token();
    // expired sessions go when new ones come: the table stays small without a sweeper
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let (token_id, user_id) = match owner {
        SessionOwner::Token { id, .. } => (Some(*id), None),
        SessionOwner::User { id, .. } => (None, Some(*id)),
    };
    // FOR SHARE: a revocation running now waits for this session and then ends it, or has
    // committed and this inserts nothing
    let opened = sqlx::query(
        "INSERT INTO ui_sessions (token_hash, actor, token_id, user_id, expires_at)
         SELECT $1, $2, $3, $4, now() + make_interval(secs => $5)
          WHERE EXISTS (SELECT FROM api_tokens WHERE id = $3 AND revoked_at IS NULL FOR SHARE)
             OR EXISTS (SELECT FROM users WHERE id = $4 FOR SHARE)",
    )
    .bind(token_hash(&token))
    .bind(owner.actor().0)
    .bind(token_id)
    .bind(user_id)
    .bind(lifetime.as_secs_f64())
    .execute(pool)
    .await?;
    Ok((opened.rows_affected() == 1).then_some(token))
}

/// The live session with this cookie token: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCaller {
    pub actor: Actor,
    /// The owner's role now (a token's narrowed by its user's).
    pub role: Role,
    /// The user the session acts for: its own, or its token's.
    pub user_id: Option<i64>,
}

/// The caller of the live session with this cookie token. A session opened with a token
/// ends when the token expires.
pub async fn session_caller(pool: &PgPool, token: &str) -> Result<Option<SessionCaller>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        actor: String,
        token_role: Option<String>,
        token_user_role: Option<String>,
        user_role: Option<String>,
        user_id: Option<i64>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.actor, t.role AS token_role, tu.role AS token_user_role, u.role AS user_role,
                coalesce(s.user_id, t.user_id) AS user_id
           FROM ui_sessions s
           LEFT JOIN api_tokens t ON t.id = s.token_id
           LEFT JOIN users tu ON tu.id = t.user_id
           LEFT JOIN users u ON u.id = s.user_id
          WHERE s.token_hash = $1 AND s.expires_at > now()
            AND (t.expires_at IS NULL OR t.expires_at > now())",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    let Some(Row {
        actor,
        token_role,
        token_user_role,
        user_role,
        user_id,
    }) = row
    else {
        return Ok(None);
    };
    let role = [token_role, token_user_role, user_role]
        .into_iter()
        .flatten()
        .map(|role| super::tokens::parse_role(&role))
        .collect::<Result<Vec<Role>>>()?
        .into_iter()
        .min();
    Ok(role.map(|role| SessionCaller {
        actor: Actor(actor),
        role,
        user_id,
    }))
}

/// Ends the session with this cookie token; returns what had opened it, if it was open.
pub async fn close_session(pool: &PgPool, token: &str) -> Result<Option<SessionOwner>> {
    let closed: Option<(i64, bool, String)> = sqlx::query_as(
        "WITH closed AS (DELETE FROM ui_sessions WHERE token_hash = $1
                          RETURNING token_id, user_id)
         SELECT coalesce(c.token_id, c.user_id), c.token_id IS NOT NULL, coalesce(t.name, u.name)
           FROM closed c
           LEFT JOIN api_tokens t ON t.id = c.token_id
           LEFT JOIN users u ON u.id = c.user_id",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(closed.map(|(id, by_token, name)| {
        if by_token {
            SessionOwner::Token { id, name }
        } else {
            SessionOwner::User { id, name }
        }
    }))
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
