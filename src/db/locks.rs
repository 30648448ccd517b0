//! Advisory locks: what is serialized across daemons sharing one database, each under a key
//! of its own (a shared key would make unrelated work wait on each other). Most are held by
//! a transaction; a periodic job held for longer than a transaction should last takes a
//! session's lock, which PostgreSQL also releases when the session ends.

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
    /// The power sweep: one daemon reads the BMCs at a time (a session's lock).
    PowerSweep,
    /// Claims of queued power operations, so the cap on BMC operations holds.
    PowerClaims,
    /// The duty of numbering events and dispatching hooks on every notification (a
    /// session's lock; see `events::duty`).
    EventDuty,
    /// One of the few completion writers the daemons sharing a database run at once (see
    /// `runner::COMPLETERS`); the number is the writer's slot.
    CompletionWriter(u8),
}

impl Lock {
    /// "crowbar" followed by a number per lock (what `pg_locks` shows of an advisory lock:
    /// the high half as `classid`, the low half as `objid`).
    pub const fn key(self) -> i64 {
        const BASE: i64 = 0x6372_6f77_6261_7200;
        BASE + match self {
            Lock::Imports => 1,
            Lock::Graph => 2,
            Lock::Claims => 3,
            Lock::Discovery => 4,
            Lock::PowerSweep => 5,
            Lock::PowerClaims => 6,
            Lock::EventDuty => 7,
            Lock::CompletionWriter(slot) => 0x100 + slot as i64,
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

/// Takes `lock` for the session of `conn` if no session holds it: whether it was taken.
/// Release it with [`release_session`] (or by ending the session).
pub async fn try_hold_session(conn: &mut PgConnection, lock: Lock) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock.key())
        .fetch_one(conn)
        .await?)
}

/// Releases a lock [`try_hold_session`] took on this session.
pub async fn release_session(conn: &mut PgConnection, lock: Lock) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
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
        let all = [
            Lock::Imports,
            Lock::Graph,
            Lock::Claims,
            Lock::Discovery,
            Lock::PowerSweep,
            Lock::PowerClaims,
            Lock::EventDuty,
            Lock::CompletionWriter(0),
            Lock::CompletionWriter(1),
            Lock::CompletionWriter(u8::MAX),
        ];
        let keys: std::collections::HashSet<i64> = all.iter().map(|l| l.key()).collect();
        assert_eq!(keys.len(), all.len());
    }
}
