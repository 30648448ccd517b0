//! The audit trail: who changed what, when, from where (docs/access.md "Audit trail").
//!
//! A change's record is written with [`record`] inside the change's own transaction, so a
//! change that rolls back leaves none. Records copy names rather than reference rows:
//! they outlive what they name. Old records are deleted in batches ([`expire`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use super::error::Result;

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// `node`, `deployment`, `noderole`, `user`, ...
    pub kind: &'static str,
    pub id: Option<i64>,
    pub name: Option<String>,
}

impl Object {
    pub fn new(kind: &'static str, id: i64, name: impl Into<String>) -> Object {
        Object {
            kind,
            id: Some(id),
            name: Some(name.into()),
        }
    }

    /// An object known by id only (noderoles, runs).
    pub fn id(kind: &'static str, id: i64) -> Object {
        Object {
            kind,
            id: Some(id),
            name: None,
        }
    }

    /// An object known by name only (a route, a setting).
    pub fn named(kind: &'static str, name: impl Into<String>) -> Object {
        Object {
            kind,
            id: None,
            name: Some(name.into()),
        }
    }
}

/// Who made a change, from where, doing what: everything of a record but its object.
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: String,
    pub role: Option<&'static str>,
    pub source: Option<IpAddr>,
    pub request_id: Option<String>,
    /// `<kind>.<verb>`, e.g. `deployment.commit`.
    pub action: &'static str,
}

/// Longest name kept of an object (longer ones are cut at a character boundary).
const MAX_OBJECT_NAME: usize = 300;
/// Longest summary kept; a larger one is replaced by a note saying so.
const MAX_SUMMARY: usize = 16 * 1024;

/// Writes the record of `who` changing `object` in the caller's transaction.
pub async fn record(
    conn: &mut PgConnection,
    who: &Who,
    object: &Object,
    summary: &Value,
) -> Result<()> {
    let name = object.name.as_deref().map(|n| cut(n, MAX_OBJECT_NAME));
    let summary = if summary.to_string().len() > MAX_SUMMARY {
        serde_json::json!({ "truncated": "the summary was larger than 16 KiB" })
    } else {
        summary.clone()
    };
    sqlx::query(
        "INSERT INTO audit (actor, role, source, request_id, action, kind, object_id, object, summary)
         VALUES ($1, $2, $3::inet, $4, $5, $6, $7, $8, $9)",
    )
    .bind(cut(&who.actor, 200))
    .bind(who.role)
    .bind(who.source.map(|a| a.to_string()))
    .bind(who.request_id.as_deref())
    .bind(who.action)
    .bind(object.kind)
    .bind(object.id)
    .bind(name)
    .bind(summary)
    .execute(conn)
    .await?;
    Ok(())
}

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An audit record as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = AuditRecord)]
pub struct Record {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `token:<name>`, `user:<name>`, `node:<name>`, `anonymous` (refused requests) or
    /// `system`.
    pub actor: String,
    /// The caller's role when it acted; null for nodes.
    pub role: Option<String>,
    /// The address the request came from, when known.
    pub source: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// `<kind>.<verb>`, e.g. `deployment.commit`; `request.refused` for a 401 or 403.
    pub action: String,
    pub kind: String,
    pub object_id: Option<i64>,
    /// The object's name when the change was made.
    pub object: Option<String>,
    /// What changed (for a commit: the snapshot and the plan's counts).
    #[schema(value_type = Object)]
    pub summary: Value,
}

/// Which records to list; every field given narrows it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub kind: Option<String>,
    /// The object's id (digits) or name.
    pub object: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub request_id: Option<String>,
    /// Only records older than this one (the cursor: the last id of the page before).
    pub before: Option<i64>,
}

/// Records matching `filter`, newest first, at most `limit`.
pub async fn list(pool: &PgPool, filter: &Filter, limit: i64) -> Result<Vec<Record>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, at, actor, role, host(source) AS source, request_id, action, kind,
                object_id, object, summary
           FROM audit WHERE true",
    );
    let equal = |q: &mut QueryBuilder<Postgres>, column: &str, value: &Option<String>| {
        if let Some(value) = value {
            q.push(format!(" AND {column} = "));
            q.push_bind(value.clone());
        }
    };
    equal(&mut q, "actor", &filter.actor);
    equal(&mut q, "kind", &filter.kind);
    equal(&mut q, "action", &filter.action);
    equal(&mut q, "request_id", &filter.request_id);
    if let Some(object) = &filter.object {
        match object.parse::<i64>() {
            Ok(id) => {
                q.push(" AND (object_id = ");
                q.push_bind(id);
                q.push(" OR object = ");
                q.push_bind(object.clone());
                q.push(")");
            }
            Err(_) => {
                q.push(" AND object = ");
                q.push_bind(object.clone());
            }
        }
    }
    if let Some(since) = filter.since {
        q.push(" AND at >= ");
        q.push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND at < ");
        q.push_bind(until);
    }
    if let Some(before) = filter.before {
        q.push(" AND id < ");
        q.push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ");
    q.push_bind(limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// Most records deleted per statement while expiring, so no statement holds many locks
/// or runs long.
pub const EXPIRE_BATCH: i64 = 10_000;

/// Deletes records older than `keep`, [`EXPIRE_BATCH`] at a time; returns how many went.
pub async fn expire(pool: &PgPool, keep: std::time::Duration) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM audit WHERE id IN (
                 SELECT id FROM audit WHERE at < now() - make_interval(secs => $1)
                  ORDER BY at LIMIT $2)",
        )
        .bind(keep.as_secs_f64())
        .bind(EXPIRE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < EXPIRE_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn names_are_cut_at_character_boundaries() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("aé", 2), "a");
    }
}
