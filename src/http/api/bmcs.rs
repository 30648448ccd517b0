//! Nodes' BMCs: `PUT/GET/DELETE /api/v2/nodes/{node}/bmc` enroll, show (never the password)
//! and remove one; `DELETE .../bmc/cert` accepts a changed certificate (the next contact pins
//! what the BMC presents); `GET /api/v2/nodes/{node}/power` reads the power state from the
//! BMC now.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::schemas;
use crate::{
    db::{self, audit::Object, bmcs::Bmc, keys::Key},
    http::{
        audit::Acting,
        error::{ApiError, ErrorBody},
        extract::{ApiJson, ApiPath},
        state::AppState,
    },
    power::{BmcError, node::PowerError, vault::VaultError},
    secret::Secret,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show, set, remove))
        .routes(routes!(accept_certificate))
        .routes(routes!(power))
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum BmcDriver {
    Redfish,
    /// IPMI 2.0 over LAN (lanplus), through ipmitool.
    Ipmi,
}

/// A BMC's settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = BmcSettings)]
#[serde(deny_unknown_fields)]
struct SetBody {
    driver: BmcDriver,
    #[schema(schema_with = schemas::bmc_address)]
    address: String,
    #[serde(default, deserialize_with = "crate::domain::number::whole_or_null")]
    #[schema(schema_with = schemas::port_or_null)]
    port: Option<u16>,
    #[serde(default)]
    #[schema(schema_with = schemas::bmc_system_or_null)]
    system: Option<String>,
    #[schema(schema_with = schemas::bmc_username)]
    username: String,
    #[schema(schema_with = schemas::bmc_password)]
    password: Secret,
}

/// An enrolled BMC and the check queued with it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BmcEnrolled)]
struct Enrolled {
    #[serde(flatten)]
    bmc: Bmc,
    check: db::power_ops::PowerOp,
}

async fn node_of(state: &AppState, node: &str) -> Result<db::nodes::Node, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(db::nodes::get(&mut conn, &Key::parse(node)).await?)
}

/// The node's BMC (404 when it has none): everything but the password.
#[utoipa::path(get, path = "/api/v2/nodes/{node}/bmc", tag = "power",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Bmc), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Bmc>, ApiError> {
    let found = node_of(&state, &node).await?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        db::bmcs::require(&mut conn, found.id, &found.name).await?,
    ))
}

/// Enrolls the node's BMC, or replaces its settings. The password is sealed with this
/// daemon's key and never returned. Another address, port, driver or system forgets the
/// pinned certificate. A `check` power operation is queued with it (the credentials, what
/// the BMC tells of the machine, whether the account may change its power); the answer has
/// it under `check`, to follow at `GET /api/v2/power_ops/{id}`.
#[utoipa::path(put, path = "/api/v2/nodes/{node}/bmc", tag = "power", request_body = SetBody,
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Enrolled), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<Json<Enrolled>, ApiError> {
    crate::domain::bmc::check(
        &body.address,
        &body.username,
        body.password.expose(),
        body.system.as_deref(),
    )
    .map_err(|e| ApiError::unprocessable("invalid_bmc", e))?;
    if body.port == Some(0) {
        return Err(ApiError::unprocessable(
            "invalid_bmc",
            "port: 1 to 65535, or null for the driver's default",
        ));
    }
    let driver = match body.driver {
        BmcDriver::Redfish => "redfish",
        BmcDriver::Ipmi => "ipmi",
    };
    if matches!(body.driver, BmcDriver::Ipmi) && body.system.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_bmc",
            "system: only a Redfish BMC has systems to choose from; leave it out for IPMI",
        ));
    }
    let found = node_of(&state, &node).await?;
    let mut tx = state.pool.begin().await?;
    let (bmc, check) = db::bmcs::enroll(
        &mut tx,
        found.id,
        &found.name,
        &db::bmcs::NewBmc {
            driver: driver.into(),
            address: body.address.clone(),
            port: body.port.map(i32::from),
            system: body.system.clone(),
            username: body.username.clone(),
            password_sealed: state.power.vault().seal(&body.password),
        },
        &acting.actor,
    )
    .await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", found.id, &found.name),
            serde_json::json!({
                "driver": driver, "address": body.address, "port": body.port,
                "system": body.system, "username": body.username,
            }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(Enrolled { bmc, check }))
}

/// Removes the node's BMC and its sealed credentials.
#[utoipa::path(delete, path = "/api/v2/nodes/{node}/bmc", tag = "power",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let found = node_of(&state, &node).await?;
    let mut tx = state.pool.begin().await?;
    if !db::bmcs::delete(&mut tx, found.id).await? {
        return Err(db::Error::not_found("BMC of node", &found.name).into());
    }
    acting
        .record(
            &mut tx,
            &Object::new("node", found.id, &found.name),
            serde_json::json!({}),
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts a changed BMC certificate: the pinned one is forgotten and the next contact pins
/// what the BMC presents. Returns the BMC, with no certificate pinned.
#[utoipa::path(delete, path = "/api/v2/nodes/{node}/bmc/cert", tag = "power",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Bmc), (status = 404, body = ErrorBody)))]
async fn accept_certificate(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Bmc>, ApiError> {
    let found = node_of(&state, &node).await?;
    let mut tx = state.pool.begin().await?;
    db::bmcs::require(&mut tx, found.id, &found.name).await?;
    let forgot = db::bmcs::forget_certificate(&mut tx, found.id).await?;
    acting
        .record(
            &mut tx,
            &Object::new("node", found.id, &found.name),
            serde_json::json!({ "forgot": forgot }),
        )
        .await?;
    let bmc = db::bmcs::require(&mut tx, found.id, &found.name).await?;
    tx.commit().await?;
    Ok(Json(bmc))
}

/// A node's power state, read from its BMC now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NodePower)]
struct Power {
    node: String,
    /// `on`, `off` or `unknown`
    state: String,
    checked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The certificate pinned (on first contact, by this read).
    cert_fingerprint: Option<String>,
}

/// Reads the node's power state from its BMC (502 `bmc_error` naming the BMC when it fails,
/// 409 `bmc_certificate_changed` when the BMC presents another certificate than the pinned one).
#[utoipa::path(get, path = "/api/v2/nodes/{node}/power", tag = "power",
    params(("node" = String, Path, description = "the node's id or name")),
    responses((status = 200, body = Power), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn power(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Power>, ApiError> {
    let found = node_of(&state, &node).await?;
    let bmc = state
        .power
        .read(found.id, &found.name)
        .await
        .map_err(power_error)?;
    Ok(Json(Power {
        node: bmc.node,
        state: bmc.power.unwrap_or_else(|| "unknown".into()),
        checked_at: bmc.power_checked_at,
        cert_fingerprint: bmc.cert_fingerprint,
    }))
}

/// What a failed BMC operation answers.
fn power_error(e: PowerError) -> ApiError {
    match e {
        PowerError::Db(e) => e.into(),
        PowerError::Vault(e @ VaultError::OtherKey { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "bmc_key_mismatch", e.to_string())
        }
        PowerError::Vault(e) => ApiError::internal(e),
        PowerError::Bmc(e @ BmcError::CertificateChanged { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "bmc_certificate_changed",
            e.to_string(),
        ),
        PowerError::Bmc(e) => ApiError::new(StatusCode::BAD_GATEWAY, "bmc_error", e.to_string()),
    }
}
