//! Addressing objects by numeric id or by name (API.md: "by id or by name").

/// `42` addresses by id, anything else by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(i64),
    Name(String),
}

impl Key {
    pub fn parse(text: &str) -> Key {
        match text.parse::<i64>() {
            Ok(id) => Key::Id(id),
            Err(_) => Key::Name(text.to_string()),
        }
    }

    /// Binds as (`id`, `name`) for `WHERE id = $1 OR name = $2`-style lookups.
    pub fn parts(&self) -> (Option<i64>, Option<&str>) {
        match self {
            Key::Id(id) => (Some(*id), None),
            Key::Name(name) => (None, Some(name.as_str())),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Name(name) => f.write_str(name),
        }
    }
}

impl From<i64> for Key {
    fn from(id: i64) -> Self {
        Key::Id(id)
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Self {
        Key::parse(text)
    }
}

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
) -> Result<T, super::error::StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let (id, name) = key.parts();
    sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| super::error::StoreError::not_found(kind, key))
}
