//! `POST /discover`: an unknown machine registers itself (SEMANTICS.md §10).
//!
//! Like `/boot/{mac}` this belongs to the boot-time surface and needs no token: the
//! discovery image has no secret yet. It is narrow on purpose: it can only create a node
//! for a new MAC at an address on a configured network, or hand a fresh token for a node
//! discovery made that no admin accepted yet (see `provisioner::discovery` and
//! docs/provisioning.md); and each source may call it only so often (`http::rate`).

use std::net::IpAddr;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;

use super::{error::ApiError, extract::ApiJson, state::AppState};
use crate::provisioner::{
    canonical_mac,
    discovery::{self, DiscoveryError},
};

/// The route, behind its per-source rate limit.
pub fn router(limit: std::sync::Arc<super::rate::SourceLimit>) -> Router<AppState> {
    Router::new()
        .route("/discover", post(discover))
        .route_layer(axum::middleware::from_fn_with_state(
            limit,
            super::rate::limit,
        ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverBody {
    mac: String,
    /// The address the machine booted with; it becomes a new node's admin address.
    address: Option<String>,
}

/// 201 with the new node and its token; 200 with a fresh token when the MAC was known and
/// its node is discovered and not accepted; 409 for any other known MAC; 422 for an
/// address off the networks or another node's; 429 when as many discovered nodes as
/// `--discovery-limit` wait for an admin.
async fn discover(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DiscoverBody>,
) -> Result<Response, ApiError> {
    let mac = canonical_mac(&body.mac).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_mac",
            format!("`{}` is not a MAC address", body.mac),
        )
    })?;
    let address = body
        .address
        .map(|a| {
            a.parse::<IpAddr>().map_err(|_| {
                ApiError::unprocessable("invalid_address", format!("`{a}` is not an IP address"))
            })
        })
        .transpose()?;
    let discovered = discovery::discover(
        &state.pool,
        &state.hooks,
        &state.provisioner.domain,
        state.provisioner.discovery_limit,
        &mac,
        address,
    )
    .await
    .map_err(|e| match e {
        DiscoveryError::Store(e) => ApiError::from(e),
        DiscoveryError::Veto(v) => ApiError::from(v),
        full @ DiscoveryError::Full { .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "discovery_full",
            full.to_string(),
        ),
    })?;
    let status = if discovered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(discovered)).into_response())
}
