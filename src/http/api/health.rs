//! `/healthz`, `/readyz` and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::http::types::Health;

/// The process is up (does not touch the database). No token needed.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)),
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// The database answers and every migration this binary knows is applied. No token needed.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Database unreachable, or migrations pending", body = Health),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                reason: Some(reason.into()),
            }),
        )
            .into_response()
    };
    match state.store().migration_status().await {
        Ok(st) if st.is_current() => Json(Health {
            status: "ready".into(),
            reason: None,
        })
        .into_response(),
        Ok(st) => {
            tracing::warn!(pending = ?st.pending, "not ready: migrations pending");
            unavailable("migrations pending: run `celeriac migrate`")
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            unavailable("database unreachable")
        }
    }
}

/// This document (OpenAPI 3.1). No token needed.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut r = state.openapi_json().to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
