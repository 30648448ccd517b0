//! The event log: audit trail, node history and the event stream's replay source.
//! Events are written in the same transaction as the change they describe.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::error::Result;

/// Wakes annealers: something may have become runnable.
pub const CHANNEL_ANNEAL: &str = "crowbar_anneal";
/// Wakes runners: runs were queued.
pub const CHANNEL_RUNS: &str = "crowbar_runs";
/// Wakes event-stream readers.
pub const CHANNEL_EVENTS: &str = "crowbar_events";

/// Who made a change: `token:<name>`, `user:<name>`, `node:<name>`, `annealer`, `probe`, `system`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn system() -> Self {
        Actor("system".into())
    }
    pub fn annealer() -> Self {
        Actor("annealer".into())
    }
    /// An API token (or a UI session opened with one), by the token's name.
    pub fn token(name: &str) -> Self {
        Actor(format!("token:{name}"))
    }
    pub fn node(name: &str) -> Self {
        Actor(format!("node:{name}"))
    }
    /// A node acting for itself (with its own token).
    pub fn is_node(&self) -> bool {
        self.0.starts_with("node:")
    }
    /// A web UI user logged in with a password.
    pub fn user(name: &str) -> Self {
        Actor(format!("user:{name}"))
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

pub async fn record(conn: &mut PgConnection, actor: &Actor, event: NewEvent) -> Result<i64> {
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

/// Asks the probers to check one node now (payload: the node's id): it was created or given
/// an address, or reported itself alive.
pub const CHANNEL_PROBE: &str = "crowbar_probe";

/// Asks for a probe of `node_id` when the transaction commits ([`CHANNEL_PROBE`]).
pub async fn ask_probe(conn: &mut PgConnection, node_id: i64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2::text)")
        .bind(CHANNEL_PROBE)
        .bind(node_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues a NOTIFY, delivered when the transaction commits (and coalesced with equal ones).
pub async fn notify(conn: &mut PgConnection, channel: &str) -> Result<()> {
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
) -> Result<()> {
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
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub reason: String,
    pub data: Value,
}

/// Announces that events were numbered: event-stream readers of every daemon look again.
pub const CHANNEL_SEQUENCED: &str = "crowbar_events_sequenced";

/// The `installation` row holding the highest `seq` assigned (and serving as the lock).
const SEQ_KEY: &str = "events.seq";

/// An event waiting for its number, as `events_pending` notes it.
#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    node_id: Option<i64>,
    /// Not a worker's: it may make work runnable (see [`changes_since`]).
    wakes: bool,
    /// It concerns a jig.
    jig: bool,
}

/// Numbers pending events (`event_order`, see migrations 0002 and 0011) for the stream and
/// the hooks: every committed event not numbered yet, in event-id order, continuing the
/// gap-free sequence. One sequencer at a time: when another daemon holds the lock this
/// returns 0 at once (that daemon numbers them). Returns how many events it numbered; when
/// it numbered any, readers are told on [`CHANNEL_SEQUENCED`].
///
/// Why this is gap-free without waiting for older transactions: numbers are only ever given
/// by the one sequencer, to events its snapshot sees committed. An event whose transaction
/// commits late simply gets a later number; nothing before it can appear afterwards. So
/// `seq` is commit order (by batch), and a long transaction elsewhere on the server delays
/// nothing but its own events. Within a batch, id order: an event written after another
/// transaction committed (because it waited for that one's locks or read its rows) has the
/// higher id, so causally ordered changes of one object keep their order.
pub async fn sequence_pending(pool: &PgPool, batch: i64) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let Some(high): Option<i64> = sqlx::query_scalar(
        "SELECT (value #>> '{}')::bigint FROM installation WHERE key = $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(SEQ_KEY)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(0);
    };
    // The oldest pending events are taken by walking the index in id order, however many
    // are pending: planned on statistics taken while few were (a commit can add a million
    // at once), the table looked small enough to read whole and sort on every round, and
    // an `IN (...)` delete was planned as a hash join over it, dead rows and all.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    // A fresh snapshot after taking the lock: every earlier sequencer has committed, and
    // only the holder of the lock deletes from `events_pending`.
    let mut pending: Vec<Pending> = sqlx::query_as(
        "DELETE FROM events_pending
          WHERE id = ANY(ARRAY(SELECT id FROM events_pending ORDER BY id LIMIT $1))
          RETURNING id, node_id, wakes, jig",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    pending.sort_unstable_by_key(|p| p.id);
    let numbers: Vec<i64> = (high + 1..).take(pending.len()).collect();
    let top = high + pending.len() as i64;
    let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
    sqlx::query(
        "INSERT INTO event_order (seq, event_id)
         SELECT * FROM unnest($1::bigint[], $2::bigint[])",
    )
    .bind(&numbers)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // what the annealer reads ([`changes_since`]): the events that may make work runnable
    let (mut seqs, mut nodes, mut jigs) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, p) in numbers.iter().zip(&pending).filter(|(_, p)| p.wakes) {
        seqs.push(*seq);
        nodes.push(p.node_id);
        jigs.push(p.jig);
    }
    if !seqs.is_empty() {
        sqlx::query(
            "INSERT INTO anneal_changes (seq, node_id, jig)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[])",
        )
        .bind(&seqs)
        .bind(&nodes)
        .bind(&jigs)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE installation SET value = to_jsonb($2::bigint) WHERE key = $1")
        .bind(SEQ_KEY)
        .bind(top)
        .execute(&mut *tx)
        .await?;
    notify(&mut tx, CHANNEL_SEQUENCED).await?;
    tx.commit().await?;
    // every PENDING_VACUUM_EVERY numbers, by whichever daemon gives the one that crosses
    if high / PENDING_VACUUM_EVERY != top / PENDING_VACUUM_EVERY {
        vacuum_pending(pool).await;
    }
    Ok(pending.len())
}

/// Events numbered (and so taken out of `events_pending`) between two vacuums of it.
pub const PENDING_VACUUM_EVERY: i64 = 20_000;

/// Vacuums `events_pending`; the sequencer does once every [`PENDING_VACUUM_EVERY`] events
/// it numbers.
///
/// Every round walks the table's index from its lowest id, the oldest events first, and a
/// deleted entry stays in the index until a vacuum takes it out: between two vacuums every
/// round steps over all the entries deleted since the last one. Autovacuum comes by once a
/// minute at best (`autovacuum_naptime`), while an anneal deletes thousands of entries a
/// second, so rounds grew slower the longer the anneal ran (a third of the sequencer's time
/// at 10,000 × 10). The table holds only what is not numbered yet, so its vacuum is short.
/// A vacuum that fails (or finds another one at work) is only logged: the next one comes.
async fn vacuum_pending(pool: &PgPool) {
    if let Err(e) = sqlx::raw_sql("VACUUM (SKIP_LOCKED) events_pending")
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "vacuuming events_pending failed; the next round tries again");
    }
}

/// What the event log says changed since `seq`, for the annealer: the nodes named by
/// events after it (and by committed events not numbered yet), whether a jig changed (which
/// may make any node runnable), and how far that reading went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub nodes: Vec<i64>,
    pub jigs_changed: bool,
    /// The highest `seq` read (the next reading starts after it).
    pub seq: i64,
}

/// The changes recorded since `seq`, except those of workers (a run's start and finish):
/// a completion queues what it made runnable itself ([`super::runs::complete`]). Events not
/// numbered yet are read too, and read again once numbered; reading is idempotent, and
/// nothing committed is missed, since `seq` is given in commit order. One statement, one
/// snapshot: the sequencer moves an event from pending to numbered atomically, so it is
/// read in one of the two places. Only the events noted for the annealer are read
/// (`anneal_changes`, migration 0012), never the event rows themselves.
pub async fn changes_since(conn: &mut PgConnection, seq: i64) -> Result<Changes> {
    let (nodes, jigs_changed, top): (Vec<i64>, bool, Option<i64>) = sqlx::query_as(
        "WITH fresh AS (SELECT node_id, jig FROM anneal_changes WHERE seq > $1
                        UNION ALL SELECT node_id, jig FROM events_pending WHERE wakes)
         SELECT coalesce(array_agg(DISTINCT node_id) FILTER (WHERE node_id IS NOT NULL), '{}'),
                coalesce(bool_or(jig), false),
                (SELECT max(seq) FROM event_order WHERE seq > $1)
           FROM fresh",
    )
    .bind(seq)
    .fetch_one(conn)
    .await?;
    Ok(Changes {
        nodes,
        jigs_changed,
        seq: top.unwrap_or(seq).max(seq),
    })
}

/// The highest `seq` assigned so far (0 before the first): where a new stream starts.
pub async fn last_seq(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT (value #>> '{}')::bigint FROM installation WHERE key = $1",
    )
    .bind(SEQ_KEY)
    .fetch_optional(pool)
    .await?
    .flatten()
    .unwrap_or(0))
}

/// The lowest `seq` still kept, or `None` when every numbered event has expired.
pub async fn first_seq(pool: &PgPool) -> Result<Option<i64>> {
    // the join skips numbers whose events expired (see [`expire`])
    Ok(sqlx::query_scalar(
        "SELECT o.seq FROM event_order o JOIN events e ON e.id = o.event_id
          ORDER BY o.seq LIMIT 1",
    )
    .fetch_optional(pool)
    .await?)
}

/// Which events a stream delivers; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    pub types: Option<Vec<String>>,
    pub deployment_id: Option<i64>,
    pub node_id: Option<i64>,
    /// A snapshot from [`snapshot`]: events it already saw (committed before it was taken)
    /// are skipped, for streams that start "now" while numbering lags behind commits.
    pub unseen_by: Option<String>,
}

/// The current snapshot (`pg_current_snapshot()` as text), for [`StreamFilter::unseen_by`].
pub async fn snapshot(pool: &PgPool) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_snapshot()::text")
        .fetch_one(pool)
        .await?)
}

/// An event as the stream delivers it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamEvent {
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub reason: String,
    pub node_id: Option<i64>,
    pub noderole_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub run_id: Option<i64>,
    pub data: Value,
}

/// Up to `limit` numbered events after `seq` that pass `filter`, in `seq` order.
pub async fn after(
    pool: &PgPool,
    seq: i64,
    filter: &StreamFilter,
    limit: i64,
) -> Result<Vec<StreamEvent>> {
    Ok(sqlx::query_as(
        "SELECT o.seq, type, at, actor, reason, node_id, noderole_id, deployment_id, run_id, data
           FROM event_order o JOIN events e ON e.id = o.event_id
          WHERE o.seq > $1
            AND ($2::text[] IS NULL OR type = ANY($2))
            AND ($3::bigint IS NULL OR deployment_id = $3)
            AND ($4::bigint IS NULL OR node_id = $4)
            AND ($6::pg_snapshot IS NULL OR NOT pg_visible_in_snapshot(txid, $6::pg_snapshot))
          ORDER BY o.seq LIMIT $5",
    )
    .bind(seq)
    .bind(&filter.types)
    .bind(filter.deployment_id)
    .bind(filter.node_id)
    .bind(limit)
    .bind(&filter.unseen_by)
    .fetch_all(pool)
    .await?)
}

/// Deletes numbered events recorded more than `keep` ago, in batches, and then the numbers
/// before the first event kept; returns how many events. Events not yet numbered are kept
/// until they are (and streamed).
pub async fn expire(pool: &PgPool, keep: std::time::Duration) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events e
                  WHERE at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT FROM events_pending p WHERE p.id = e.id)
                  LIMIT 10000)",
        )
        .bind(keep.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < 10000 {
            break;
        }
    }
    // The numbers (and the annealer's notes) before the first event kept go too. An event
    // that was slow to commit has a later number than younger ones and may expire before
    // them: its number stays (readers join, so it is skipped) until the front passes it.
    // `last` is read first: a number given after it is above it, so never deleted here.
    let last = last_seq(pool).await?;
    let front = first_seq(pool).await?.unwrap_or(last + 1);
    for delete in [
        "DELETE FROM event_order WHERE seq < $1",
        "DELETE FROM anneal_changes WHERE seq < $1",
    ] {
        sqlx::query(delete).bind(front).execute(pool).await?;
    }
    Ok(deleted)
}
