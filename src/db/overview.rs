//! What the overview page draws: runs per minute, what fails most, and how far each
//! deployment has converged with an estimate of when it will be done.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Result;
use crate::domain::state::NodeRoleState;

/// Runs finished in one minute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Minute {
    pub at: DateTime<Utc>,
    pub succeeded: i64,
    /// Failed or timed out.
    pub failed: i64,
}

/// The runs finished in each of the last `minutes` minutes, oldest first (every minute,
/// with none as zero).
pub async fn runs_per_minute(pool: &PgPool, minutes: i32) -> Result<Vec<Minute>> {
    Ok(sqlx::query_as(
        "WITH m AS (SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                                           date_trunc('minute', now()), interval '1 minute') AS at)
         SELECT m.at,
                count(r.id) FILTER (WHERE r.outcome = 'succeeded') AS succeeded,
                count(r.id) FILTER (WHERE r.outcome IN ('failed', 'timed_out')) AS failed
           FROM m LEFT JOIN run_records r
             ON r.finished_at >= m.at AND r.finished_at < m.at + interval '1 minute'
            AND r.finished_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
          GROUP BY m.at ORDER BY m.at",
    )
    .bind(minutes)
    .fetch_all(pool)
    .await?)
}

/// The roles and the nodes whose runs failed (or timed out) most in the last `hours`, at
/// most `limit` of each: (name, failures).
pub async fn most_failures(
    pool: &PgPool,
    hours: i32,
    limit: i64,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    let top = |by: &'static str| {
        sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
            "SELECT x.name, count(*) AS n FROM run_records r JOIN {by} x ON x.id = r.{column}
              WHERE r.finished_at >= now() - make_interval(hours => $1)
                AND r.outcome IN ('failed', 'timed_out')
              GROUP BY x.name ORDER BY n DESC, x.name LIMIT $2",
            column = if by == "roles" { "role_id" } else { "node_id" }
        )))
        .bind(hours)
        .bind(limit)
        .fetch_all(pool)
    };
    Ok((top("roles").await?, top("nodes").await?))
}

/// How long state samples are kept.
pub const SAMPLES_KEPT_HOURS: i32 = 24;

/// Records the present noderole counts by state (every state, zeros too) as this minute's
/// sample, replacing an earlier sample of the same minute, and drops samples older than
/// [`SAMPLES_KEPT_HOURS`]. Cheap: it reads the folded tallies, not the noderoles.
pub async fn sample_states(pool: &PgPool) -> Result<()> {
    let states: Vec<i16> = NodeRoleState::ALL.iter().map(|s| s.code()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO noderole_state_samples (at, state, n)
         SELECT date_trunc('minute', now()), s.state, coalesce(sum(t.n), 0)::bigint
           FROM unnest($1::smallint[]) AS s(state)
           LEFT JOIN noderole_tallies t ON t.state = s.state
          GROUP BY s.state
         ON CONFLICT (at, state) DO UPDATE SET n = excluded.n",
    )
    .bind(&states)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM noderole_state_samples WHERE at < now() - make_interval(hours => $1)")
        .bind(SAMPLES_KEPT_HOURS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Noderoles by state at the end of one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMinute {
    pub at: DateTime<Utc>,
    /// (state, noderoles), in [`NodeRoleState::ALL`] order; `None` for a minute no daemon
    /// sampled (none was running).
    pub counts: Option<Vec<(NodeRoleState, i64)>>,
}

/// The state samples of each of the last `minutes` minutes, oldest first (every minute,
/// unsampled ones as `None`).
pub async fn states_per_minute(pool: &PgPool, minutes: i32) -> Result<Vec<StateMinute>> {
    let rows: Vec<(DateTime<Utc>, Option<i16>, Option<i64>)> = sqlx::query_as(
        "WITH m AS (SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                                           date_trunc('minute', now()), interval '1 minute') AS at)
         SELECT m.at, s.state, s.n FROM m
           LEFT JOIN noderole_state_samples s ON s.at = m.at
          ORDER BY m.at, s.state",
    )
    .bind(minutes)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<StateMinute> = Vec::new();
    for (at, state, n) in rows {
        if out.last().is_none_or(|m| m.at != at) {
            out.push(StateMinute { at, counts: None });
        }
        let minute = out.last_mut().expect("pushed above");
        if let (Some(state), Some(n)) = (state.and_then(NodeRoleState::from_code), n) {
            minute.counts.get_or_insert_with(Vec::new).push((state, n));
        }
    }
    for minute in &mut out {
        if let Some(counts) = &mut minute.counts {
            counts.sort_by_key(|(s, _)| NodeRoleState::ALL.iter().position(|a| a == s));
        }
    }
    Ok(out)
}

/// How far a deployment has converged.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Progress {
    pub deployment: String,
    pub total: i64,
    pub active: i64,
    pub error: i64,
    /// Runs of its noderoles that succeeded in the last ten minutes.
    pub recent: i64,
}

impl Progress {
    /// Minutes until every noderole not in ERROR is ACTIVE at the last ten minutes' pace;
    /// `None` when nothing ran lately (or nothing is left but errors).
    pub fn eta_minutes(&self) -> Option<f64> {
        let left = self.total - self.active - self.error;
        (left > 0 && self.recent > 0).then(|| left as f64 / (self.recent as f64 / 10.0))
    }

    /// When it will be done, in words.
    pub fn eta_text(&self) -> String {
        match self.eta_minutes() {
            _ if self.active == self.total => "converged".into(),
            _ if self.active + self.error == self.total => {
                format!("waits on {} in error", self.error)
            }
            None => "not moving (nothing ran in 10 min)".into(),
            Some(m) if m < 1.0 => "within a minute".into(),
            Some(m) => format!("about {m:.0} min"),
        }
    }

    /// Whole per cent ACTIVE.
    pub fn percent(&self) -> i64 {
        if self.total == 0 {
            100
        } else {
            self.active * 100 / self.total
        }
    }
}

/// Every deployment with noderoles: its counts (from the tallies) and recent pace.
pub async fn progress(pool: &PgPool) -> Result<Vec<Progress>> {
    Ok(sqlx::query_as(
        "WITH t AS (SELECT deployment_id, sum(n)::bigint AS total,
                           coalesce(sum(n) FILTER (WHERE state = 0), 0)::bigint AS active,
                           coalesce(sum(n) FILTER (WHERE state = -1), 0)::bigint AS error
                      FROM noderole_tallies GROUP BY deployment_id HAVING sum(n) > 0),
              recent AS (SELECT nr.deployment_id, count(*) AS n FROM run_records r
                           JOIN noderoles nr ON nr.id = r.noderole_id
                          WHERE r.finished_at >= now() - interval '10 minutes'
                            AND r.outcome = 'succeeded'
                          GROUP BY nr.deployment_id)
         SELECT d.name AS deployment, t.total, t.active, t.error, coalesce(recent.n, 0) AS recent
           FROM t JOIN deployments d ON d.id = t.deployment_id
           LEFT JOIN recent ON recent.deployment_id = t.deployment_id
          ORDER BY d.name",
    )
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn eta_follows_the_recent_pace() {
        let p = |total, active, recent| Progress {
            deployment: "d".into(),
            total,
            active,
            error: 0,
            recent,
        };
        assert_eq!(p(100, 40, 30).eta_minutes(), Some(20.0));
        assert_eq!(p(100, 40, 0).eta_minutes(), None);
        assert_eq!(p(100, 100, 30).eta_minutes(), None);
        assert_eq!(p(200, 50, 0).percent(), 25);
        assert_eq!(p(100, 40, 30).eta_text(), "about 20 min");
        assert_eq!(p(100, 99, 30).eta_text(), "within a minute");
        assert_eq!(p(100, 100, 0).eta_text(), "converged");
        let stuck = Progress {
            error: 3,
            ..p(29, 26, 30)
        };
        assert_eq!(stuck.eta_text(), "waits on 3 in error");
        assert_eq!(p(0, 0, 0).percent(), 100);
    }
}
