//! `/api/v1/workers`.

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::http::auth::Read;
use crate::http::error::ApiError;
use crate::http::types::{ErrorBody, WorkerInfo, WorkerList};

/// Registered workers: host, pid, queues, concurrency, running tasks, last heartbeat.
///
/// A dead worker (lease expired) stays listed with `alive: false` until it is forgotten, a
/// minute after its tasks were rescued. Ages use the database clock. Scope: read.
#[utoipa::path(
    get, path = "/workers", operation_id = "list_workers", tag = "workers",
    responses(
        (status = 200, description = "The workers, oldest first", body = WorkerList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    _: Read,
    State(state): State<AppState>,
) -> Result<Json<WorkerList>, ApiError> {
    let rows = state.client().workers().await?;
    let now = state.store().clock_read().await?;
    let workers = rows
        .into_iter()
        .map(|w| WorkerInfo {
            id: w.id,
            hostname: w.hostname,
            pid: w.pid,
            queues: w.queues,
            concurrency: w.concurrency,
            running: w.running,
            version: w.version,
            started_at: w.started_at,
            heartbeat_at: w.heartbeat_at,
            heartbeat_age_s: ((now - w.heartbeat_at).num_milliseconds().max(0) as f64) / 1000.0,
            expires_at: w.expires_at,
            alive: w.alive,
            stopping: w.stopping,
        })
        .collect();
    Ok(Json(WorkerList { workers }))
}
