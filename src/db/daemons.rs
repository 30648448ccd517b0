//! The daemons serving this database (migration 0021): which build each runs, so that an
//! upgrade can say which builds a contract migration would leave behind.

use std::time::Duration;

use sqlx::PgPool;

use super::error::Result;

/// How often a daemon says it is still serving.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// A daemon not seen for this long is taken for gone (it crashed, or lost the database).
pub const GONE_AFTER: Duration = Duration::from_secs(60);

/// A daemon as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Daemon {
    pub name: String,
    /// crowbar's version.
    pub version: String,
    /// The newest migration its build carries.
    pub schema_version: i64,
    /// Seconds since it last said it serves.
    pub seen_secs_ago: i64,
}

/// Records (or refreshes) daemon `name` as serving.
pub async fn register(pool: &PgPool, name: &str, version: &str, schema_version: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO daemons (name, version, schema_version) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET version = $2, schema_version = $3, seen_at = now()",
    )
    .bind(name)
    .bind(version)
    .bind(schema_version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes daemon `name` (it stops); forgets daemons gone for long.
pub async fn leave(pool: &PgPool, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM daemons WHERE name = $1 OR seen_at < now() - interval '1 day'")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// The daemons seen within [`GONE_AFTER`], oldest build first.
pub async fn serving(conn: &mut sqlx::PgConnection) -> Result<Vec<Daemon>> {
    Ok(sqlx::query_as(
        "SELECT name, version, schema_version, extract(epoch FROM now() - seen_at)::bigint AS seen_secs_ago
           FROM daemons WHERE seen_at > now() - make_interval(secs => $1)
          ORDER BY schema_version, name",
    )
    .bind(GONE_AFTER.as_secs_f64())
    .fetch_all(conn)
    .await?)
}
