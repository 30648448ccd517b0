//! Deployment roles: a role's data for one deployment, layered over the role's template and
//! under noderole data (SEMANTICS.md §8). Edits go to the proposed data at any time — like
//! bindings, they wait for the deployment's next commit, which makes them the committed data
//! (jigs see only committed data).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::{
    deployments,
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    paging::{PagedQuery, Window},
};
use crate::domain::key::Key;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeploymentRole {
    pub id: i64,
    pub deployment: String,
    pub deployment_id: i64,
    pub role: String,
    pub role_id: i64,
    /// What the next commit makes current.
    pub proposed_data: Value,
    /// What jigs see now.
    pub committed_data: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "
    SELECT dr.id, d.name AS deployment, dr.deployment_id, r.name AS role, dr.role_id,
           dr.proposed_data, dr.committed_data, dr.created_at, dr.updated_at
      FROM deployment_roles dr
      JOIN deployments d ON d.id = dr.deployment_id
      JOIN roles r ON r.id = dr.role_id";

#[derive(Debug, Clone, Default)]
pub struct DeploymentRoleFilter {
    /// Deployment id or name.
    pub deployment: Option<String>,
    /// Role id or name.
    pub role: Option<String>,
    pub window: Window,
}

pub async fn list(pool: &PgPool, f: &DeploymentRoleFilter) -> Result<Vec<DeploymentRole>> {
    let mut query = PagedQuery::new("deployment_roles");
    query
        .refers_to("deployment_id", "deployments", f.deployment.clone())
        .refers_to("role_id", "roles", f.role.clone());
    query.rows(pool, f.window, SELECT, "dr").await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<DeploymentRole> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE dr.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("deployment role", id))
}

fn check_data(data: &Value) -> Result<()> {
    if data.is_object() {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_data",
            "deployment role data must be a JSON object",
        ))
    }
}

/// Adds a role to a deployment (with data, or none); it takes effect at the next commit.
pub async fn create(
    conn: &mut PgConnection,
    deployment: &Key,
    role: &Key,
    data: &Value,
    actor: &Actor,
) -> Result<DeploymentRole> {
    check_data(data)?;
    let deployment_id = deployments::lock_id(conn, deployment).await?;
    let role_id = super::roles::role_id(conn, role).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployment_roles (deployment_id, role_id, proposed_data)
         VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(deployment_id)
    .bind(role_id)
    .bind(data)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::from_constraint)?;
    changed(conn, actor, "deployment_role.created", deployment_id, id).await?;
    get(conn, id).await
}

/// Replaces a deployment role's proposed data.
pub async fn set_data(
    conn: &mut PgConnection,
    id: i64,
    data: &Value,
    actor: &Actor,
) -> Result<DeploymentRole> {
    check_data(data)?;
    let deployment_id: i64 =
        sqlx::query_scalar("SELECT deployment_id FROM deployment_roles WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::not_found("deployment role", id))?;
    deployments::lock_id(conn, &Key::Id(deployment_id)).await?;
    let updated = sqlx::query(
        "UPDATE deployment_roles SET proposed_data = $2 WHERE id = $1 AND proposed_data <> $2",
    )
    .bind(id)
    .bind(data)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated > 0 {
        changed(conn, actor, "deployment_role.updated", deployment_id, id).await?;
    }
    get(conn, id).await
}

/// Changes a role's proposed data in a deployment with `change`, adding the role to the
/// deployment first when it is not there (same rules as [`create`] and [`set_data`]).
pub async fn edit_proposed(
    conn: &mut PgConnection,
    deployment: &Key,
    role: &Key,
    actor: &Actor,
    change: impl FnOnce(&mut Value),
) -> Result<DeploymentRole> {
    let deployment_id = deployments::lock_id(conn, deployment).await?;
    let role_id = super::roles::role_id(conn, role).await?;
    let existing: Option<(i64, Value)> = sqlx::query_as(
        "SELECT id, proposed_data FROM deployment_roles
          WHERE deployment_id = $1 AND role_id = $2 FOR UPDATE",
    )
    .bind(deployment_id)
    .bind(role_id)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some((id, mut data)) => {
            change(&mut data);
            set_data(conn, id, &data, actor).await
        }
        None => {
            let mut data = json!({});
            change(&mut data);
            create(
                conn,
                &Key::Id(deployment_id),
                &Key::Id(role_id),
                &data,
                actor,
            )
            .await
        }
    }
}

async fn changed(
    conn: &mut PgConnection,
    actor: &Actor,
    kind: &'static str,
    deployment_id: i64,
    id: i64,
) -> Result<()> {
    events::record(
        conn,
        actor,
        NewEvent {
            kind,
            deployment_id: Some(deployment_id),
            data: json!({"id": id, "deployment_id": deployment_id}),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
