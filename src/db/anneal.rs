//! Convergence status, read from the database.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

use super::error::Result;
use crate::domain::state::NodeRoleState;

/// `/api/v2/anneal`: the status and counts of committed noderoles by state.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AnnealStatus {
    /// failed | working | scheduled | blocked | finished
    pub status: &'static str,
    pub counts: BTreeMap<String, i64>,
}

/// Noderoles by state code (of one deployment, by name, or of all), summed from the tallies
/// the noderoles triggers keep (migration 0003) instead of counting rows.
pub async fn counts_by_state(
    conn: &mut sqlx::PgConnection,
    deployment: Option<&str>,
) -> Result<Vec<(i16, i64)>> {
    Ok(sqlx::query_as(
        "SELECT state, sum(n)::bigint FROM noderole_tallies
          WHERE $1::text IS NULL OR deployment_id = (SELECT id FROM deployments WHERE name = $1)
          GROUP BY state",
    )
    .bind(deployment)
    .fetch_all(conn)
    .await?)
}

/// Folds the appended tally rows into one per (deployment, state), dropping zeros. Safe
/// beside writers and other folders: it folds exactly the rows it deletes.
pub async fn fold_tallies(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query(
        "WITH folded AS (DELETE FROM noderole_tallies RETURNING deployment_id, state, n)
         INSERT INTO noderole_tallies (deployment_id, state, n)
         SELECT deployment_id, state, sum(n) FROM folded GROUP BY 1, 2 HAVING sum(n) <> 0",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn status(pool: &PgPool, deployment: Option<&str>) -> Result<AnnealStatus> {
    let mut conn = pool.acquire().await?;
    Ok(AnnealStatus::of(
        &counts_by_state(&mut conn, deployment).await?,
    ))
}

impl AnnealStatus {
    /// The status of noderoles counted by state code (as [`counts_by_state`] reads them).
    pub fn of(rows: &[(i16, i64)]) -> AnnealStatus {
        let count = |s: NodeRoleState| rows.iter().find(|r| r.0 == s.code()).map_or(0, |r| r.1);
        use NodeRoleState::*;
        let status = if count(Error) > 0 {
            "failed"
        } else if count(Transition) > 0 {
            "working"
        } else if count(Todo) > 0 {
            "scheduled"
        } else if count(Blocked) > 0 {
            "blocked"
        } else {
            "finished"
        };
        let counts = NodeRoleState::ALL
            .into_iter()
            .filter(|s| *s != Proposed)
            .map(|s| (s.name().to_string(), count(s)))
            .collect();
        AnnealStatus { status, counts }
    }
}
