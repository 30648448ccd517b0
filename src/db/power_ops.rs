//! Power operations (migration 0018): requested, claimed by a daemon's power worker (one at
//! a time per BMC, at most a cap at once over every daemon), finished with an outcome, and
//! taken back from a daemon that died. Every change is a `node.power` event on the node, so
//! the operation shows on the event stream and in the node's history.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::domain::bmc::PowerOperation;

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    locks::{self, Lock},
    runs::lease_gone,
};

/// Wakes power workers: an operation was queued or a running one ended.
pub const CHANNEL_POWER: &str = "crowbar_power";

/// An operation is taken back from a worker this many times at most; then it fails.
pub const MAX_ATTEMPTS: i32 = 3;

/// A power operation as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PowerOp {
    pub id: i64,
    pub node: String,
    pub node_id: i64,
    /// `on`, `off` (graceful), `force-off`, `cycle`, `pxe-once`, `discover` or `check`
    pub action: String,
    /// A cycle of a machine whose power state is unknown goes ahead only when forced.
    pub force: bool,
    /// `queued`, `running`, `done` or `failed`
    pub state: String,
    /// What happened, or why it failed.
    pub reason: String,
    /// Who asked for it.
    pub actor: String,
    pub attempts: i32,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const SELECT_OP: &str =
    "SELECT o.id, n.name AS node, o.node_id, o.action, o.force, o.state, o.reason,
        o.actor, o.attempts, o.queued_at, o.started_at, o.finished_at
   FROM power_ops o JOIN nodes n ON n.id = o.node_id";

/// Queues `action` on the node (whose BMC the caller checked), unless the same one is
/// already waiting: then that one is the answer (a double click or a retried script asks
/// once). The node's desired power state becomes what the action leaves. Returns the
/// operation and whether it is new.
pub async fn request(
    conn: &mut PgConnection,
    node_id: i64,
    action: &str,
    force: bool,
    actor: &Actor,
) -> Result<(PowerOp, bool)> {
    // serializes requests for one node (the BMC row), so two equal ones queue once
    sqlx::query("SELECT 1 FROM node_bmcs WHERE node_id = $1 FOR UPDATE")
        .bind(node_id)
        .execute(&mut *conn)
        .await?;
    let waiting: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM power_ops
          WHERE node_id = $1 AND state = 'queued' AND action = $2 AND force = $3
          ORDER BY id LIMIT 1",
    )
    .bind(node_id)
    .bind(action)
    .bind(force)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = waiting {
        return Ok((get(conn, id).await?, false));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO power_ops (node_id, action, force, actor) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(node_id)
    .bind(action)
    .bind(force)
    .bind(&actor.0)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(desired) = PowerOperation::parse(action).and_then(PowerOperation::desired) {
        sqlx::query("UPDATE node_bmcs SET desired_power = $2 WHERE node_id = $1")
            .bind(node_id)
            .bind(desired)
            .execute(&mut *conn)
            .await?;
    }
    let op = get(conn, id).await?;
    changed(conn, actor, &op).await?;
    events::notify(conn, CHANNEL_POWER).await?;
    Ok((op, true))
}

/// A `node.power` event telling the operation's new state.
async fn changed(conn: &mut PgConnection, actor: &Actor, op: &PowerOp) -> Result<()> {
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.power",
            reason: op.reason.clone(),
            node_id: Some(op.node_id),
            data: json!({
                "id": op.id, "node": op.node, "action": op.action, "force": op.force,
                "state": op.state, "reason": op.reason, "attempts": op.attempts,
                "changes": { "power": format!("{} {}", op.action, op.state) },
            }),
            ..NewEvent::default()
        },
    )
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<PowerOp> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_OP} WHERE o.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("power operation", id))
}

/// The node's operations, newest first: those waiting or running, then the last `limit`
/// finished.
pub async fn for_node(conn: &mut PgConnection, node_id: i64, limit: i64) -> Result<Vec<PowerOp>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "({SELECT_OP} WHERE o.node_id = $1 AND o.state IN ('queued', 'running'))
         UNION ALL
         ({SELECT_OP} WHERE o.node_id = $1 AND o.state IN ('done', 'failed') ORDER BY o.id DESC LIMIT $2)
         ORDER BY id DESC"
    )))
    .bind(node_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// An operation claimed by a worker: what it is to do.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedOp {
    pub id: i64,
    pub node_id: i64,
    pub node: String,
    pub action: String,
    pub force: bool,
    /// The BMC accepted the change before the operation was taken back: confirm only.
    pub sent: bool,
}

/// Claims up to `max` queued operations, oldest first, one per node and none on a node
/// with one running, keeping at most `cap` running over every daemon.
pub async fn claim(
    conn: &mut PgConnection,
    worker: &str,
    lease: Option<i32>,
    cap: i64,
    max: i64,
) -> Result<Vec<ClaimedOp>> {
    locks::hold(conn, Lock::PowerClaims).await?;
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM power_ops WHERE state = 'running'")
        .fetch_one(&mut *conn)
        .await?;
    let free = (cap - running).min(max);
    if free <= 0 {
        return Ok(Vec::new());
    }
    let claimed: Vec<ClaimedOp> = sqlx::query_as(
        "WITH next AS (
           SELECT o.id FROM power_ops o
            WHERE o.state = 'queued'
              AND NOT EXISTS (SELECT 1 FROM power_ops r WHERE r.node_id = o.node_id AND r.state = 'running')
              AND NOT EXISTS (SELECT 1 FROM power_ops e WHERE e.node_id = o.node_id AND e.state = 'queued'
                                AND (e.queued_at, e.id) < (o.queued_at, o.id))
            ORDER BY o.queued_at, o.id LIMIT $1)
         UPDATE power_ops o SET state = 'running', worker = $2, worker_lease = $3,
                started_at = now(), heartbeat_at = now(), attempts = o.attempts + 1
           FROM next, nodes n
          WHERE o.id = next.id AND n.id = o.node_id
         RETURNING o.id, o.node_id, n.name AS node, o.action, o.force, o.sent_at IS NOT NULL AS sent",
    )
    .bind(free)
    .bind(worker)
    .bind(lease)
    .fetch_all(&mut *conn)
    .await?;
    let actor = Actor(worker.to_string());
    for op in &claimed {
        let op = get(conn, op.id).await?;
        changed(conn, &actor, &op).await?;
    }
    Ok(claimed)
}

/// Records that the BMC accepted the operation's change.
pub async fn mark_sent(pool: &PgPool, id: i64) -> Result<()> {
    sqlx::query("UPDATE power_ops SET sent_at = now() WHERE id = $1 AND state = 'running'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Keeps the worker's running operations from looking hung.
pub async fn heartbeat(pool: &PgPool, worker: &str, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE power_ops SET heartbeat_at = now()
          WHERE id = ANY($1) AND worker = $2 AND state = 'running'",
    )
    .bind(ids)
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a running operation of `worker`: done, or failed with `reason`. `false` when the
/// operation was no longer the worker's (taken back meanwhile).
pub async fn finish(
    conn: &mut PgConnection,
    worker: &str,
    id: i64,
    succeeded: bool,
    reason: &str,
) -> Result<bool> {
    let ended = sqlx::query(
        "UPDATE power_ops SET state = $3, reason = $4, finished_at = now(), worker = NULL,
                worker_lease = NULL, heartbeat_at = NULL
          WHERE id = $1 AND worker = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(if succeeded { "done" } else { "failed" })
    .bind(reason)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if ended {
        let op = get(conn, id).await?;
        changed(conn, &Actor(worker.to_string()), &op).await?;
        events::notify(conn, CHANNEL_POWER).await?;
    }
    Ok(ended)
}

/// Takes back running operations whose worker is gone (its lease's session ended, once the
/// leases have settled for `settled_after`: see `runs::lease_gone`) or hung (no heartbeat
/// for `orphaned_after`), or all of `worker`'s when given (it is stopping):
/// queued again to be finished by any worker, or failed after [`MAX_ATTEMPTS`]. Returns how
/// many.
pub async fn take_back(
    conn: &mut PgConnection,
    orphaned_after: std::time::Duration,
    settled_after: std::time::Duration,
    worker: Option<&str>,
) -> Result<usize> {
    let lost: Vec<(i64, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, attempts FROM power_ops
          WHERE state = 'running'
            AND (worker = $2 OR ($2::text IS NULL AND (({})
                 OR heartbeat_at < now() - make_interval(secs => $1))))
          FOR UPDATE SKIP LOCKED",
        lease_gone("$3")
    )))
    .bind(orphaned_after.as_secs_f64())
    .bind(worker)
    .bind(settled_after.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    for (id, attempts) in &lost {
        let gave_up = *attempts >= MAX_ATTEMPTS;
        let reason = if gave_up {
            format!("its worker stopped {attempts} times before it ended; ask again")
        } else {
            "its worker stopped; another one finishes it".to_string()
        };
        sqlx::query(
            "UPDATE power_ops SET state = CASE WHEN $2 THEN 'failed' ELSE 'queued' END,
                    finished_at = CASE WHEN $2 THEN now() END, reason = $3,
                    worker = NULL, worker_lease = NULL, started_at = NULL, heartbeat_at = NULL
              WHERE id = $1",
        )
        .bind(id)
        .bind(gave_up)
        .bind(&reason)
        .execute(&mut *conn)
        .await?;
        let op = get(conn, *id).await?;
        changed(conn, &Actor::system(), &op).await?;
    }
    if !lost.is_empty() {
        events::notify(conn, CHANNEL_POWER).await?;
    }
    Ok(lost.len())
}
