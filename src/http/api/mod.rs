//! The REST API. Each handler carries its OpenAPI description (`#[utoipa::path]`) and is
//! registered with `routes!`, so a route cannot exist without being documented, nor the other
//! way round.

mod flows;
mod health;
mod periodic;
mod queues;
mod stats;
mod tasks;
mod workers;

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::task::TaskId;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Celeriac API",
        description = "Tasks, queues, workers and periodic tasks of a Celeriac deployment, \
            read from and written to PostgreSQL.\n\nAuthentication: `Authorization: Bearer <token>`. The \
            admin token (CELERIAC_API_TOKEN) may do everything; the read-only token \
            (CELERIAC_API_READ_TOKEN) may use the GET endpoints and /metrics. A server started \
            without any token (loopback only) accepts every request as admin. Each operation \
            says which scope it needs.\n\nErrors are JSON: `{\"error\": {\"code\", \"message\", \
            \"field\"}}`; `field` names the request field or query parameter at fault.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tasks", description = "Enqueue, inspect, revoke and retry tasks"),
        (name = "queues", description = "Queue depth and rates; pause, resume, purge"),
        (name = "workers", description = "Worker processes and their heartbeats"),
        (name = "stats", description = "Throughput over time"),
        (name = "workflows", description = "Chain, group and chord; group results"),
        (name = "limits", description = "Rate limits and concurrency caps across all workers"),
        (name = "periodic", description = "Periodic tasks (django-celery-beat's tables) and the beat scheduler"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every documented route.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(tasks::enqueue, tasks::list))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::revoke))
        .routes(routes!(tasks::retry))
        .routes(routes!(queues::list))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(queues::purge))
        .routes(routes!(workers::list))
        .routes(routes!(stats::throughput))
        .routes(routes!(flows::apply_workflow))
        .routes(routes!(flows::get_group))
        .routes(routes!(flows::list_limits))
        .routes(routes!(flows::set_limit, flows::remove_limit))
        .routes(routes!(health::openapi_json))
        .merge(periodic::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(super::metrics::metrics))
}

/// The OpenAPI document.
pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// 404 for any path nobody serves.
pub(super) async fn not_found() -> Response {
    ApiError::not_found("no such endpoint").into_response()
}

/// 405 for a known path with the wrong method.
pub(super) async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
    .into_response()
}

/// A task id from the path (400 naming `id` when it is not a UUID).
pub(crate) struct TaskIdPath(pub TaskId);

impl FromRequestParts<AppState> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_parameter("id", e.body_text()))?;
        raw.parse::<TaskId>().map(TaskIdPath).map_err(|_| {
            ApiError::invalid_parameter("id", format!("{raw:?} is not a task id (UUID)"))
        })
    }
}

/// A queue name from the path (400 naming `name` when empty or too long).
pub(crate) struct QueuePath(pub String);

impl FromRequestParts<AppState> for QueuePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_parameter("name", e.body_text()))?;
        if raw.is_empty() || raw.len() > 255 {
            return Err(ApiError::invalid_parameter(
                "name",
                "a queue name is 1 to 255 characters",
            ));
        }
        Ok(QueuePath(raw))
    }
}
