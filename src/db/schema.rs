//! The database's own facts, as `crowbar doctor` reads them: the server's version, and the
//! migrations applied next to those this binary carries. Reads only.

use sqlx::PgConnection;

use super::{MIGRATOR, error::Result};

/// A migration this binary carries, or one a database has recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRow {
    pub version: i64,
    pub checksum: Vec<u8>,
    /// Always true for the binary's own; false for one that failed partway.
    pub success: bool,
}

/// The migrations this binary applies (down migrations are never applied at start).
pub fn known_migrations() -> Vec<MigrationRow> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationRow {
            version: m.version,
            checksum: m.checksum.to_vec(),
            success: true,
        })
        .collect()
}

/// The server's version: `server_version_num` (e.g. 150018) and its text (`15.18`).
pub async fn server_version(conn: &mut PgConnection) -> Result<(i64, String)> {
    let (number, text): (i64, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::bigint, current_setting('server_version')",
    )
    .fetch_one(conn)
    .await?;
    let text = text.split_whitespace().next().unwrap_or("").to_string();
    Ok((number, text))
}

/// The migrations the database records, oldest first; `None` when it has no migrations
/// table at all (nothing was ever applied).
pub async fn applied_migrations(conn: &mut PgConnection) -> Result<Option<Vec<MigrationRow>>> {
    let table = MIGRATOR.table_name.as_ref();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum, success FROM {table} ORDER BY version"
    )))
    .fetch_all(conn)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(version, checksum, success)| MigrationRow {
                version,
                checksum,
                success,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_carried_are_those_serve_applies() {
        let known = known_migrations();
        assert_eq!(known.len(), MIGRATOR.iter().count());
        assert!(known.windows(2).all(|w| w[0].version < w[1].version));
    }
}
