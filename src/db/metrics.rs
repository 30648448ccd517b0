//! The fleet figures `/metrics` reports, read at scrape time in one snapshot.

use sqlx::PgPool;

use super::Result;

/// Counts of noderoles, runs and nodes, all as of one moment.
#[derive(Debug, Clone, Default)]
pub struct FleetCounts {
    /// (state code, count) for every state with noderoles.
    pub noderoles_by_state: Vec<(i16, i64)>,
    /// (state, lane, count) of the runs in the queue.
    pub runs: Vec<(String, String, i64)>,
    /// (alive, available, count) of the nodes.
    pub nodes: Vec<(bool, bool, i64)>,
}

/// Reads every figure in one read-only snapshot, so they agree with each other.
pub async fn fleet(pool: &PgPool) -> Result<FleetCounts> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let noderoles_by_state = super::anneal::counts_by_state(&mut tx, None).await?;
    let runs = sqlx::query_as("SELECT state, lane, count(*) FROM runs GROUP BY 1, 2")
        .fetch_all(&mut *tx)
        .await?;
    let nodes = sqlx::query_as("SELECT alive, available, count(*) FROM nodes GROUP BY 1, 2")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(FleetCounts {
        noderoles_by_state,
        runs,
        nodes,
    })
}
