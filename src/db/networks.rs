//! Networks, their ranges, and addresses allocated to nodes (SEMANTICS.md §11).
//!
//! Allocation is safe under concurrency twice over: allocating locks the network's row, so
//! allocations on one network happen one at a time across daemons, and the unique
//! constraints on (network, address) and (network, node, family) make the database refuse
//! a duplicate whatever the code does.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::{
    error::{Error, Result},
    events::{self, Actor, NewEvent},
};
use crate::domain::{
    ipam::{self, V6Prefix},
    key::Key,
};

/// The installation key of the RFC 4193 global ID (chosen by migration 0004).
const GLOBAL_ID_KEY: &str = "ipam.ula_global_id";

/// The network whose allocations become nodes' admin addresses, and which gets an `auto`
/// IPv6 prefix when none is given.
pub const ADMIN_NETWORK: &str = "admin";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Network {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub deployment: String,
    pub deployment_id: i64,
    /// As given: `auto`, a /64, or null.
    pub v6prefix: Option<String>,
    /// The /64 node addresses are made in, when `v6prefix` is set.
    pub effective_v6prefix: Option<String>,
    /// The IPv4 subnet (for prefix lengths), when given.
    pub v4prefix: Option<String>,
    pub ranges: Vec<Range>,
    pub router: Option<Router>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Range {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Router {
    pub address: String,
    pub pref: i32,
}

#[derive(sqlx::FromRow)]
struct NetworkRow {
    id: i64,
    name: String,
    description: String,
    deployment: String,
    deployment_id: i64,
    v6prefix: Option<String>,
    v4prefix: Option<String>,
    router: Option<String>,
    router_pref: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SELECT_NETWORK: &str = "
    SELECT nw.id, nw.name, nw.description, d.name AS deployment, nw.deployment_id, nw.v6prefix,
           nw.v4prefix::text AS v4prefix, host(nw.router) AS router, nw.router_pref,
           nw.created_at, nw.updated_at
      FROM networks nw JOIN deployments d ON d.id = nw.deployment_id";

/// A new network, validated by the caller's types.
#[derive(Debug, Clone)]
pub struct NewNetwork {
    pub name: String,
    pub description: String,
    pub deployment: Option<Key>,
    pub v6prefix: Option<V6Prefix>,
    pub v4prefix: Option<ipnet::Ipv4Net>,
    pub ranges: Vec<NewRange>,
    pub router: Option<(IpAddr, i32)>,
}

#[derive(Debug, Clone)]
pub struct NewRange {
    pub name: String,
    pub first: IpAddr,
    pub last: IpAddr,
}

/// The installation's RFC 4193 global ID.
pub async fn global_id(conn: &mut PgConnection) -> Result<u64> {
    let id: i64 =
        sqlx::query_scalar("SELECT (value #>> '{}')::bigint FROM installation WHERE key = $1")
            .bind(GLOBAL_ID_KEY)
            .fetch_one(conn)
            .await?;
    Ok(id as u64)
}

pub async fn create(conn: &mut PgConnection, new: &NewNetwork, actor: &Actor) -> Result<Network> {
    for range in &new.ranges {
        ipam::check_range(range.first, range.last)
            .map_err(|m| Error::invalid("invalid_range", format!("range `{}`: {m}", range.name)))?;
    }
    let deployment_id = match &new.deployment {
        Some(key) => super::deployments::id_of(conn, key).await?,
        None => super::deployments::system_id(conn).await?,
    };
    // the admin network always gives nodes IPv6 addresses
    let v6prefix = match (new.v6prefix, new.name == ADMIN_NETWORK) {
        (Some(p), _) => Some(p.to_string()),
        (None, true) => Some(V6Prefix::Auto.to_string()),
        (None, false) => None,
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO networks (name, description, deployment_id, v6prefix, v4prefix, router, router_pref)
         VALUES ($1, $2, $3, $4, $5::cidr, $6::inet, $7) RETURNING id",
    )
    .bind(&new.name)
    .bind(&new.description)
    .bind(deployment_id)
    .bind(&v6prefix)
    .bind(new.v4prefix.map(|p| p.to_string()))
    .bind(new.router.map(|r| r.0.to_string()))
    .bind(new.router.map_or(0, |r| r.1))
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::from_constraint)?;
    for range in &new.ranges {
        sqlx::query(
            "INSERT INTO network_ranges (network_id, name, first, last) VALUES ($1, $2, $3::inet, $4::inet)",
        )
        .bind(id)
        .bind(&range.name)
        .bind(range.first.to_string())
        .bind(range.last.to_string())
        .execute(&mut *conn)
        .await
        .map_err(Error::from_constraint)?;
    }
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "network.created",
            deployment_id: Some(deployment_id),
            data: json!({"id": id, "name": new.name}),
            ..Default::default()
        },
    )
    .await?;
    get(conn, &Key::Id(id)).await
}

pub async fn get(conn: &mut PgConnection, key: &Key) -> Result<Network> {
    let (id, name) = key.parts();
    let row = sqlx::query_as::<_, NetworkRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT_NETWORK} WHERE nw.id = $1 OR nw.name = $2"
    )))
    .bind(id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("network", key))?;
    let global = global_id(conn).await?;
    let ranges = ranges_of(conn, row.id).await?;
    Ok(assemble(row, ranges, global))
}

pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<Network>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query_as::<_, NetworkRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT_NETWORK} ORDER BY nw.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let global = global_id(&mut conn).await?;
    let mut networks = Vec::with_capacity(rows.len());
    for row in rows {
        let ranges = ranges_of(&mut conn, row.id).await?;
        networks.push(assemble(row, ranges, global));
    }
    Ok(networks)
}

/// Where the hosts of every network are (for telling whether an address is on one).
pub async fn spans(conn: &mut PgConnection) -> Result<Vec<ipam::NetworkSpan>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        v4prefix: Option<String>,
        v6prefix: Option<String>,
        router: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, v4prefix::text AS v4prefix, v6prefix, host(router) AS router
           FROM networks ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let global = global_id(conn).await?;
    let mut spans = Vec::with_capacity(rows.len());
    for row in rows {
        let ranges = ranges_of(conn, row.id)
            .await?
            .iter()
            .filter_map(|r| Some((r.first.parse().ok()?, r.last.parse().ok()?)))
            .collect();
        spans.push(ipam::NetworkSpan {
            v4prefix: row.v4prefix.and_then(|p| p.parse().ok()),
            v6prefix: row
                .v6prefix
                .and_then(|p| V6Prefix::parse(&p).ok())
                .map(|p| p.effective(global, row.id)),
            ranges,
            router: row.router.and_then(|r| r.parse().ok()),
        });
    }
    Ok(spans)
}

async fn ranges_of(conn: &mut PgConnection, network_id: i64) -> sqlx::Result<Vec<Range>> {
    sqlx::query_as(
        "SELECT id, name, host(first) AS first, host(last) AS last FROM network_ranges
          WHERE network_id = $1 ORDER BY id",
    )
    .bind(network_id)
    .fetch_all(conn)
    .await
}

fn assemble(row: NetworkRow, ranges: Vec<Range>, global: u64) -> Network {
    let effective = row
        .v6prefix
        .as_deref()
        .and_then(|p| V6Prefix::parse(p).ok())
        .map(|p| p.effective(global, row.id).to_string());
    Network {
        id: row.id,
        name: row.name,
        description: row.description,
        deployment: row.deployment,
        deployment_id: row.deployment_id,
        v6prefix: row.v6prefix,
        effective_v6prefix: effective,
        v4prefix: row.v4prefix,
        ranges,
        router: row.router.map(|address| Router {
            address,
            pref: row.router_pref,
        }),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Deletes a network and its allocations.
pub async fn delete(conn: &mut PgConnection, key: &Key, actor: &Actor) -> Result<()> {
    let (id, name) = key.parts();
    let (id, name): (i64, String) =
        sqlx::query_as("DELETE FROM networks WHERE id = $1 OR name = $2 RETURNING id, name")
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::not_found("network", key))?;
    events::record(
        conn,
        actor,
        NewEvent {
            kind: "network.deleted",
            data: json!({"id": id, "name": name}),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// One address of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Address {
    pub network: String,
    pub node: String,
    /// CIDR notation: the address with its network's prefix length.
    pub address: String,
}

use super::fragments::ADDRESS_CIDR;

static SELECT_ADDRESS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT nw.name AS network, n.name AS node, {ADDRESS_CIDR} AS address
           FROM network_allocations a JOIN networks nw ON nw.id = a.network_id
           JOIN nodes n ON n.id = a.node_id"
    )
});

/// Every address of a node, by network then family.
pub async fn addresses_of_node(conn: &mut PgConnection, node_id: i64) -> Result<Vec<Address>> {
    Ok(sqlx::query_as::<_, Address>(sqlx::AssertSqlSafe(format!(
        "{} WHERE a.node_id = $1 ORDER BY nw.id, a.family",
        *SELECT_ADDRESS
    )))
    .bind(node_id)
    .fetch_all(conn)
    .await?)
}

/// Every allocation on a network, by node.
pub async fn allocations(
    conn: &mut PgConnection,
    network_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<Address>> {
    Ok(sqlx::query_as::<_, Address>(sqlx::AssertSqlSafe(format!(
        "{} WHERE a.network_id = $1 ORDER BY a.node_id, a.family LIMIT $2 OFFSET $3",
        *SELECT_ADDRESS
    )))
    .bind(network_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?)
}

pub async fn id_of(conn: &mut PgConnection, key: &Key) -> Result<i64> {
    let (id, name) = key.parts();
    sqlx::query_scalar("SELECT id FROM networks WHERE id = $1 OR name = $2")
        .bind(id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("network", key))
}

/// Allocates a node's addresses on a network: one from `range` (or the first range) of
/// each family that has ranges, and the derived IPv6 address when the network has a
/// `v6prefix`. Idempotent: a node keeps the addresses it has. On the admin network the
/// IPv4 address becomes the node's admin address if it has none.
pub async fn allocate(
    conn: &mut PgConnection,
    network: &Key,
    node: &Key,
    range: Option<&str>,
    actor: &Actor,
) -> Result<Vec<Address>> {
    let (nid, nname) = network.parts();
    // One allocation at a time per network, across daemons.
    let (network_id, network_name, v6prefix): (i64, String, Option<String>) = sqlx::query_as(
        "SELECT id, name, v6prefix FROM networks WHERE id = $1 OR name = $2 FOR UPDATE",
    )
    .bind(nid)
    .bind(nname)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("network", network))?;
    let node = super::nodes::get(conn, node).await?;
    let ranges = ranges_of(conn, network_id).await?;
    if let Some(wanted) = range
        && !ranges.iter().any(|r| r.name == wanted)
    {
        return Err(Error::not_found(
            "range",
            format!("{network_name}/{wanted}"),
        ));
    }
    let mut added = Vec::new();
    for family in [4, 6] {
        let has: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM network_allocations WHERE network_id = $1 AND node_id = $2 AND family = $3)",
        )
        .bind(network_id)
        .bind(node.id)
        .bind(family as i16)
        .fetch_one(&mut *conn)
        .await?;
        if has {
            continue;
        }
        let prefix = v6prefix.as_deref().and_then(|p| V6Prefix::parse(p).ok());
        let address = if let (6, Some(prefix)) = (family, prefix) {
            let global = global_id(conn).await?;
            let net = prefix.effective(global, network_id);
            let address = ipam::node_v6_address(net, &node.name);
            insert_allocation(conn, network_id, None, node.id, IpAddr::V6(address)).await?;
            Some(IpAddr::V6(address))
        } else {
            let candidates: Vec<&Range> = ranges
                .iter()
                .filter(|r| range.is_none_or(|w| r.name == w))
                .filter(|r| r.first.contains(':') == (family == 6))
                .collect();
            let Some(chosen) = candidates.first() else {
                continue;
            };
            let address = first_free(conn, chosen.id, node.id).await?.ok_or_else(|| {
                Error::conflict(
                    "range_exhausted",
                    format!(
                        "range `{}` of network `{network_name}` has no free address",
                        chosen.name
                    ),
                )
            })?;
            insert_allocation(conn, network_id, Some(chosen.id), node.id, address).await?;
            Some(address)
        };
        if let Some(address) = address {
            added.push(address.to_string());
            if family == 4 && network_name == ADMIN_NETWORK && node.address.is_none() {
                sqlx::query("UPDATE nodes SET address = $2::inet WHERE id = $1")
                    .bind(node.id)
                    .bind(address.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(Error::from_constraint)?;
            }
        }
    }
    if !added.is_empty() {
        // a node change like any other: on_node_change hooks (DNS, DHCP) see it
        events::record(
            conn,
            actor,
            NewEvent {
                kind: "node.updated",
                reason: format!("addresses allocated on network {network_name}"),
                node_id: Some(node.id),
                deployment_id: Some(node.deployment_id),
                data: json!({
                    "id": node.id,
                    "name": node.name,
                    "changes": {"addresses": {"network": network_name, "added": added}},
                    "available": node.available,
                }),
                ..Default::default()
            },
        )
        .await?;
    }
    let mut all = addresses_of_node(conn, node.id).await?;
    all.retain(|a| a.network == network_name);
    Ok(all)
}

async fn insert_allocation(
    conn: &mut PgConnection,
    network_id: i64,
    range_id: Option<i64>,
    node_id: i64,
    address: IpAddr,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO network_allocations (network_id, range_id, node_id, address)
         VALUES ($1, $2, $3, $4::inet)",
    )
    .bind(network_id)
    .bind(range_id)
    .bind(node_id)
    .bind(address.to_string())
    .execute(conn)
    .await
    .map_err(Error::from_constraint)?;
    Ok(())
}

/// The lowest address of a range no node has: the range's first address, or the address
/// after a taken one, whichever is free and lowest. Taken are the network's allocations and
/// other nodes' admin addresses (a discovered machine's, say): two nodes never share one.
async fn first_free(
    conn: &mut PgConnection,
    range_id: i64,
    node_id: i64,
) -> Result<Option<IpAddr>> {
    let free: Option<String> = sqlx::query_scalar(
        "WITH r AS (SELECT network_id, first, last FROM network_ranges WHERE id = $1),
              taken AS (SELECT a.address FROM network_allocations a, r
                         WHERE a.network_id = r.network_id AND a.address BETWEEN r.first AND r.last
                        UNION
                        SELECT host(n.address)::inet FROM nodes n, r
                         WHERE n.id <> $2 AND host(n.address)::inet BETWEEN r.first AND r.last)
         SELECT host(c.address) FROM (
             SELECT r.first AS address FROM r
             UNION ALL
             SELECT t.address + 1 FROM taken t, r WHERE t.address < r.last
         ) c
         WHERE NOT EXISTS (SELECT 1 FROM taken t WHERE t.address = c.address)
         ORDER BY c.address LIMIT 1",
    )
    .bind(range_id)
    .bind(node_id)
    .fetch_optional(conn)
    .await?;
    Ok(free.and_then(|a| a.parse().ok()))
}
