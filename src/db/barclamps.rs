//! Stored barclamps: the catalog validation needs, and applying a validated import plan.
//!
//! Callers run [`lock_imports`], [`load_catalog`], validation (in `domain`) and [`apply`] in
//! one transaction, so imports from several daemons are serialized and each one validates
//! against what is really stored. A refused import is [`Error::RolesInUse`] (before
//! anything is written) or [`Error::Constraint`] (a concurrent writer broke a constraint).

use sqlx::PgConnection;

use super::error::{Error, Result};
use crate::domain::barclamp::{
    Barclamp, Change, Flag, ImportPlan, RemovedItem, Role, RoleInUse, StoredAttrib, StoredBarclamp,
    StoredContent, StoredJig, StoredRole,
};

/// Waits for, and holds until the transaction ends, the lock serializing imports.
pub async fn lock_imports(conn: &mut PgConnection) -> Result<()> {
    super::locks::hold(conn, super::locks::Lock::Imports).await
}

/// Every stored barclamp, jig, role and attrib, as validation needs them.
#[tracing::instrument(skip_all)]
pub async fn load_catalog(conn: &mut PgConnection) -> Result<StoredContent> {
    let mut catalog = StoredContent::default();

    let barclamps: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT name, parent, content_hash FROM barclamps")
            .fetch_all(&mut *conn)
            .await?;
    for (name, parent, content_hash) in barclamps {
        catalog.barclamps.insert(
            name,
            StoredBarclamp {
                parent,
                content_hash,
            },
        );
    }

    let jigs: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT j.name, b.name, j.client_role
           FROM jigs j JOIN barclamps b ON b.id = j.barclamp_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, barclamp, client_role) in jigs {
        catalog.jigs.insert(
            name,
            StoredJig {
                barclamp,
                client_role,
            },
        );
    }

    type RoleRow = (
        String,
        String,
        String,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    );
    let roles: Vec<RoleRow> = sqlx::query_as(
        "SELECT r.name, b.name, j.name, r.requires, r.provides, r.wants_attribs
           FROM roles r
           JOIN barclamps b ON b.id = r.barclamp_id
           JOIN jigs j ON j.id = r.jig_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, barclamp, jig, requires, provides, wants_attribs) in roles {
        catalog.roles.insert(
            name,
            StoredRole {
                barclamp,
                jig,
                requires,
                provides,
                wants_attribs,
            },
        );
    }

    let attribs: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT a.name, b.name, r.name
           FROM attribs a
           JOIN barclamps b ON b.id = a.barclamp_id
           LEFT JOIN roles r ON r.id = a.role_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, barclamp, role) in attribs {
        catalog
            .attribs
            .insert(name, StoredAttrib { barclamp, role });
    }
    Ok(catalog)
}

/// Writes a validated plan: nothing at all for unchanged barclamps; for the others their
/// rows, touching only rows whose content differs, and deletes what they dropped. Refuses
/// (before writing anything) to delete roles that noderoles or deployment roles use.
#[tracing::instrument(skip_all)]
pub async fn apply(conn: &mut PgConnection, plan: &ImportPlan) -> Result<()> {
    let changed: Vec<&Barclamp> = plan
        .barclamps
        .iter()
        .filter(|p| p.change != Change::Unchanged)
        .map(|p| &p.barclamp)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    refuse_removing_used_roles(conn, plan).await?;
    write(conn, plan, &changed)
        .await
        .map_err(Error::from_import)
}

/// The writes of [`apply`]; a constraint they break is named by [`Error::from_import`].
async fn write(
    conn: &mut PgConnection,
    plan: &ImportPlan,
    changed: &[&Barclamp],
) -> sqlx::Result<()> {
    for barclamp in changed {
        upsert_barclamp(conn, barclamp).await?;
    }
    let names =
        |items: &[RemovedItem]| -> Vec<String> { items.iter().map(|i| i.name.clone()).collect() };
    sqlx::query("DELETE FROM attribs WHERE name = ANY($1)")
        .bind(names(&plan.removed.attribs))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM roles WHERE name = ANY($1)")
        .bind(names(&plan.removed.roles))
        .execute(&mut *conn)
        .await?;
    for barclamp in changed {
        for jig in &barclamp.jigs {
            sqlx::query(
                "INSERT INTO jigs (name, barclamp_id, description, client_role)
                 VALUES ($1, (SELECT id FROM barclamps WHERE name = $2), $3, $4)
                 ON CONFLICT (name) DO UPDATE
                    SET barclamp_id = EXCLUDED.barclamp_id,
                        description = EXCLUDED.description,
                        client_role = EXCLUDED.client_role
                  WHERE (jigs.barclamp_id, jigs.description, jigs.client_role)
                        IS DISTINCT FROM
                        (EXCLUDED.barclamp_id, EXCLUDED.description, EXCLUDED.client_role)",
            )
            .bind(&jig.name)
            .bind(&barclamp.name)
            .bind(&jig.description)
            .bind(&jig.client_role)
            .execute(&mut *conn)
            .await?;
        }
    }
    for barclamp in changed {
        for role in &barclamp.roles {
            upsert_role(conn, &barclamp.name, role).await?;
        }
    }
    for barclamp in changed {
        for role in &barclamp.roles {
            for attrib in &role.attribs {
                sqlx::query(
                    "INSERT INTO attribs (name, barclamp_id, role_id, map, default_value, description)
                     VALUES ($1, (SELECT id FROM barclamps WHERE name = $2),
                             (SELECT id FROM roles WHERE name = $3), $4, $5, $6)
                     ON CONFLICT (name) DO UPDATE
                        SET barclamp_id = EXCLUDED.barclamp_id,
                            role_id = EXCLUDED.role_id,
                            map = EXCLUDED.map,
                            default_value = EXCLUDED.default_value,
                            description = EXCLUDED.description
                      WHERE (attribs.barclamp_id, attribs.role_id, attribs.map,
                             attribs.default_value, attribs.description)
                            IS DISTINCT FROM
                            (EXCLUDED.barclamp_id, EXCLUDED.role_id, EXCLUDED.map,
                             EXCLUDED.default_value, EXCLUDED.description)",
                )
                .bind(&attrib.name)
                .bind(&barclamp.name)
                .bind(&role.name)
                .bind(&attrib.map)
                .bind(&attrib.default)
                .bind(&attrib.description)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    sqlx::query("DELETE FROM jigs WHERE name = ANY($1)")
        .bind(names(&plan.removed.jigs))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn refuse_removing_used_roles(conn: &mut PgConnection, plan: &ImportPlan) -> Result<()> {
    if plan.removed.roles.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = plan.removed.roles.iter().map(|r| r.name.as_str()).collect();
    let used: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT name, noderoles, deployment_roles FROM (
            SELECT r.name,
                   (SELECT count(*) FROM noderoles n WHERE n.role_id = r.id) AS noderoles,
                   (SELECT count(*) FROM deployment_roles d WHERE d.role_id = r.id)
                     AS deployment_roles
              FROM roles r
             WHERE r.name = ANY($1)) counted
          WHERE noderoles > 0 OR deployment_roles > 0
          ORDER BY name",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    if used.is_empty() {
        return Ok(());
    }
    Err(Error::RolesInUse(
        used.into_iter()
            .filter_map(|(role, noderoles, deployment_roles)| {
                let removed = plan.removed.roles.iter().find(|r| r.name == role)?;
                Some(RoleInUse {
                    role,
                    barclamp: removed.barclamp.clone(),
                    source: removed.source.clone(),
                    noderoles,
                    deployment_roles,
                })
            })
            .collect(),
    ))
}

async fn upsert_barclamp(conn: &mut PgConnection, barclamp: &Barclamp) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO barclamps (name, parent, description, source, content_hash, document)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE
            SET parent = EXCLUDED.parent,
                description = EXCLUDED.description,
                source = EXCLUDED.source,
                content_hash = EXCLUDED.content_hash,
                document = EXCLUDED.document",
    )
    .bind(&barclamp.name)
    .bind(&barclamp.parent)
    .bind(&barclamp.description)
    .bind(&barclamp.source)
    .bind(&barclamp.content_hash)
    .bind(&barclamp.document)
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_role(conn: &mut PgConnection, barclamp: &str, role: &Role) -> sqlx::Result<()> {
    let flag = |f: Flag| role.flags.has(f);
    sqlx::query(
        "INSERT INTO roles (name, barclamp_id, jig_id, description,
                            implicit, bootstrap, discovery, cluster, destructive, abstract,
                            milestone, powersave, service,
                            requires, provides, conflicts, wants_attribs, template, timeout_secs)
         VALUES ($1, (SELECT id FROM barclamps WHERE name = $2),
                 (SELECT id FROM jigs WHERE name = $3), $4,
                 $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 $14, $15, $16, $17, $18, $19)
         ON CONFLICT (name) DO UPDATE
            SET barclamp_id = EXCLUDED.barclamp_id, jig_id = EXCLUDED.jig_id,
                description = EXCLUDED.description,
                implicit = EXCLUDED.implicit, bootstrap = EXCLUDED.bootstrap,
                discovery = EXCLUDED.discovery, cluster = EXCLUDED.cluster,
                destructive = EXCLUDED.destructive, abstract = EXCLUDED.abstract,
                milestone = EXCLUDED.milestone, powersave = EXCLUDED.powersave,
                service = EXCLUDED.service,
                requires = EXCLUDED.requires, provides = EXCLUDED.provides,
                conflicts = EXCLUDED.conflicts, wants_attribs = EXCLUDED.wants_attribs,
                template = EXCLUDED.template, timeout_secs = EXCLUDED.timeout_secs
          WHERE (roles.barclamp_id, roles.jig_id, roles.description,
                 roles.implicit, roles.bootstrap, roles.discovery, roles.cluster,
                 roles.destructive, roles.abstract, roles.milestone, roles.powersave,
                 roles.service, roles.requires, roles.provides, roles.conflicts,
                 roles.wants_attribs, roles.template, roles.timeout_secs)
                IS DISTINCT FROM
                (EXCLUDED.barclamp_id, EXCLUDED.jig_id, EXCLUDED.description,
                 EXCLUDED.implicit, EXCLUDED.bootstrap, EXCLUDED.discovery, EXCLUDED.cluster,
                 EXCLUDED.destructive, EXCLUDED.abstract, EXCLUDED.milestone,
                 EXCLUDED.powersave, EXCLUDED.service, EXCLUDED.requires, EXCLUDED.provides,
                 EXCLUDED.conflicts, EXCLUDED.wants_attribs, EXCLUDED.template,
                 EXCLUDED.timeout_secs)",
    )
    .bind(&role.name)
    .bind(barclamp)
    .bind(&role.jig)
    .bind(&role.description)
    .bind(flag(Flag::Implicit))
    .bind(flag(Flag::Bootstrap))
    .bind(flag(Flag::Discovery))
    .bind(flag(Flag::Cluster))
    .bind(flag(Flag::Destructive))
    .bind(flag(Flag::Abstract))
    .bind(flag(Flag::Milestone))
    .bind(flag(Flag::Powersave))
    .bind(flag(Flag::Service))
    .bind(&role.requires)
    .bind(&role.provides)
    .bind(&role.conflicts)
    .bind(&role.wants_attribs)
    .bind(serde_json::Value::Object(role.template.clone()))
    .bind(role.timeout_secs)
    .execute(conn)
    .await?;
    Ok(())
}
