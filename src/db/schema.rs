//! The database's own facts, as `crowbar doctor` and `crowbar migrate --check` read them:
//! the server's version, the migrations applied next to those this binary carries, and the
//! rolling-upgrade rules (migration 0021): which builds may serve the schema, and which
//! pending migrations are "contract" steps that leave older builds behind. Reads only.

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

/// The newest migration this binary carries: how a build is named in the upgrade rules.
pub fn newest_known() -> i64 {
    known_migrations()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// What a contract migration writes to say which builds may still serve after it.
const RAISE: &str = "UPDATE schema_compat SET oldest_serving = ";

/// The `oldest_serving` a migration's SQL sets, if it is a contract migration (one that
/// removes or changes what older builds read or write).
pub fn raises_oldest_serving(sql: &str) -> Option<i64> {
    let at = sql.find(RAISE)? + RAISE.len();
    let digits: String = sql[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A migration this binary would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub version: i64,
    pub description: String,
    /// For a contract migration: the oldest build that may serve after it.
    pub raises_to: Option<i64>,
}

/// The migrations this binary carries that `applied` lacks, oldest first.
pub fn pending(applied: &[MigrationRow]) -> Vec<Pending> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| Pending {
            version: m.version,
            description: m.description.to_string(),
            raises_to: raises_oldest_serving(m.sql.as_str()),
        })
        .collect()
}

/// The oldest build that may serve the database (`schema_compat`); `None` when the
/// database predates the rule (or is empty).
pub async fn oldest_serving(conn: &mut PgConnection) -> Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_compat') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT oldest_serving FROM schema_compat")
            .fetch_optional(conn)
            .await?,
    )
}

/// Whether the daemons registry exists yet (migration 0021).
pub async fn has_daemons_table(conn: &mut PgConnection) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT to_regclass('daemons') IS NOT NULL")
            .fetch_one(conn)
            .await?,
    )
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
    fn a_contract_migration_names_the_oldest_build_that_may_serve_after_it() {
        assert_eq!(
            raises_oldest_serving(
                "ALTER TABLE nodes DROP COLUMN old;\nUPDATE schema_compat SET oldest_serving = 23;\n"
            ),
            Some(23)
        );
        assert_eq!(
            raises_oldest_serving("ALTER TABLE nodes ADD COLUMN new text;"),
            None
        );
        // the migrations shipped so far are all expand steps
        assert!(pending(&[]).iter().all(|p| p.raises_to.is_none()));
        assert_eq!(pending(&[]).len(), known_migrations().len());
    }

    #[test]
    fn the_migrations_carried_are_those_serve_applies() {
        let known = known_migrations();
        assert_eq!(known.len(), MIGRATOR.iter().count());
        assert!(known.windows(2).all(|w| w[0].version < w[1].version));
    }
}
