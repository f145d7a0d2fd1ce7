//! `/api/v1/stats`: throughput over time (the dashboard's chart).

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::http::auth::Read;
use crate::http::error::ApiError;
use crate::http::extract::QueryParams;
use crate::http::types::{ErrorBody, Throughput, ThroughputPoint, ThroughputSeries};

/// Finished attempts per minute (succeeded, failed, retried, revoked), oldest first.
///
/// Counted by the workers and added to the database on each heartbeat (so the current minute
/// lags by up to one heartbeat); kept for a day. Scope: read.
#[utoipa::path(
    get, path = "/stats/throughput", operation_id = "throughput", tag = "stats",
    params(
        ("minutes" = Option<u32>, Query, description = "How many minutes back, 1..=1440 (default 60)"),
        ("queue" = Option<String>, Query, description = "Only this queue"),
    ),
    responses(
        (status = 200, description = "One point per minute", body = ThroughputSeries),
        (status = 400, description = "A parameter is wrong", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn throughput(
    _: Read,
    State(state): State<AppState>,
    mut q: QueryParams,
) -> Result<Json<ThroughputSeries>, ApiError> {
    let minutes = q
        .parse("minutes", |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=1440).contains(n))
                .ok_or_else(|| "must be an integer from 1 to 1440".to_string())
        })?
        .unwrap_or(60);
    let queue = q.take("queue")?;
    q.finish()?;
    let rows = state
        .store()
        .queue_throughput_series(minutes, queue.as_deref())
        .await?;
    Ok(Json(ThroughputSeries {
        points: rows
            .into_iter()
            .map(|r| ThroughputPoint {
                minute: r.minute,
                counts: Throughput {
                    succeeded: r.succeeded,
                    failed: r.failed,
                    retried: r.retried,
                    revoked: r.revoked,
                },
            })
            .collect(),
    }))
}
