//! `/api/v1/tasks`: enqueue, list (keyset pages), detail, revoke, retry.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::{AppState, TaskIdPath};
use crate::http::auth::{Admin, Read};
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, OptionalJsonBody, QueryParams};
use crate::http::types::{
    EnqueueRequest, ErrorBody, ExpiresSpec, Progress, RevokeRequest, RevokeResult, TaskCreated,
    TaskDetail, TaskErrorInfo, TaskOptions, TaskPage, TaskSummary, UniqueScopeName,
};
use crate::store::{RetryOutcome, TaskDetailRow, TaskListFilter, TaskListRow};
use crate::task::{NewTask, TaskId, TaskState, UniqueScope};

/// Default and largest page size.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

fn task_url(id: TaskId) -> String {
    format!("/api/v1/tasks/{id}")
}

fn created(body: TaskCreated) -> Response {
    let mut r = (StatusCode::CREATED, Json(&body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&body.url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Enqueue a task.
///
/// Takes every option of the SQL API and the Rust client. Scope: admin.
#[utoipa::path(
    post, path = "/tasks", operation_id = "enqueue_task", tag = "tasks",
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Enqueued; `Location` is its status URL", body = TaskCreated,
         headers(("Location" = String, description = "The task's status URL"))),
        (status = 200, description = "A live task holds `unique_key`: that task (`existing: true`)", body = TaskCreated),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 409, description = "`task_id` is taken", body = ErrorBody),
        (status = 413, description = "Body or payload over the limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "A field has a wrong type or value (`field` names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<EnqueueRequest>,
) -> Result<Response, ApiError> {
    let mut task = new_task(req)?;
    // Give the id here, so a different answer means a live task held the unique key.
    let id = *task.id.get_or_insert_with(TaskId::new);
    let r = state.client().enqueue(task).await?;
    let body = TaskCreated {
        id: r.id().0,
        url: task_url(r.id()),
        retry_of: None,
        existing: r.id() != id,
    };
    if body.existing {
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    Ok(created(body))
}

/// The request as a `NewTask`, with the checks the library does not name a field for.
fn new_task(req: EnqueueRequest) -> Result<NewTask, ApiError> {
    let mut t = NewTask::new(req.task)
        .args(Value::Array(req.args))
        .kwargs(Value::Object(req.kwargs))
        .headers(Value::Object(req.headers))
        .ignore_result(req.ignore_result);
    if let Some(q) = req.queue {
        t = t.queue(q);
    }
    if let Some(p) = req.priority {
        t = t.priority(p);
    }
    if req.countdown.is_some() && req.eta.is_some() {
        return Err(ApiError::invalid_field(
            "eta",
            "give countdown or eta, not both",
        ));
    }
    if let Some(c) = req.countdown {
        t = t.countdown(c);
    }
    if let Some(e) = req.eta {
        t = t.eta(e);
    }
    match req.expires {
        Some(ExpiresSpec::Seconds(s)) => t = t.expires_in(s),
        Some(ExpiresSpec::At(at)) => t = t.expires_at(at),
        None => {}
    }
    if let Some(id) = req.task_id {
        t = t.id(TaskId(id));
    }
    if let Some(n) = req.max_retries {
        t = t.max_retries(n);
    }
    t.retry_delay = req.retry_delay;
    t.retry_backoff = req.retry_backoff;
    t.retry_backoff_max = req.retry_backoff_max;
    t.retry_jitter = req.retry_jitter;
    t.soft_time_limit = req.soft_time_limit;
    t.time_limit = req.time_limit;
    match (req.unique_key, req.unique_scope) {
        (Some(key), scope) => {
            let scope = match scope.unwrap_or(UniqueScopeName::Queued) {
                UniqueScopeName::Queued => UniqueScope::Queued,
                UniqueScopeName::Active => UniqueScope::Active,
                UniqueScopeName::Window => {
                    UniqueScope::Window(req.unique_window.ok_or_else(|| {
                        ApiError::invalid_field(
                            "unique_window",
                            "unique_scope window needs unique_window seconds",
                        )
                    })?)
                }
            };
            t = t.unique(key, scope);
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_field(
                "unique_key",
                "unique_scope needs a unique_key",
            ));
        }
        (None, None) => {}
    }
    Ok(t)
}

/// List tasks, newest first.
///
/// Keyset pagination: pass the previous page's `next_cursor` as `cursor` to get the next
/// (older) page. Pages are stable while tasks are being inserted: new tasks are newer than
/// any cursor, so they never shift or repeat a page. Scope: read.
#[utoipa::path(
    get, path = "/tasks", operation_id = "list_tasks", tag = "tasks",
    params(
        ("state" = Option<String>, Query, description = "Comma-separated lifecycle states: SCHEDULED, PENDING, THROTTLED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED (case-insensitive)"),
        ("name" = Option<String>, Query, description = "Exact task name"),
        ("queue" = Option<String>, Query, description = "Exact queue name"),
        ("since" = Option<String>, Query, description = "Only tasks received at or after this RFC 3339 instant"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "A parameter is wrong (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable, or the query took too long", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    _: Read,
    State(state): State<AppState>,
    mut q: QueryParams,
) -> Result<Json<TaskPage>, ApiError> {
    let states = q
        .parse("state", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<TaskState>().map_err(|_| {
                        format!(
                            "unknown state {s:?} (one of SCHEDULED, PENDING, THROTTLED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_default();
    let name = q.take("name")?;
    let queue = q.take("queue")?;
    let since = q.parse("since", |v| {
        DateTime::parse_from_rfc3339(v)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| format!("not an RFC 3339 instant (e.g. 2024-05-01T12:00:00Z): {e}"))
    })?;
    let limit = q
        .parse("limit", |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("must be an integer from 1 to {MAX_LIMIT}"))
        })?
        .unwrap_or(DEFAULT_LIMIT);
    let after = q.parse("cursor", decode_cursor)?;
    q.finish()?;
    // One row more than the page tells whether there is a next page.
    let mut rows = state
        .store()
        .task_list(&TaskListFilter {
            states,
            name,
            queue,
            since,
            after,
            limit: limit + 1,
            timeout: Some(state.query_timeout()),
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(r.created_at, r.seq)))
        .flatten();
    Ok(Json(TaskPage {
        tasks: rows.into_iter().map(summary).collect(),
        next_cursor,
    }))
}

/// `<created_at in µs since the epoch>.<seq>`: opaque to clients.
fn encode_cursor(at: DateTime<Utc>, seq: i64) -> String {
    format!("{}.{}", at.timestamp_micros(), seq)
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, i64), String> {
    let bad = || "not a cursor returned by this API".to_string();
    let (at, seq) = s.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    let seq: i64 = seq.parse().map_err(|_| bad())?;
    let at = Utc.timestamp_micros(at).single().ok_or_else(bad)?;
    Ok((at, seq))
}

fn summary(r: TaskListRow) -> TaskSummary {
    TaskSummary {
        id: r.id,
        name: r.name,
        queue: r.queue,
        state: r.state,
        celery_state: r.celery_state,
        priority: r.priority,
        received_at: r.created_at,
        eta: r.run_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        retries: r.retries,
        attempt: r.attempt,
        worker_id: r.worker_id,
        error_type: r.error_type,
        error_message: r.error_message,
        revoked_reason: r.revoked_reason,
    }
}

/// A task's state, result or error, progress, retries and timestamps.
///
/// Scope: read.
#[utoipa::path(
    get, path = "/tasks/{id}", operation_id = "get_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    responses(
        (status = 200, description = "The task", body = TaskDetail),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such task (never enqueued, or pruned after the retention)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    _: Read,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<TaskDetail>, ApiError> {
    let row = state
        .store()
        .task_get_detail(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(detail(row)))
}

fn not_found(id: TaskId) -> ApiError {
    ApiError::not_found(format!(
        "no task with id {id} (never enqueued, or pruned after the retention)"
    ))
}

fn detail(r: TaskDetailRow) -> TaskDetail {
    let error = r.error.filter(|e| !e.is_null()).map(|e| TaskErrorInfo {
        kind: e
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string(),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
        traceback: e
            .get("traceback")
            .and_then(Value::as_str)
            .map(str::to_string),
    });
    let progress = (r.progress_state.is_some() || r.progress.is_some()).then(|| Progress {
        state: r.progress_state.clone(),
        meta: r.progress.clone(),
    });
    let runtime_s = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) if f >= s => Some((f - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
        _ => None,
    };
    let retry_of = r
        .headers
        .get("retry_of")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<uuid::Uuid>().ok());
    TaskDetail {
        id: r.id,
        name: r.name,
        queue: r.queue,
        state: r.state,
        celery_state: r.celery_state,
        priority: r.priority,
        args: r.args,
        kwargs: r.kwargs,
        headers: r.headers,
        result: r.result,
        error,
        progress,
        retries: r.retries,
        attempt: r.attempt,
        lost: r.lost,
        received_at: r.created_at,
        eta: r.run_at,
        expires_at: r.expires_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        runtime_s,
        worker_id: r.worker_id,
        revoked_reason: r.revoked_reason,
        terminate_requested: r.terminate,
        retry_of,
        retried_as: r.retried_as,
        options: TaskOptions {
            max_retries: r.max_retries,
            retry_delay: r.retry_delay,
            retry_backoff: r.retry_backoff,
            retry_backoff_max: r.retry_backoff_max,
            retry_jitter: r.retry_jitter,
            soft_time_limit: r.soft_time_limit,
            time_limit: r.time_limit,
            ignore_result: r.ignore_result,
        },
    }
}

/// Revoke a task.
///
/// A waiting task (scheduled, pending, retrying) becomes REVOKED at once. A running task
/// finishes unless `terminate` is true, in which case its worker cancels it and it ends REVOKED
/// (`terminated`). A finished task is left as it is. The body is optional. Scope: admin.
#[utoipa::path(
    post, path = "/tasks/{id}/revoke", operation_id = "revoke_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    request_body(content = Option<RevokeRequest>, description = "Optional; `{}` or no body means terminate=false"),
    responses(
        (status = 200, description = "The task's state after the call", body = RevokeResult),
        (status = 400, description = "`id` is not a UUID, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 422, description = "`terminate` is not a boolean", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    OptionalJsonBody(req): OptionalJsonBody<RevokeRequest>,
) -> Result<Json<RevokeResult>, ApiError> {
    let celery_state = state
        .store()
        .task_revoke(id, req.terminate)
        .await?
        .ok_or_else(|| not_found(id))?;
    // After celeriac.revoke, a task that is neither finished nor REVOKED is running: with
    // terminate, the same statement flagged it for its worker. (Decided from the statement's
    // own answer: by the time a second read came, the worker may have stopped it already.)
    let terminate_requested =
        req.terminate && !matches!(celery_state.as_str(), "SUCCESS" | "FAILURE" | "REVOKED");
    Ok(Json(RevokeResult {
        id: id.0,
        celery_state,
        terminate_requested,
    }))
}

/// Run a finished FAILURE or REVOKED task again.
///
/// Semantics: the task is re-enqueued as a copy with a new id (same name, arguments, queue,
/// priority and options; headers gain `retry_of`; no countdown or expiry; zero retries), and
/// the original keeps its outcome and points to the copy (`retried_as`). History stays
/// honest: the failure remains visible. A task is retried at most once (409 afterwards: retry
/// the copy instead), so a double click cannot run it twice. Scope: admin.
#[utoipa::path(
    post, path = "/tasks/{id}/retry", operation_id = "retry_task", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID) of a FAILURE or REVOKED task")),
    responses(
        (status = 201, description = "The copy was enqueued", body = TaskCreated,
         headers(("Location" = String, description = "The copy's status URL"))),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Not FAILURE or REVOKED, or already retried", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    _: Admin,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Response, ApiError> {
    match state.store().task_retry(id).await? {
        RetryOutcome::Created(copy) => Ok(created(TaskCreated {
            id: copy.0,
            url: task_url(copy),
            retry_of: Some(id.0),
            existing: false,
        })),
        RetryOutcome::NotFound => Err(not_found(id)),
        RetryOutcome::NotRetryable(st) => Err(ApiError::conflict(format!(
            "task {id} is {st}: only FAILURE and REVOKED tasks can be retried"
        ))),
        RetryOutcome::AlreadyRetried(copy) => Err(ApiError::conflict(format!(
            "task {id} was already retried as {copy}; retry that task instead"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let at = Utc.timestamp_micros(1_700_000_000_123_456).unwrap();
        let c = encode_cursor(at, 42);
        assert_eq!(decode_cursor(&c).unwrap(), (at, 42));
        for bad in [
            "",
            "x",
            "1.",
            ".1",
            "1.2.3",
            "a.b",
            "99999999999999999999.1",
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
