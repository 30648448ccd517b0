//! Attribs: named pieces of data a role owns, each mapped to a path inside data (SEMANTICS.md
//! §8), read and set on the objects that hold data.
//!
//! Where an attrib's value lives depends on who holds it:
//! - a **role**: its template (read-only: roles come from barclamps);
//! - a **deployment**: the template under the deployment role's data (committed, and the
//!   proposal); setting one edits the proposal, adding the role to the deployment if needed;
//! - a **noderole**: every layer of §8 — template, deployment role, sysdata, its own data;
//!   setting one edits its proposed data (only while proposed);
//! - a **node**: what discovery reported under the admin's hints; setting one sets a hint.
//!
//! Where no layer has the path, the attrib's default is the value.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::{
    deployment_roles,
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    keys::fetch_by_key,
    node_roles,
};
use crate::domain::{
    data::{get_path, layered, set_path},
    key::Key,
};

/// An attrib as a barclamp defines it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttribDef {
    pub id: i64,
    pub name: String,
    pub barclamp: String,
    /// The role that owns it.
    pub role: Option<String>,
    /// Slash-separated path inside data, e.g. `test/delay`.
    pub map: String,
    #[serde(rename = "default")]
    #[sqlx(rename = "default_value")]
    pub default_value: Option<Value>,
    pub description: String,
}

/// An attrib's value on one object.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AttribValue {
    pub attrib: String,
    pub role: Option<String>,
    pub map: String,
    /// The value in effect (committed data, or the default).
    pub value: Value,
    /// The value the proposal holds; equal to `value` when nothing is pending.
    pub proposed: Value,
}

/// The objects attribs are read on and set on.
#[derive(Debug, Clone)]
pub enum Holder {
    Node(Key),
    Role(Key),
    Deployment(Key),
    NodeRole(i64),
}

const SELECT_DEF: &str = "
    SELECT a.id, a.name, b.name AS barclamp, r.name AS role, a.map, a.default_value, a.description
      FROM attribs a JOIN barclamps b ON b.id = a.barclamp_id LEFT JOIN roles r ON r.id = a.role_id";

/// Attrib definitions, by name; `role` (id or name) narrows to one role's.
pub async fn list(
    pool: &PgPool,
    role: Option<&Key>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AttribDef>> {
    let (role_id, role_name) = role.map_or((None, None), Key::parts);
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_DEF} WHERE ($1::bigint IS NULL AND $2::text IS NULL OR r.id = $1 OR r.name = $2)
          ORDER BY a.name LIMIT $3 OFFSET $4"
    )))
    .bind(role_id)
    .bind(role_name)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<AttribDef> {
    fetch_by_key(
        conn,
        format!("{SELECT_DEF} WHERE a.id = $1 OR a.name = $2"),
        key,
        "attrib",
    )
    .await
}

/// The data layers of one role on a holder: (committed view, proposed view).
struct Layers {
    committed: Value,
    proposed: Value,
}

impl Layers {
    fn same(data: Value) -> Layers {
        Layers {
            proposed: data.clone(),
            committed: data,
        }
    }

    fn value(&self, def: &AttribDef) -> AttribValue {
        let at = |data: &Value| {
            get_path(data, &def.map)
                .cloned()
                .or_else(|| def.default_value.clone())
                .unwrap_or(Value::Null)
        };
        AttribValue {
            attrib: def.name.clone(),
            role: def.role.clone(),
            map: def.map.clone(),
            value: at(&self.committed),
            proposed: at(&self.proposed),
        }
    }
}

/// Every attrib the holder has, with its value. Nodes have every attrib; the others, those
/// of their roles.
pub async fn values(conn: &mut PgConnection, holder: &Holder) -> Result<Vec<AttribValue>> {
    let defs: Vec<AttribDef> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_DEF} ORDER BY a.name")))
            .fetch_all(&mut *conn)
            .await?;
    let mut out = Vec::new();
    match holder {
        Holder::Node(node) => {
            let layers = node_layers(conn, node).await?;
            out.extend(defs.iter().map(|d| layers.value(d)));
        }
        _ => {
            for (role, layers) in role_layers(conn, holder).await? {
                out.extend(
                    defs.iter()
                        .filter(|d| d.role.as_deref() == Some(role.as_str()))
                        .map(|d| layers.value(d)),
                );
            }
            out.sort_by(|a, b| a.attrib.cmp(&b.attrib));
        }
    }
    Ok(out)
}

/// One attrib's value on the holder; 404 when the holder does not have it.
pub async fn value(conn: &mut PgConnection, holder: &Holder, attrib: &Key) -> Result<AttribValue> {
    let def = get(conn, attrib).await?;
    let layers = layers_for(conn, holder, &def).await?;
    Ok(layers.value(&def))
}

async fn layers_for(conn: &mut PgConnection, holder: &Holder, def: &AttribDef) -> Result<Layers> {
    if let Holder::Node(node) = holder {
        return node_layers(conn, node).await;
    }
    role_layers(conn, holder)
        .await?
        .into_iter()
        .find(|(role, _)| def.role.as_deref() == Some(role.as_str()))
        .map(|(_, layers)| layers)
        .ok_or_else(|| {
            Error::not_found(
                "attrib",
                format!(
                    "{} (it belongs to role `{}`, which is not here)",
                    def.name,
                    def.role.as_deref().unwrap_or("-")
                ),
            )
        })
}

/// A node's facts: what discovery reported, under the admin's hints.
async fn node_layers(conn: &mut PgConnection, node: &Key) -> Result<Layers> {
    let (id, name) = node.parts();
    let (discovery, hints): (Value, Value) =
        sqlx::query_as("SELECT discovery, hints FROM nodes WHERE id = $1 OR name = $2")
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::not_found("node", node))?;
    Ok(Layers::same(layered([&discovery, &hints])))
}

/// The data layers of each role the holder (not a node) has, by role name.
async fn role_layers(conn: &mut PgConnection, holder: &Holder) -> Result<Vec<(String, Layers)>> {
    Ok(match holder {
        Holder::Node(_) => unreachable!("nodes hold facts, not role data"),
        Holder::Role(role) => {
            let found = super::roles::get_role(conn, role).await?;
            vec![(found.name, Layers::same(found.template))]
        }
        Holder::Deployment(deployment) => {
            let id = super::deployments::id_of(conn, deployment).await?;
            let rows: Vec<(String, Value, Value, Value)> = sqlx::query_as(
                "SELECT r.name, r.template, dr.committed_data, dr.proposed_data
                   FROM deployment_roles dr JOIN roles r ON r.id = dr.role_id
                  WHERE dr.deployment_id = $1 ORDER BY r.name",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|(role, template, committed, proposed)| {
                    let layers = Layers {
                        committed: layered([&template, &committed]),
                        proposed: layered([&template, &proposed]),
                    };
                    (role, layers)
                })
                .collect()
        }
        Holder::NodeRole(id) => {
            type Row = (
                String,
                Value,
                Option<Value>,
                Option<Value>,
                Value,
                Value,
                Value,
            );
            let (role, template, dr_committed, dr_proposed, sysdata, committed, proposed): Row =
                sqlx::query_as(
                    "SELECT r.name, r.template, dr.committed_data, dr.proposed_data,
                            nr.sysdata, nr.committed_data, nr.proposed_data
                       FROM noderoles nr JOIN roles r ON r.id = nr.role_id
                       LEFT JOIN deployment_roles dr
                         ON dr.deployment_id = nr.deployment_id AND dr.role_id = nr.role_id
                      WHERE nr.id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| Error::not_found("noderole", id))?;
            let empty = json!({});
            let layers = Layers {
                committed: layered([
                    &template,
                    dr_committed.as_ref().unwrap_or(&empty),
                    &sysdata,
                    &committed,
                ]),
                proposed: layered([
                    &template,
                    dr_proposed.as_ref().unwrap_or(&empty),
                    &sysdata,
                    &proposed,
                ]),
            };
            vec![(role, layers)]
        }
    })
}

/// Sets an attrib on a holder (see the module documentation for where it goes); returns
/// its value afterwards.
pub async fn set(
    conn: &mut PgConnection,
    holder: &Holder,
    attrib: &Key,
    value: Value,
    actor: &Actor,
) -> Result<AttribValue> {
    let def = get(conn, attrib).await?;
    match holder {
        Holder::Role(_) => unreachable!("roles are read-only; the API offers no such route"),
        Holder::Node(node) => set_hint(conn, node, &def, value, actor).await?,
        Holder::Deployment(deployment) => {
            let role = def.role.clone().ok_or_else(|| {
                Error::invalid("no_role", format!("attrib `{}` has no role", def.name))
            })?;
            deployment_roles::edit_proposed(conn, deployment, &Key::Name(role), actor, |data| {
                set_path(data, &def.map, value)
            })
            .await?;
        }
        Holder::NodeRole(id) => {
            // 404 unless the attrib is its role's
            layers_for(conn, holder, &def).await?;
            let mut data: Value =
                sqlx::query_scalar("SELECT proposed_data FROM noderoles WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
            set_path(&mut data, &def.map, value);
            node_roles::set_data(conn, *id, &data, actor).await?;
        }
    }
    let layers = layers_for(conn, holder, &def).await?;
    Ok(layers.value(&def))
}

/// Sets an admin hint on a node: it overrides what discovery reported.
async fn set_hint(
    conn: &mut PgConnection,
    node: &Key,
    def: &AttribDef,
    value: Value,
    actor: &Actor,
) -> Result<()> {
    let (id, name) = node.parts();
    let (node_id, mut hints): (i64, Value) =
        sqlx::query_as("SELECT id, hints FROM nodes WHERE id = $1 OR name = $2 FOR UPDATE")
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::not_found("node", node))?;
    let before = hints.clone();
    set_path(&mut hints, &def.map, value);
    if hints == before {
        return Ok(());
    }
    sqlx::query("UPDATE nodes SET hints = $2 WHERE id = $1")
        .bind(node_id)
        .bind(&hints)
        .execute(&mut *conn)
        .await?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.updated",
            reason: format!("hint `{}` set", def.name),
            node_id: Some(node_id),
            data: json!({"id": node_id, "hint": def.name}),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
