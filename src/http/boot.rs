//! `GET /boot/{mac}`: the iPXE script of the machine with that MAC (API.md "Boot files").
//! No auth — machines fetch it while booting, before they have any secret — so it says only
//! what the node's bootenv says and never anything secret; each source may fetch it only so
//! often (`http::rate`).

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use super::{error::ApiError, extract::ApiPath, state::AppState};
use crate::{db, provisioner::canonical_mac};

/// The route, behind its per-source rate limit.
pub fn router(limit: std::sync::Arc<super::rate::SourceLimit>) -> Router<AppState> {
    Router::new()
        .route("/boot/{mac}", get(boot_script))
        .route_layer(axum::middleware::from_fn_with_state(
            limit,
            super::rate::limit,
        ))
}

/// The node's current bootenv, rendered; unknown MACs get discovery.
async fn boot_script(
    State(state): State<AppState>,
    ApiPath(mac): ApiPath<String>,
) -> Result<Response, ApiError> {
    let mac = canonical_mac(&mac).ok_or_else(|| {
        ApiError::bad_request("invalid_mac", format!("`{mac}` is not a MAC address"))
    })?;
    let node = db::nodes::by_mac(&state.pool, &mac).await?;
    let script = state
        .provisioner
        .boot_script(&mac, node.as_ref().map(|(n, b)| (n.as_str(), b.as_str())))
        .map_err(|e| match e {
            crate::provisioner::BootenvError::Unknown(name) => ApiError::not_found(format!(
                "the node's bootenv `{name}` is not defined in bootenvs/"
            )),
            other => ApiError::internal(other),
        })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        script,
    )
        .into_response())
}
