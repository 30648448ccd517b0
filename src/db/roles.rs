//! The catalog as the API reads it: barclamps, jigs and roles (imported from barclamp
//! documents), plus the one thing an admin may change there: a jig's `active` and
//! `description`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    keys::fetch_by_key,
};
use crate::domain::key::Key;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Barclamp {
    pub id: i64,
    pub name: String,
    pub parent: Option<String>,
    pub description: String,
    pub source: String,
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A single barclamp, with the document it was imported from.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BarclampDetail {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub barclamp: Barclamp,
    pub document: Value,
}

const SELECT_BARCLAMP: &str = "
    SELECT b.id, b.name, b.parent, b.description, b.source, b.content_hash, b.created_at,
           b.updated_at, b.document
      FROM barclamps b";

pub async fn list_barclamps(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<Barclamp>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_BARCLAMP} ORDER BY b.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get_barclamp(conn: &mut PgConnection, key: &Key) -> Result<BarclampDetail> {
    fetch_by_key(
        conn,
        format!("{SELECT_BARCLAMP} WHERE b.id = $1 OR b.name = $2"),
        key,
        "barclamp",
    )
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Jig {
    pub id: i64,
    pub name: String,
    pub barclamp: String,
    pub barclamp_id: i64,
    pub description: String,
    pub active: bool,
    pub client_role: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT_JIG: &str = "
    SELECT j.id, j.name, b.name AS barclamp, j.barclamp_id, j.description, j.active,
           j.client_role, j.created_at, j.updated_at
      FROM jigs j JOIN barclamps b ON b.id = j.barclamp_id";

pub async fn list_jigs(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<Jig>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_JIG} ORDER BY j.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get_jig(conn: &mut PgConnection, key: &Key) -> Result<Jig> {
    fetch_by_key(
        conn,
        format!("{SELECT_JIG} WHERE j.id = $1 OR j.name = $2"),
        key,
        "jig",
    )
    .await
}

/// Changes to a jig. `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct JigUpdate {
    pub active: Option<bool>,
    pub description: Option<String>,
}

/// Activates or deactivates a jig (noderoles on an inactive jig are not scheduled, §5) or
/// changes its description. Activation wakes the annealer.
pub async fn update_jig(
    conn: &mut PgConnection,
    key: &Key,
    update: &JigUpdate,
    actor: &Actor,
) -> Result<Jig> {
    let (id, name) = key.parts();
    let (id, active, description): (i64, bool, String) = sqlx::query_as(
        "SELECT id, active, description FROM jigs WHERE id = $1 OR name = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("jig", key))?;
    let mut changes = serde_json::Map::new();
    if let Some(to) = update.active
        && to != active
    {
        changes.insert("active".into(), json!({"from": active, "to": to}));
    }
    if let Some(to) = &update.description
        && *to != description
    {
        changes.insert("description".into(), json!({"from": description, "to": to}));
    }
    if !changes.is_empty() {
        sqlx::query(
            "UPDATE jigs SET active = coalesce($2, active), description = coalesce($3, description)
              WHERE id = $1",
        )
        .bind(id)
        .bind(update.active)
        .bind(&update.description)
        .execute(&mut *conn)
        .await?;
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "jig.updated",
                data: json!({"id": id, "changes": changes}),
                ..Default::default()
            },
        )
        .await?;
        events::notify(conn, events::CHANNEL_ANNEAL).await?;
    }
    get_jig(conn, &Key::Id(id)).await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Role {
    pub id: i64,
    pub name: String,
    pub barclamp: String,
    pub barclamp_id: i64,
    pub jig: String,
    pub jig_id: i64,
    pub description: String,
    /// The flags set on the role: implicit, bootstrap, discovery, cluster, destructive,
    /// abstract, milestone, powersave, service.
    pub flags: Vec<String>,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub wants_attribs: Vec<String>,
    pub template: Value,
    pub timeout: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT_ROLE: &str = "
    SELECT r.id, r.name, b.name AS barclamp, r.barclamp_id, j.name AS jig, r.jig_id, r.description,
           array_remove(ARRAY[
               CASE WHEN r.implicit THEN 'implicit' END, CASE WHEN r.bootstrap THEN 'bootstrap' END,
               CASE WHEN r.discovery THEN 'discovery' END, CASE WHEN r.cluster THEN 'cluster' END,
               CASE WHEN r.destructive THEN 'destructive' END, CASE WHEN r.abstract THEN 'abstract' END,
               CASE WHEN r.milestone THEN 'milestone' END, CASE WHEN r.powersave THEN 'powersave' END,
               CASE WHEN r.service THEN 'service' END], NULL) AS flags,
           r.requires, r.provides, r.conflicts, r.wants_attribs, r.template,
           r.timeout_secs AS timeout, r.created_at, r.updated_at
      FROM roles r JOIN barclamps b ON b.id = r.barclamp_id JOIN jigs j ON j.id = r.jig_id";

/// Filters of a role listing (by barclamp or jig name).
#[derive(Debug, Clone, Default)]
pub struct RoleFilter {
    pub barclamp: Option<String>,
    pub jig: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list_roles(pool: &PgPool, f: &RoleFilter) -> Result<Vec<Role>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ROLE}
          WHERE ($1::text IS NULL OR b.name = $1 OR b.id::text = $1)
            AND ($2::text IS NULL OR j.name = $2 OR j.id::text = $2)
          ORDER BY r.id LIMIT $3 OFFSET $4"
    )))
    .bind(&f.barclamp)
    .bind(&f.jig)
    .bind(f.limit)
    .bind(f.offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get_role(conn: &mut PgConnection, key: &Key) -> Result<Role> {
    fetch_by_key(
        conn,
        format!("{SELECT_ROLE} WHERE r.id = $1 OR r.name = $2"),
        key,
        "role",
    )
    .await
}

pub async fn role_id(conn: &mut PgConnection, key: &Key) -> Result<i64> {
    let (id, name) = key.parts();
    sqlx::query_scalar("SELECT id FROM roles WHERE id = $1 OR name = $2")
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("role", key))
}
