//! `/api/v1/workflows`, `/api/v1/groups`, `/api/v1/limits`: chain / group / chord, group
//! results, and rate limits / concurrency caps across workers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, TaskIdPath};
use crate::http::auth::{Admin, Read};
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;
use crate::http::types::{
    ErrorBody, GroupBody, LimitBody, LimitRequest, TaskErrorInfo, WorkflowCreated, WorkflowRequest,
};
use crate::limits::{LimitKind, LimitSpec};

/// Apply a workflow.
///
/// The body is the JSON the SQL API's `celeriac.apply` takes: a task `{"task", "args",
/// "kwargs", "options", "immutable", "link", "link_error"}`, `{"chain": [...]}`, `{"group":
/// [...]}` or `{"chord": {"header": [...], "body": ...}}`, nested freely. Every id is given
/// now; `id` is the workflow's result (a task, or a group for a group). Scope: admin.
#[utoipa::path(
    post, path = "/workflows", operation_id = "apply_workflow", tag = "workflows",
    request_body(
        content = WorkflowRequest,
        example = json!({"chain": [
            {"task": "celeriac.echo", "args": [1, 2]},
            {"chord": {"header": [{"task": "celeriac.echo"}, {"task": "celeriac.echo"}],
                       "body": {"task": "celeriac.echo", "options": {"queue": "celery"}}}}
        ]})
    ),
    responses(
        (status = 201, description = "Applied; `Location` reads its result", body = WorkflowCreated,
         headers(("Location" = String, description = "The result's URL"))),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Not a valid workflow (`field` is `canvas`)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn apply_workflow(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(WorkflowRequest(canvas)): JsonBody<WorkflowRequest>,
) -> Result<Response, ApiError> {
    let store = state.store();
    let mut conn = store.pool().acquire().await.map_err(crate::Error::from)?;
    let out = store
        .canvas_apply(&mut *conn, &canvas)
        .await
        .map_err(|e| match e {
            crate::Error::Database(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("22023") =>
            {
                ApiError::invalid_field("canvas", db.message().to_string())
            }
            other => ApiError::from(other),
        })?;
    let uuid_of = |k: &str| -> Result<uuid::Uuid, ApiError> {
        out[k].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            ApiError::internal(crate::Error::Invalid(format!(
                "celeriac.apply returned no {k}"
            )))
        })
    };
    let id = uuid_of("id")?;
    let is_group = out["canvas"].get("group").is_some();
    let (kind, url) = if is_group {
        ("group", format!("/api/v1/groups/{id}"))
    } else {
        ("task", format!("/api/v1/tasks/{id}"))
    };
    let body = WorkflowCreated {
        id,
        kind: kind.into(),
        url,
        root_id: uuid_of("root_id")?,
        canvas: out["canvas"].clone(),
    };
    let mut r = (StatusCode::CREATED, Json(&body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&body.url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// A group's or chord's combined state: state, size, completed, failed, results in order.
///
/// Scope: read.
#[utoipa::path(
    get, path = "/groups/{id}", operation_id = "get_group", tag = "workflows",
    params(("id" = uuid::Uuid, Path, description = "Group (or chord) id")),
    responses(
        (status = 200, description = "The group", body = GroupBody),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such group (or pruned)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_group(
    _: Read,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<GroupBody>, ApiError> {
    let info = state
        .client()
        .group(id)
        .info()
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group with id {id}")))?;
    Ok(Json(GroupBody {
        id: info.id.0,
        kind: info.kind,
        state: info.state,
        size: info.size,
        completed: info.completed,
        failed: info.failed,
        results: info.results,
        error: info.error.map(|e| TaskErrorInfo {
            kind: e.kind,
            message: e.message,
            traceback: e.traceback,
        }),
    }))
}

/// Every rate limit and concurrency cap, with its current use.
///
/// Scope: read.
#[utoipa::path(
    get, path = "/limits", operation_id = "list_limits", tag = "limits",
    responses(
        (status = 200, description = "The limits", body = Vec<LimitBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_limits(
    _: Read,
    State(state): State<AppState>,
) -> Result<Json<Vec<LimitBody>>, ApiError> {
    let rows = state.client().limits().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| LimitBody {
                rate: match (r.rate_count, r.rate_period) {
                    (Some(n), Some(p)) => Some(format!(
                        "{n}/{}",
                        match p as i64 {
                            1 => "s",
                            60 => "m",
                            _ => "h",
                        }
                    )),
                    _ => None,
                },
                kind: r.kind,
                target: r.target,
                concurrency: r.concurrency,
                partition_by: r.partition_by,
                running: r.running,
                throttled: r.throttled,
                updated_at: r.updated_at,
            })
            .collect(),
    ))
}

/// `task` or `queue` from the path.
fn kind_of(kind: &str) -> Result<LimitKind, ApiError> {
    match kind {
        "task" => Ok(LimitKind::Task),
        "queue" => Ok(LimitKind::Queue),
        other => Err(ApiError::invalid_parameter(
            "kind",
            format!("{other:?}: a limit applies to a task or a queue"),
        )),
    }
}

/// Set (or replace) the limit of a task name or a queue; every worker honours it from its next
/// claim.
///
/// Scope: admin.
#[utoipa::path(
    put, path = "/limits/{kind}/{target}", operation_id = "set_limit", tag = "limits",
    params(
        ("kind" = String, Path, description = "`task` or `queue`"),
        ("target" = String, Path, description = "The task or queue name"),
    ),
    request_body = LimitRequest,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "Bad `kind`, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 422, description = "A bad rate, concurrency or an empty limit (`field` names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_limit(
    _: Admin,
    State(state): State<AppState>,
    Path((kind, target)): Path<(String, String)>,
    JsonBody(req): JsonBody<LimitRequest>,
) -> Result<StatusCode, ApiError> {
    let spec = LimitSpec {
        kind: kind_of(&kind)?,
        target,
        rate: req.rate,
        concurrency: req.concurrency,
        partition_by: req.partition_by,
    };
    state.client().set_limit(&spec).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove the limit of a task name or a queue; its waiting tasks become ready.
///
/// Scope: admin.
#[utoipa::path(
    delete, path = "/limits/{kind}/{target}", operation_id = "remove_limit", tag = "limits",
    params(
        ("kind" = String, Path, description = "`task` or `queue`"),
        ("target" = String, Path, description = "The task or queue name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad `kind`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No limit there", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn remove_limit(
    _: Admin,
    State(state): State<AppState>,
    Path((kind, target)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&kind)?;
    if state.client().remove_limit(kind, &target).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no limit on {kind} {target}")))
    }
}
