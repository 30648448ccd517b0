//! How crowbar gets into nodes: its SSH public key (`/api/v2/ssh_key`) and the host keys it
//! pinned (`/api/v2/nodes/{node}/host_key`; DELETE accepts a changed key on next contact).

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::audit::Object;
use crate::{
    db::{self, keys::Key},
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::ApiPath,
        state::AppState,
    },
    ssh::{PublicKey, fingerprint},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ssh_key))
        .routes(routes!(host_key, clear_host_key))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SshKey {
    /// One `authorized_keys` line: what nodes must authorize for root.
    public_key: String,
    fingerprint: Option<String>,
}

/// The daemon's SSH public key, which nodes must authorize for root.
#[utoipa::path(get, path = "/api/v2/ssh_key", tag = "nodes",
    responses((status = 200, body = SshKey), (status = 404, body = ErrorBody)))]
async fn ssh_key(State(state): State<AppState>) -> Result<Json<SshKey>, ApiError> {
    let public_key = state
        .ssh_public_key
        .clone()
        .ok_or_else(|| ApiError::not_found("this daemon has no SSH key"))?;
    let fingerprint = PublicKey::from_openssh(&public_key)
        .ok()
        .map(|k| fingerprint(&k));
    Ok(Json(SshKey {
        public_key,
        fingerprint,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HostKey {
    node: String,
    node_id: i64,
    /// The pinned key (OpenSSH format), or null when the next contact pins one.
    host_key: Option<String>,
    fingerprint: Option<String>,
}

async fn load(state: &AppState, node: &str) -> Result<HostKey, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let found = db::nodes::get(&mut conn, &Key::parse(node)).await?;
    drop(conn);
    let host_key = db::host_keys::pinned(&state.pool, found.id).await?;
    let fingerprint = host_key
        .as_deref()
        .and_then(|line| PublicKey::from_openssh(line).ok())
        .map(|k| fingerprint(&k));
    Ok(HostKey {
        node: found.name,
        node_id: found.id,
        host_key,
        fingerprint,
    })
}

/// The host key pinned for a node (null until the first contact pins one).
#[utoipa::path(get, path = "/api/v2/nodes/{node}/host_key", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = HostKey), (status = 404, body = ErrorBody)))]
async fn host_key(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<HostKey>, ApiError> {
    Ok(Json(load(&state, &node).await?))
}

/// Forgets the pinned key: the next contact (probe or run) pins whatever key the node
/// presents, and a node kept dead by a changed key comes back. Returns the key forgotten.
#[utoipa::path(delete, path = "/api/v2/nodes/{node}/host_key", tag = "nodes",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = HostKey), (status = 404, body = ErrorBody)))]
async fn clear_host_key(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<HostKey>, ApiError> {
    let before = load(&state, &node).await?;
    let mut tx = state.pool.begin().await?;
    db::host_keys::clear(&mut tx, &Key::Id(before.node_id), &acting.actor).await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", before.node_id, &before.node),
            serde_json::json!({ "forgot": before.fingerprint }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(before))
}
