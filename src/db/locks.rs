//! Transaction-scoped advisory locks: what is serialized across daemons sharing one
//! database, each under a key of its own (a shared key would make unrelated work wait on
//! each other).

use sqlx::PgConnection;

use super::error::Result;

/// Something only one transaction at a time may do, across all daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Barclamp imports.
    Imports,
    /// Changes to the noderole graph's shape (bind, delete).
    Graph,
    /// Claims of queued runs, so the global cap holds.
    Claims,
    /// Registration of new machines, so the discovery limit holds.
    Discovery,
}

impl Lock {
    /// "crowbar" followed by a number per lock.
    const fn key(self) -> i64 {
        const BASE: i64 = 0x6372_6f77_6261_7200;
        BASE + match self {
            Lock::Imports => 1,
            Lock::Graph => 2,
            Lock::Claims => 3,
            Lock::Discovery => 4,
        }
    }
}

/// Waits for `lock` and holds it until the transaction on `conn` ends.
pub async fn hold(conn: &mut PgConnection, lock: Lock) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock.key())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lock_has_its_own_key() {
        let all = [Lock::Imports, Lock::Graph, Lock::Claims, Lock::Discovery];
        let keys: std::collections::HashSet<i64> = all.iter().map(|l| l.key()).collect();
        assert_eq!(keys.len(), all.len());
    }
}
