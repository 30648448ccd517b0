//! Nodes: creation, lookup, updates of alive/available/bootenv, and the death ripple (§6).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tracing::field::Empty;

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
    keys::{fetch_by_key, new_token, token_hash},
    paging::{Order, PagedQuery, Window},
    ripple, runs,
};
use crate::domain::key::Key;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub alive: bool,
    pub available: bool,
    pub bootenv: String,
    pub address: Option<String>,
    pub mac: Option<String>,
    pub deployment: String,
    pub deployment_id: i64,
    /// Made by `/discover` and not accepted by an admin yet: only such a node's machine may
    /// register again, and such nodes count against `--discovery-limit`.
    pub discovered: bool,
    /// Its BMC powered the machine on into discovery: the machine that boots with the
    /// node's MAC registers as this node, once (`docs/power.md`).
    pub awaiting_machine: bool,
    /// The most pressing state among its noderoles (error, transition, todo, blocked,
    /// proposed), or `active`.
    pub state: String,
    /// The power state its BMC reported last (`on`, `off`, `unknown` — also before the first
    /// read); null when the node has no BMC.
    pub power: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT_NODE: &str = "
    SELECT n.id, n.name, n.description, n.admin, n.alive, n.available, n.bootenv,
           host(n.address) AS address, n.mac::text AS mac, d.name AS deployment, n.deployment_id,
           n.discovered, n.awaiting_machine,
           CASE (SELECT min(CASE nr.state WHEN -1 THEN 0 WHEN 2 THEN 1 WHEN 1 THEN 2
                                          WHEN 3 THEN 3 WHEN 4 THEN 4 ELSE 5 END)
                   FROM noderoles nr WHERE nr.node_id = n.id AND nr.state <> 0)
                WHEN 0 THEN 'error' WHEN 1 THEN 'transition' WHEN 2 THEN 'todo'
                WHEN 3 THEN 'blocked' WHEN 4 THEN 'proposed' ELSE 'active' END AS state,
           (SELECT coalesce(b.power, 'unknown') FROM node_bmcs b WHERE b.node_id = n.id) AS power,
           n.created_at, n.updated_at
      FROM nodes n JOIN deployments d ON d.id = n.deployment_id";

/// Fields of a new node.
#[derive(Debug, Clone, Default)]
pub struct NewNode {
    pub name: String,
    pub address: Option<String>,
    pub admin: bool,
    pub description: String,
    pub deployment: Option<Key>,
    pub bootenv: Option<String>,
    pub mac: Option<String>,
    /// Made by discovery (see [`Node::discovered`]).
    pub discovered: bool,
}

/// Creates a node; returns it with its token (shown once, stored hashed).
#[tracing::instrument(skip_all, fields(node = Empty))]
pub async fn create(
    conn: &mut PgConnection,
    new: &NewNode,
    actor: &Actor,
) -> Result<(Node, String)> {
    let deployment_id = match &new.deployment {
        Some(key) => super::deployments::id_of(conn, key).await?,
        None => super::deployments::system_id(conn).await?,
    };
    let token = new_token();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (name, address, admin, description, deployment_id, bootenv, mac, token_hash,
                            discovered)
         VALUES ($1, $2::inet, $3, $4, $5, coalesce($6, 'sledgehammer'), $7::macaddr, $8, $9)
         RETURNING id",
    )
    .bind(&new.name)
    .bind(&new.address)
    .bind(new.admin)
    .bind(&new.description)
    .bind(deployment_id)
    .bind(&new.bootenv)
    .bind(&new.mac)
    .bind(token_hash(&token))
    .bind(new.discovered)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::from_constraint)?;
    tracing::Span::current().record("node", id);
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.created",
            node_id: Some(id),
            deployment_id: Some(deployment_id),
            data: json!({"id": id, "name": new.name}),
            ..Default::default()
        },
    )
    .await?;
    if new.address.is_some() {
        events::ask_probe(conn, id).await?;
    }
    Ok((get(conn, &Key::Id(id)).await?, token))
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<Node> {
    fetch_by_key(
        conn,
        format!("{SELECT_NODE} WHERE n.id = $1 OR n.name = $2"),
        key,
        "node",
    )
    .await
}

pub async fn id_of(conn: &mut PgConnection, key: &Key) -> Result<i64> {
    let (id, name) = key.parts();
    sqlx::query_scalar("SELECT id FROM nodes WHERE id = $1 OR name = $2")
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("node", key))
}

/// How many nodes discovery made that no admin accepted yet, whatever their bootenv.
pub async fn count_discovered(conn: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM nodes WHERE discovered")
            .fetch_one(conn)
            .await?,
    )
}

/// The node holding `address`: as its admin address or as an allocation.
pub async fn holder_of_address(conn: &mut PgConnection, address: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM nodes WHERE host(address) = host($1::inet)
         UNION ALL
         SELECT n.name FROM network_allocations a JOIN nodes n ON n.id = a.node_id
          WHERE host(a.address) = host($1::inet)
         LIMIT 1",
    )
    .bind(address)
    .fetch_optional(conn)
    .await?)
}

/// Filters of a node listing; the deployment matches by name or id.
#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    /// Names starting with this (`?q=`).
    pub name_prefix: Option<String>,
    pub deployment: Option<String>,
    pub alive: Option<bool>,
    pub available: Option<bool>,
    pub admin: Option<bool>,
    pub sort: NodeSort,
    /// The cursor of a name order: the nodes after the one of this name (the window's
    /// `after` is the cursor of an id order).
    pub after_name: Option<String>,
    pub window: Window,
}

/// The orders of a node listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeSort {
    /// As they were registered (by id), the default.
    #[default]
    Oldest,
    Newest,
    Name,
    NameDescending,
}

impl NodeSort {
    /// Every order with its name in URLs and the API (`id`, `-id`, `name`, `-name`).
    pub const ALL: [(NodeSort, &'static str); 4] = [
        (NodeSort::Oldest, "id"),
        (NodeSort::Newest, "-id"),
        (NodeSort::Name, "name"),
        (NodeSort::NameDescending, "-name"),
    ];

    pub fn parse(text: &str) -> Option<NodeSort> {
        Self::ALL.iter().find(|(_, t)| *t == text).map(|(s, _)| *s)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("id", |(_, t)| t)
    }

    /// Whether the cursor is a name (else an id).
    pub fn by_name(self) -> bool {
        matches!(self, NodeSort::Name | NodeSort::NameDescending)
    }

    fn order(self) -> Order {
        Order {
            column: self.by_name().then_some("name"),
            descending: matches!(self, NodeSort::Newest | NodeSort::NameDescending),
        }
    }
}

pub async fn list(pool: &PgPool, f: &NodeFilter) -> Result<Vec<Node>> {
    filtered(PagedQuery::new("nodes"), f)
        .rows(pool, f.window, SELECT_NODE, "n")
        .await
}

/// The names of at most `limit` nodes outside a deployment, by name.
pub async fn names_outside(
    conn: &mut PgConnection,
    deployment_id: i64,
    limit: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM nodes WHERE deployment_id <> $1 ORDER BY name LIMIT $2",
    )
    .bind(deployment_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// How many nodes `f` selects (its window aside), counting at most `cap`.
pub async fn count(pool: &PgPool, f: &NodeFilter, cap: i64) -> Result<i64> {
    filtered(PagedQuery::counting("nodes"), f)
        .count(&mut *pool.acquire().await?, cap)
        .await
}

/// The ids of the nodes `f` selects, in its order, within its window.
pub async fn ids(pool: &PgPool, f: &NodeFilter) -> Result<Vec<i64>> {
    filtered(PagedQuery::new("nodes"), f)
        .ids(&mut *pool.acquire().await?, f.window)
        .await
}

fn filtered(mut query: PagedQuery, f: &NodeFilter) -> PagedQuery {
    query
        .order(f.sort.order(), f.after_name.clone())
        .refers_to("deployment_id", "deployments", f.deployment.clone())
        .equal("alive", f.alive)
        .equal("available", f.available)
        .equal("admin", f.admin)
        .prefix("name", f.name_prefix.as_deref());
    query
}

/// Changes to a node. `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct NodeUpdate {
    pub alive: Option<bool>,
    pub available: Option<bool>,
    pub bootenv: Option<String>,
    pub description: Option<String>,
    pub deployment: Option<Key>,
    pub address: Option<Option<String>>,
    /// An admin's change: a node discovery made becomes an accepted node (see
    /// [`Node::discovered`]), even when nothing else changes.
    pub accept: bool,
}

/// Applies `update`, recording every change of alive/available/bootenv with who and why,
/// and running the death ripple when the node goes dead.
#[tracing::instrument(skip_all, fields(node = %key))]
pub async fn update(
    conn: &mut PgConnection,
    key: &Key,
    update: &NodeUpdate,
    actor: &Actor,
    reason: &str,
) -> Result<Node> {
    let before = lock(conn, key).await?;
    let mut changes = serde_json::Map::new();
    if let Some(description) = &update.description
        && *description != before.description
    {
        sqlx::query("UPDATE nodes SET description = $2 WHERE id = $1")
            .bind(before.id)
            .bind(description)
            .execute(&mut *conn)
            .await?;
        changes.insert(
            "description".into(),
            json!({"from": before.description, "to": description}),
        );
    }
    if let Some(address) = &update.address
        && *address != before.address
    {
        sqlx::query("UPDATE nodes SET address = $2::inet WHERE id = $1")
            .bind(before.id)
            .bind(address)
            .execute(&mut *conn)
            .await
            .map_err(Error::from_constraint)?;
        changes.insert(
            "address".into(),
            json!({"from": before.address, "to": address}),
        );
        if address.is_some() {
            events::ask_probe(conn, before.id).await?;
        }
    }
    if let Some(key) = &update.deployment {
        let deployment_id = super::deployments::id_of(conn, key).await?;
        if deployment_id != before.deployment_id {
            sqlx::query("UPDATE nodes SET deployment_id = $2 WHERE id = $1")
                .bind(before.id)
                .bind(deployment_id)
                .execute(&mut *conn)
                .await?;
            changes.insert(
                "deployment".into(),
                json!({"from": before.deployment_id, "to": deployment_id}),
            );
        }
    }
    if let Some(bootenv) = &update.bootenv
        && *bootenv != before.bootenv
    {
        sqlx::query("UPDATE nodes SET bootenv = $2 WHERE id = $1")
            .bind(before.id)
            .bind(bootenv)
            .execute(&mut *conn)
            .await?;
        changes.insert(
            "bootenv".into(),
            json!({"from": before.bootenv, "to": bootenv}),
        );
    }
    if let Some(available) = update.available
        && available != before.available
    {
        sqlx::query("UPDATE nodes SET available = $2 WHERE id = $1")
            .bind(before.id)
            .bind(available)
            .execute(&mut *conn)
            .await?;
        changes.insert(
            "available".into(),
            json!({"from": before.available, "to": available}),
        );
    }
    if update.accept && before.discovered {
        sqlx::query("UPDATE nodes SET discovered = false WHERE id = $1")
            .bind(before.id)
            .execute(&mut *conn)
            .await?;
        changes.insert("discovered".into(), json!({"from": true, "to": false}));
    }
    if let Some(alive) = update.alive
        && alive != before.alive
    {
        sqlx::query("UPDATE nodes SET alive = $2 WHERE id = $1")
            .bind(before.id)
            .bind(alive)
            .execute(&mut *conn)
            .await?;
        changes.insert("alive".into(), json!({"from": before.alive, "to": alive}));
        if !alive {
            death_ripple(conn, before.id, actor, reason).await?;
        } else if actor.is_node() {
            // a node's own word that it is up: check it answers as the daemon needs
            events::ask_probe(conn, before.id).await?;
        }
    }
    if !changes.is_empty() {
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "node.updated",
                reason: reason.to_string(),
                node_id: Some(before.id),
                deployment_id: Some(before.deployment_id),
                data: json!({
                    "id": before.id,
                    "name": before.name,
                    "changes": changes,
                    "available": update.available.unwrap_or(before.available),
                }),
                ..Default::default()
            },
        )
        .await?;
        // alive or available again, or anything else: let the annealer look
        events::notify(conn, events::CHANNEL_ANNEAL).await?;
    }
    get(conn, &Key::Id(before.id)).await
}

/// Locks the node row for the rest of the transaction and returns it.
async fn lock(conn: &mut PgConnection, key: &Key) -> Result<Node> {
    let (id, name) = key.parts();
    let id: i64 = sqlx::query_scalar("SELECT id FROM nodes WHERE id = $1 OR name = $2 FOR UPDATE")
        .bind(id)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found("node", key))?;
    get(conn, &Key::Id(id)).await
}

/// Node death (§6): queued runs on it are dropped, every non-PROPOSED noderole on it goes
/// back to TODO or BLOCKED by parent state (clearing ERROR), and children elsewhere that were
/// waiting (TODO/ERROR) are blocked. A run already executing finishes and is judged then.
async fn death_ripple(
    conn: &mut PgConnection,
    node_id: i64,
    actor: &Actor,
    reason: &str,
) -> Result<()> {
    // Noderoles before runs, the order every ripple locks them in.
    let on_node: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM noderoles WHERE node_id = $1 AND state NOT IN (2, 4) ORDER BY id FOR UPDATE",
    )
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    runs::drop_queued_on_node(conn, node_id).await?;
    let mut changed = ripple::reset_by_parents(conn, &on_node).await?;
    changed.extend(ripple::block_waiting_children(conn, &on_node).await?);
    events::noderoles_changed(conn, actor, reason, &changed).await?;
    Ok(())
}

/// Deletes a node and its noderoles (never the last admin node). Children elsewhere that
/// lose their last non-ACTIVE parent become runnable.
#[tracing::instrument(skip_all, fields(node = %key))]
pub async fn delete(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<()> {
    let node = lock(conn, key).await?;
    if node.admin {
        let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE admin")
            .fetch_one(&mut *conn)
            .await?;
        if admins <= 1 {
            return Err(Error::conflict(
                "last_admin_node",
                format!(
                    "`{}` is the last admin node and cannot be deleted",
                    node.name
                ),
            ));
        }
    }
    let orphans: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT e.child_id FROM noderole_edges e
           JOIN noderoles p ON p.id = e.parent_id JOIN noderoles c ON c.id = e.child_id
          WHERE p.node_id = $1 AND c.node_id <> $1",
    )
    .bind(node.id)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(node.id)
        .execute(&mut *conn)
        .await?;
    let changed =
        ripple::settle(conn, &orphans, crate::domain::state::NodeRoleState::Blocked).await?;
    events::noderoles_changed(conn, actor, "a parent's node was deleted", &changed).await?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.deleted",
            node_id: Some(node.id),
            data: json!({"id": node.id, "name": node.name}),
            ..Default::default()
        },
    )
    .await?;
    events::notify(conn, events::CHANNEL_ANNEAL).await?;
    Ok(())
}

/// The id of the node with MAC `mac`, its row locked for the rest of the transaction.
pub async fn lock_by_mac(conn: &mut PgConnection, mac: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM nodes WHERE mac = $1::macaddr FOR UPDATE")
            .bind(mac)
            .fetch_optional(conn)
            .await?,
    )
}

/// Makes the node wait for its machine (an admin's node whose BMC is about to power the
/// machine on into discovery): its MAC becomes `mac` unless it has one, its bootenv
/// `bootenv`. Returns the MAC the machine will register with. 409 when another node has it.
pub async fn await_machine(
    conn: &mut PgConnection,
    node_id: i64,
    mac: &str,
    bootenv: &str,
    actor: &Actor,
) -> Result<String> {
    let holder: Option<String> =
        sqlx::query_scalar("SELECT name FROM nodes WHERE mac = $1::macaddr AND id <> $2")
            .bind(mac)
            .bind(node_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(holder) = holder {
        return Err(Error::conflict(
            "mac_taken",
            format!("the BMC reports MAC {mac}, which is node `{holder}`'s already"),
        ));
    }
    let (name, mac, available, deployment_id): (String, String, bool, i64) = sqlx::query_as(
        "UPDATE nodes SET mac = coalesce(mac, $2::macaddr), bootenv = $3, awaiting_machine = true,
                updated_at = now()
          WHERE id = $1 RETURNING name, mac::text, available, deployment_id",
    )
    .bind(node_id)
    .bind(mac)
    .bind(bootenv)
    .fetch_one(&mut *conn)
    .await?;
    let changes = json!({"awaiting_machine": {"from": false, "to": true},
                         "mac": {"to": mac}, "bootenv": {"to": bootenv}});
    let row = (node_id, name.as_str(), available, deployment_id);
    awaiting_changed(
        conn,
        actor,
        row,
        "waiting for its machine to boot into discovery",
        changes,
    )
    .await?;
    Ok(mac)
}

/// The machine of a node waiting for it registered: its address set, the wait over.
pub async fn machine_arrived(
    conn: &mut PgConnection,
    node_id: i64,
    address: Option<&str>,
    actor: &Actor,
) -> Result<()> {
    let (name, available, deployment_id): (String, bool, i64) = sqlx::query_as(
        "UPDATE nodes SET awaiting_machine = false, address = coalesce($2::inet, address),
                updated_at = now()
          WHERE id = $1 RETURNING name, available, deployment_id",
    )
    .bind(node_id)
    .bind(address)
    .fetch_one(&mut *conn)
    .await?;
    let changes = json!({"awaiting_machine": {"from": true, "to": false},
                         "address": {"to": address}});
    let row = (node_id, name.as_str(), available, deployment_id);
    awaiting_changed(conn, actor, row, "its machine registered", changes).await
}

/// The `node.updated` event of a change of `awaiting_machine`: the node's (id, name,
/// available, deployment) and the changes (the DHCP and DNS hooks follow `mac`, `address`
/// and `bootenv` among them).
async fn awaiting_changed(
    conn: &mut PgConnection,
    actor: &Actor,
    (id, name, available, deployment_id): (i64, &str, bool, i64),
    reason: &str,
    changes: Value,
) -> Result<()> {
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.updated",
            reason: reason.into(),
            node_id: Some(id),
            deployment_id: Some(deployment_id),
            data: json!({"id": id, "name": name, "available": available, "changes": changes}),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Gives a node a new token (returned, shown once); the old one stops working.
#[tracing::instrument(skip_all, fields(node = node_id))]
pub async fn rotate_token(
    conn: &mut PgConnection,
    node_id: i64,
    actor: &Actor,
    reason: &str,
) -> Result<String> {
    let token = new_token();
    let name: String =
        sqlx::query_scalar("UPDATE nodes SET token_hash = $2 WHERE id = $1 RETURNING name")
            .bind(node_id)
            .bind(token_hash(&token))
            .fetch_one(&mut *conn)
            .await?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "node.token_rotated",
            reason: reason.to_string(),
            node_id: Some(node_id),
            data: json!({"id": node_id, "name": name}),
            ..Default::default()
        },
    )
    .await?;
    Ok(token)
}

/// The name and bootenv of the node with MAC `mac` (canonical form), if any.
pub async fn by_mac(pool: &PgPool, mac: &str) -> Result<Option<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT name, bootenv FROM nodes WHERE mac = $1::macaddr")
            .bind(mac)
            .fetch_optional(pool)
            .await?,
    )
}

/// The node a token belongs to, if any.
pub async fn by_token(pool: &PgPool, token: &str) -> Result<Option<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT id, name FROM nodes WHERE token_hash = $1")
            .bind(token_hash(token))
            .fetch_optional(pool)
            .await?,
    )
}

/// A node's history of alive/available/bootenv (and other) changes, newest first.
pub async fn history(
    pool: &PgPool,
    node_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<super::events::EventRow>> {
    Ok(sqlx::query_as(
        "SELECT id, type AS kind, at, actor, reason, data FROM events
          WHERE node_id = $1 AND type LIKE 'node.%' ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(node_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}
