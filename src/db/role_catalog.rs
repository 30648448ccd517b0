//! Loads the role catalog binding works from.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::error::Result;
use crate::domain::role_catalog::{RoleCatalog, RoleInfo};

#[derive(sqlx::FromRow)]
struct RoleRow {
    id: i64,
    name: String,
    jig: String,
    jig_active: bool,
    jig_client_role: Option<String>,
    implicit: bool,
    cluster: bool,
    is_abstract: bool,
    destructive: bool,
    requires: Vec<String>,
    provides: Vec<String>,
    conflicts: Vec<String>,
    wants_attribs: Vec<String>,
}

pub async fn load(conn: &mut PgConnection) -> Result<RoleCatalog> {
    let roles: Vec<RoleRow> = sqlx::query_as(
        "SELECT r.id, r.name, j.name AS jig, j.active AS jig_active, j.client_role AS jig_client_role,
                r.implicit, r.cluster, r.abstract AS is_abstract, r.destructive,
                r.requires, r.provides, r.conflicts, r.wants_attribs
           FROM roles r JOIN jigs j ON j.id = r.jig_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let owners: Vec<(String, String)> =
        sqlx::query_as("SELECT a.name, r.name FROM attribs a JOIN roles r ON r.id = a.role_id")
            .fetch_all(&mut *conn)
            .await?;
    Ok(RoleCatalog::new(
        roles.into_iter().map(|r| RoleInfo {
            id: r.id,
            name: r.name,
            jig: r.jig,
            jig_active: r.jig_active,
            jig_client_role: r.jig_client_role,
            implicit: r.implicit,
            cluster: r.cluster,
            is_abstract: r.is_abstract,
            destructive: r.destructive,
            requires: r.requires,
            provides: r.provides,
            conflicts: r.conflicts,
            wants_attribs: r.wants_attribs,
        }),
        owners.into_iter().collect::<HashMap<_, _>>(),
    ))
}
