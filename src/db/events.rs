//! The event log: audit trail, node history and the event stream's replay source.
//! Events are written in the same transaction as the change they describe.

use serde_json::Value;
use sqlx::PgConnection;

/// Wakes annealers: something may have become runnable.
pub const CHANNEL_ANNEAL: &str = "crowbar_anneal";
/// Wakes runners: runs were queued.
pub const CHANNEL_RUNS: &str = "crowbar_runs";
/// Wakes event-stream readers.
pub const CHANNEL_EVENTS: &str = "crowbar_events";

/// Who made a change: `admin:<token>`, `node:<name>`, `annealer`, `probe`, `system`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn system() -> Self {
        Actor("system".into())
    }
    pub fn annealer() -> Self {
        Actor("annealer".into())
    }
    pub fn admin(name: &str) -> Self {
        Actor(format!("admin:{name}"))
    }
    pub fn node(name: &str) -> Self {
        Actor(format!("node:{name}"))
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub kind: &'static str,
    pub reason: String,
    pub node_id: Option<i64>,
    pub noderole_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub run_id: Option<i64>,
    pub data: Value,
}

pub async fn record(conn: &mut PgConnection, actor: &Actor, event: NewEvent) -> sqlx::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO events (type, actor, reason, node_id, noderole_id, deployment_id, run_id, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(event.kind)
    .bind(&actor.0)
    .bind(&event.reason)
    .bind(event.node_id)
    .bind(event.noderole_id)
    .bind(event.deployment_id)
    .bind(event.run_id)
    .bind(if event.data.is_null() {
        Value::Object(Default::default())
    } else {
        event.data
    })
    .fetch_one(&mut *conn)
    .await?;
    notify(conn, CHANNEL_EVENTS).await?;
    Ok(id)
}

/// Queues a NOTIFY, delivered when the transaction commits (and coalesced with equal ones).
pub async fn notify(conn: &mut PgConnection, channel: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a `node_role.updated` event for each given noderole, with its new state, in one
/// statement; used by every set-based state change.
pub async fn noderoles_changed(
    conn: &mut PgConnection,
    actor: &Actor,
    reason: &str,
    ids: &[i64],
) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO events (type, actor, reason, node_id, noderole_id, deployment_id, data)
         SELECT 'node_role.updated', $1, $2, nr.node_id, nr.id, nr.deployment_id,
                jsonb_build_object('id', nr.id, 'state', nr.state, 'node_id', nr.node_id,
                                   'role_id', nr.role_id, 'run_count', nr.run_count,
                                   'deployment_committed', d.state = 'committed')
           FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id
          WHERE nr.id = ANY($3) ORDER BY nr.id",
    )
    .bind(&actor.0)
    .bind(reason)
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    notify(conn, CHANNEL_EVENTS).await
}

/// A recorded event, as history and the event stream show it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub reason: String,
    pub data: Value,
}
