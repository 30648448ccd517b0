//! `/api/v2/anneal`: convergence status (SEMANTICS §5), as an HTTP status a script can test.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, anneal::AnnealStatus, keys::Key},
    http::{
        error::{ApiError, ErrorBody},
        extract::ApiQuery,
        state::AppState,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    /// Only this deployment's noderoles (name or id).
    deployment: Option<String>,
}

/// The body: `{"status", "counts"}`; when failed (a 409 like any other) also the error
/// body's `error`, so clients that only look for `error` on 4xx find it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AnnealReply)]
struct Body {
    #[serde(flatten)]
    status: AnnealStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// 409 `failed`, 202 `working` / `scheduled` / `blocked`, 200 `finished`.
#[utoipa::path(get, path = "/api/v2/anneal", tag = "runs", params(StatusQuery),
    responses((status = 200, description = "`finished`", body = Body),
              (status = 202, description = "`working`, `scheduled` or `blocked`", body = Body),
              (status = 409, description = "`failed` (the body also has `error`)", body = Body),
              (status = 404, description = "unknown deployment", body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<(StatusCode, Json<Body>), ApiError> {
    let deployment = match q.deployment {
        Some(key) => {
            let mut conn = state.pool.acquire().await?;
            Some(
                db::deployments::get(&mut conn, &Key::parse(&key))
                    .await?
                    .name,
            )
        }
        None => None,
    };
    let status = db::anneal::status(&state.pool, deployment.as_deref()).await?;
    let error = (status.status == "failed").then(|| {
        json!({
            "code": "failed",
            "message": "noderoles failed; list them with /api/v2/node_roles?state=error",
        })
    });
    Ok((http_status(status.status), Json(Body { status, error })))
}

fn http_status(status: &str) -> StatusCode {
    match status {
        "failed" => StatusCode::CONFLICT,
        "finished" => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_http() {
        assert_eq!(http_status("failed"), StatusCode::CONFLICT);
        assert_eq!(http_status("working"), StatusCode::ACCEPTED);
        assert_eq!(http_status("scheduled"), StatusCode::ACCEPTED);
        assert_eq!(http_status("blocked"), StatusCode::ACCEPTED);
        assert_eq!(http_status("finished"), StatusCode::OK);
    }
}
