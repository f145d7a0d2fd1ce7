//! `/api/v1/queues`: depth, age and rate of every queue; pause, resume, purge.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::{AppState, QueuePath};
use crate::http::auth::{Admin, Read};
use crate::http::error::ApiError;
use crate::http::types::{ErrorBody, QueueInfo, QueueList, QueuePaused, QueuePurged, Throughput};

/// Every queue: depth (ready tasks), scheduled, running, age of the oldest ready task, live
/// workers, and finished attempts over the last minute.
///
/// A queue is listed while it has tasks waiting or running, consumers, a setting (paused), or
/// throughput in the last minute. Rates come from workers' heartbeats, so they lag by up to
/// one heartbeat (5 s by default). Scope: read.
#[utoipa::path(
    get, path = "/queues", operation_id = "list_queues", tag = "queues",
    responses(
        (status = 200, description = "The queues, by name", body = QueueList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    _: Read,
    State(state): State<AppState>,
) -> Result<Json<QueueList>, ApiError> {
    let stats = state.client().queue_stats().await?;
    let rates = state.store().queue_throughput_rates().await?;
    let mut queues: BTreeMap<String, QueueInfo> = stats
        .into_iter()
        .map(|s| {
            (
                s.queue.clone(),
                QueueInfo {
                    name: s.queue,
                    paused: s.paused,
                    ready: s.ready,
                    scheduled: s.scheduled,
                    running: s.running,
                    throttled: s.throttled,
                    oldest_ready_at: s.oldest_ready_at,
                    oldest_ready_age_s: s.oldest_ready_age_s,
                    workers: s.workers,
                    last_minute: Throughput::default(),
                    rate_per_s: 0.0,
                },
            )
        })
        .collect();
    for r in rates {
        let q = queues.entry(r.queue.clone()).or_insert_with(|| QueueInfo {
            name: r.queue.clone(),
            paused: false,
            ready: 0,
            scheduled: 0,
            running: 0,
            throttled: 0,
            oldest_ready_at: None,
            oldest_ready_age_s: None,
            workers: 0,
            last_minute: Throughput::default(),
            rate_per_s: 0.0,
        });
        q.last_minute = Throughput {
            succeeded: r.succeeded,
            failed: r.failed,
            retried: r.retried,
            revoked: r.revoked,
        };
        let finished = (r.succeeded + r.failed + r.revoked) as f64;
        q.rate_per_s = if r.seconds > 0.0 {
            finished / r.seconds
        } else {
            0.0
        };
    }
    Ok(Json(QueueList {
        queues: queues.into_values().collect(),
    }))
}

/// Pause a queue on every worker: nothing more is claimed from it; running tasks finish.
///
/// Pausing a queue that has no tasks yet is allowed (it is created paused). Scope: admin.
#[utoipa::path(
    post, path = "/queues/{name}/pause", operation_id = "pause_queue", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Paused", body = QueuePaused),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pause(
    _: Admin,
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> Result<Json<QueuePaused>, ApiError> {
    state.client().set_paused(&name, true).await?;
    Ok(Json(QueuePaused {
        queue: name,
        paused: true,
    }))
}

/// Resume a paused queue (its workers are woken at once). Scope: admin.
#[utoipa::path(
    post, path = "/queues/{name}/resume", operation_id = "resume_queue", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Resumed", body = QueuePaused),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume(
    _: Admin,
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> Result<Json<QueuePaused>, ApiError> {
    state.client().set_paused(&name, false).await?;
    Ok(Json(QueuePaused {
        queue: name,
        paused: false,
    }))
}

/// Purge a queue: revoke (reason `purged`) every waiting task (ready, scheduled, retrying).
///
/// Running tasks finish. The revoked rows stay visible until pruned. Scope: admin.
#[utoipa::path(
    post, path = "/queues/{name}/purge", operation_id = "purge_queue", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Purged", body = QueuePurged),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn purge(
    _: Admin,
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> Result<Json<QueuePurged>, ApiError> {
    let purged = state.client().purge(&name).await?;
    Ok(Json(QueuePurged {
        queue: name,
        purged,
    }))
}
