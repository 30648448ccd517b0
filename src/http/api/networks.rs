//! `/api/v2/networks`, their allocations, and `/api/v2/nodes/{node}/addresses`.

use std::net::IpAddr;

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::respond::created;
use crate::db::audit::Object;
use crate::{
    db::{
        self,
        keys::Key,
        networks::{Address, Network, NewNetwork, NewRange},
    },
    domain::ipam::V6Prefix,
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath, ApiQuery, ObjectKey, PageQuery},
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, remove))
        .routes(routes!(allocations, allocate))
        .routes(routes!(node_addresses))
}

#[utoipa::path(get, path = "/api/v2/networks", tag = "networks", params(PageQuery),
    responses((status = 200, description = "networks ordered by id", body = Vec<Network>)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Network>>, ApiError> {
    let page = q.page();
    Ok(Json(
        db::networks::list(&state.pool, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NetworkCreate)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[schema(schema_with = super::schemas::network_name)]
    name: String,
    #[serde(default)]
    description: String,
    deployment: Option<ObjectKey>,
    /// `auto` or a /64; the `admin` network gets `auto` when none is given.
    v6prefix: Option<String>,
    /// The IPv4 subnet, e.g. `198.51.100.0/24` (for prefix lengths).
    #[schema(schema_with = super::schemas::ipv4_subnet_or_null)]
    v4prefix: Option<String>,
    #[serde(default)]
    ranges: Vec<RangeBody>,
    router: Option<RouterBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NetworkRangeCreate)]
#[serde(deny_unknown_fields)]
struct RangeBody {
    #[schema(schema_with = super::schemas::network_name)]
    name: String,
    #[schema(schema_with = super::schemas::ip_address)]
    first: String,
    #[schema(schema_with = super::schemas::ip_address)]
    last: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NetworkRouterCreate)]
#[serde(deny_unknown_fields)]
struct RouterBody {
    #[schema(schema_with = super::schemas::ip_address)]
    address: String,
    #[serde(default, deserialize_with = "crate::domain::number::whole")]
    pref: i32,
}

fn address(text: &str, what: &str) -> Result<IpAddr, ApiError> {
    text.parse().map_err(|_| {
        ApiError::unprocessable(
            "invalid_address",
            format!("{what}: `{text}` is not an IP address"),
        )
    })
}

impl CreateBody {
    /// Parses every field, so the store receives only valid values.
    fn parse(self) -> Result<NewNetwork, ApiError> {
        let v6prefix = self
            .v6prefix
            .as_deref()
            .map(V6Prefix::parse)
            .transpose()
            .map_err(|m| ApiError::unprocessable("invalid_prefix", m))?;
        let v4prefix = self
            .v4prefix
            .as_deref()
            .map(|p| {
                p.parse::<ipnet::Ipv4Net>().map_err(|_| {
                    ApiError::unprocessable(
                        "invalid_prefix",
                        format!("v4prefix: `{p}` is not an IPv4 subnet like 198.51.100.0/24"),
                    )
                })
            })
            .transpose()?;
        let mut ranges = Vec::with_capacity(self.ranges.len());
        for r in self.ranges {
            ranges.push(NewRange {
                first: address(&r.first, &format!("range `{}` first", r.name))?,
                last: address(&r.last, &format!("range `{}` last", r.name))?,
                name: r.name,
            });
        }
        let router = self
            .router
            .map(|r| Ok::<_, ApiError>((address(&r.address, "router")?, r.pref)))
            .transpose()?;
        Ok(NewNetwork {
            name: self.name,
            description: self.description,
            deployment: self.deployment.map(|k| k.0),
            v6prefix,
            v4prefix,
            ranges,
            router,
        })
    }
}

#[utoipa::path(post, path = "/api/v2/networks", tag = "networks", request_body = CreateBody,
    responses((status = 201, body = Network),
              (status = 409, description = "the name is taken", body = ErrorBody),
              (status = 422, description = "a bad prefix, address or range", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let new = body.parse()?;
    let mut tx = state.pool.begin().await?;
    let network = db::networks::create(&mut tx, &new, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("network", network.id, &network.name),
            serde_json::json!({ "deployment": network.deployment }),
        )
        .await?;
    tx.commit().await?;
    Ok(created(format!("/api/v2/networks/{}", network.id), network))
}

#[utoipa::path(get, path = "/api/v2/networks/{network}", tag = "networks",
    params(("network" = String, Path, description = "the network's id or name")),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(network): ApiPath<String>,
) -> Result<Json<Network>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::networks::get(&mut conn, &Key::parse(&network)).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v2/networks/{network}", tag = "networks",
    params(("network" = String, Path, description = "the network's id or name")),
    responses((status = 204, description = "deleted, with its allocations"), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(network): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let key = Key::parse(&network);
    let gone = db::networks::get(&mut tx, &key).await?;
    db::networks::delete(&mut tx, &key, &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("network", gone.id, &gone.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v2/networks/{network}/allocations", tag = "networks",
    params(("network" = String, Path, description = "the network's id or name"), PageQuery),
    responses((status = 200, description = "addresses by node", body = Vec<Address>), (status = 404, body = ErrorBody)))]
async fn allocations(
    State(state): State<AppState>,
    ApiPath(network): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Vec<Address>>, ApiError> {
    let page = q.page();
    let mut conn = state.pool.acquire().await?;
    let id = db::networks::id_of(&mut conn, &Key::parse(&network)).await?;
    Ok(Json(
        db::networks::allocations(&mut conn, id, page.limit, page.offset).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AllocationCreate)]
#[serde(deny_unknown_fields)]
struct AllocateBody {
    node: ObjectKey,
    /// The range to take the address from; default: the first range of each family.
    range: Option<String>,
}

/// Allocates the node's addresses on the network; the same node always gets the same ones.
#[utoipa::path(post, path = "/api/v2/networks/{network}/allocations", tag = "networks",
    params(("network" = String, Path, description = "the network's id or name")),
    request_body = AllocateBody,
    responses((status = 200, description = "the node's addresses on the network", body = Vec<Address>),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the range is exhausted", body = ErrorBody)))]
async fn allocate(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(network): ApiPath<String>,
    ApiJson(body): ApiJson<AllocateBody>,
) -> Result<Json<Vec<Address>>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let addresses = db::networks::allocate(
        &mut tx,
        &Key::parse(&network),
        &body.node.0,
        body.range.as_deref(),
        &acting.actor,
    )
    .await?;
    let network = db::networks::get(&mut tx, &Key::parse(&network)).await?;
    let summary = serde_json::json!({
        "node": body.node.0.to_string(),
        "addresses": addresses.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(),
    });
    acting
        .record(
            &mut tx,
            &Object::new("network", network.id, &network.name),
            summary,
        )
        .await?;
    tx.commit().await?;
    Ok(Json(addresses))
}

#[utoipa::path(get, path = "/api/v2/nodes/{node}/addresses", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, description = "every address of the node, in CIDR notation", body = Vec<Address>),
              (status = 404, body = ErrorBody)))]
async fn node_addresses(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Vec<Address>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let id = db::nodes::id_of(&mut conn, &Key::parse(&node)).await?;
    Ok(Json(db::networks::addresses_of_node(&mut conn, id).await?))
}
