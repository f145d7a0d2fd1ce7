//! `/api/v1/periodic-tasks`: the periodic tasks of django-celery-beat's tables (list, get,
//! create, update, enable, disable, delete, run now) and `/api/v1/beat` (the scheduler's
//! status). Every edit goes through [`crate::beat::admin::Admin`], the same code as
//! `celeriac schedule …`: it validates as Django and Celery would, bumps
//! `django_celery_beat_periodictasks.last_update` (so a real Celery beat notices), and our beat
//! sees it at commit through the tables' change triggers.
//!
//! Periodic tasks are addressed by their unique name (as in the CLI and Celery's
//! `beat_schedule`), percent-encoded in the path.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::beat::admin::{ScheduleInfo, ScheduleRequest, ScheduleSpec, ScheduleUpdate};
use crate::beat::schedule::{BadAction, Period};
use crate::error::Error;
use crate::http::auth::{Admin, Read};
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::types::{
    BeatStatus, ErrorBody, IntervalPeriod, PeriodicProblem, PeriodicRun, PeriodicSchedule,
    PeriodicTask, PeriodicTaskCreate, PeriodicTaskList, PeriodicTaskUpdate, ProblemAction,
};

/// The periodic-task routes.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(run))
        .routes(routes!(beat_status))
}

/// A library error as an answer; a missing django table is a setup problem, said plainly.
fn api_error(e: Error) -> ApiError {
    if let Error::Database(sqlx::Error::Database(db)) = &e
        && db.code().as_deref() == Some("42P01")
    {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "beat_not_installed",
            "django-celery-beat's tables do not exist in this database: run `celeriac migrate` \
             (or Django's `manage.py migrate django_celery_beat`)",
        )
        .caused_by(e);
    }
    ApiError::from(e)
}

/// A periodic task's name from the path (400 naming `name` when empty or too long).
pub(crate) struct NamePath(pub String);

impl FromRequestParts<AppState> for NamePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_parameter("name", e.body_text()))?;
        if raw.trim().is_empty() || raw.chars().count() > 200 {
            return Err(ApiError::invalid_parameter(
                "name",
                "a periodic task's name is 1 to 200 characters",
            ));
        }
        Ok(NamePath(raw))
    }
}

/// Percent-encode a path segment (everything but RFC 3986's unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn periodic_url(name: &str) -> String {
    format!("/api/v1/periodic-tasks/{}", encode_segment(name))
}

fn with_location(status: StatusCode, body: impl serde::Serialize, url: &str) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// ─── conversions between the API's bodies and the admin's structs ────────────────────────────

fn period_of(p: IntervalPeriod) -> Period {
    match p {
        IntervalPeriod::Days => Period::Days,
        IntervalPeriod::Hours => Period::Hours,
        IntervalPeriod::Minutes => Period::Minutes,
        IntervalPeriod::Seconds => Period::Seconds,
        IntervalPeriod::Microseconds => Period::Microseconds,
    }
}

fn api_period(p: Period) -> IntervalPeriod {
    match p {
        Period::Days => IntervalPeriod::Days,
        Period::Hours => IntervalPeriod::Hours,
        Period::Minutes => IntervalPeriod::Minutes,
        Period::Seconds => IntervalPeriod::Seconds,
        Period::Microseconds => IntervalPeriod::Microseconds,
    }
}

fn spec_of(s: PeriodicSchedule) -> ScheduleSpec {
    match s {
        PeriodicSchedule::Interval { every, period } => ScheduleSpec::Interval {
            every,
            period: period_of(period),
        },
        PeriodicSchedule::Crontab {
            minute,
            hour,
            day_of_month,
            month_of_year,
            day_of_week,
            timezone,
        } => ScheduleSpec::Crontab {
            minute,
            hour,
            day_of_month,
            month_of_year,
            day_of_week,
            timezone,
        },
        PeriodicSchedule::Solar {
            event,
            latitude,
            longitude,
        } => ScheduleSpec::Solar {
            event,
            latitude,
            longitude,
        },
        PeriodicSchedule::Clocked { at } => ScheduleSpec::Clocked { at },
    }
}

fn api_schedule(s: ScheduleSpec) -> PeriodicSchedule {
    match s {
        ScheduleSpec::Interval { every, period } => PeriodicSchedule::Interval {
            every,
            period: api_period(period),
        },
        ScheduleSpec::Crontab {
            minute,
            hour,
            day_of_month,
            month_of_year,
            day_of_week,
            timezone,
        } => PeriodicSchedule::Crontab {
            minute,
            hour,
            day_of_month,
            month_of_year,
            day_of_week,
            timezone,
        },
        ScheduleSpec::Solar {
            event,
            latitude,
            longitude,
        } => PeriodicSchedule::Solar {
            event,
            latitude,
            longitude,
        },
        ScheduleSpec::Clocked { at } => PeriodicSchedule::Clocked { at },
    }
}

/// A stored JSON text as a value: parsed, or the raw text as a string when it is not JSON.
fn json_text(text: Option<String>, default: Value) -> Value {
    match text {
        None => default,
        Some(t) if t.trim().is_empty() => default,
        Some(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
    }
}

fn api_task(i: ScheduleInfo) -> PeriodicTask {
    PeriodicTask {
        id: i.id,
        name: i.name,
        task: i.task,
        enabled: i.enabled,
        schedule: i.spec.map(api_schedule),
        schedule_text: i.schedule_words,
        args: json_text(i.args, serde_json::json!([])),
        kwargs: json_text(i.kwargs, serde_json::json!({})),
        headers: json_text(i.headers, serde_json::json!({})),
        queue: i.queue,
        priority: i.priority,
        expires: i.expires,
        expire_seconds: i.expire_seconds,
        one_off: i.one_off,
        start_time: i.start_time,
        last_run_at: i.last_run_at,
        total_run_count: i.total_run_count,
        next_fire_at: i.next_fire_at,
        date_changed: i.date_changed,
        description: i.description,
        problem: i.problem.map(|p| PeriodicProblem {
            reason: p.reason,
            action: match p.action {
                BadAction::Skip => ProblemAction::Skip,
                BadAction::Disable => ProblemAction::Disable,
                BadAction::Warn => ProblemAction::Warn,
            },
        }),
    }
}

fn create_request(c: PeriodicTaskCreate) -> ScheduleRequest {
    let schedule = spec_of(c.schedule);
    let clocked = matches!(schedule, ScheduleSpec::Clocked { .. });
    let mut r = ScheduleRequest::new(c.name, c.task, schedule);
    r.args = Value::Array(c.args);
    r.kwargs = Value::Object(c.kwargs);
    r.headers = Value::Object(c.headers);
    r.queue = c.queue;
    r.priority = c.priority;
    r.expires = c.expires;
    r.expire_seconds = c.expire_seconds;
    r.one_off = c.one_off.unwrap_or(clocked);
    r.start_time = c.start_time;
    r.enabled = c.enabled;
    r.description = c.description;
    r
}

fn update_request(u: PeriodicTaskUpdate) -> ScheduleUpdate {
    ScheduleUpdate {
        task: u.task,
        schedule: u.schedule.map(spec_of),
        args: u.args.map(Value::Array),
        kwargs: u.kwargs.map(Value::Object),
        queue: u.queue,
        priority: u.priority,
        headers: u.headers.map(Value::Object),
        expires: u.expires,
        expire_seconds: u.expire_seconds,
        one_off: u.one_off,
        start_time: u.start_time,
        enabled: u.enabled,
        description: u.description,
    }
}

async fn current(state: &AppState, name: &str) -> Result<PeriodicTask, ApiError> {
    state
        .beat_admin()
        .get(name)
        .await
        .map(api_task)
        .map_err(api_error)
}

// ─── handlers ─────────────────────────────────────────────────────────────────────────────────

/// Every periodic task: schedule, enabled, run history, next fire time, and any problem.
///
/// `next_fire_at` is computed by the same code as beat (on the database clock) from the row as
/// it is now; `problem` is what `celeriac beat --check` reports for the row (a row beat skips,
/// disables, or schedules with a warning). Ordered by id. Scope: read.
#[utoipa::path(
    get, path = "/periodic-tasks", operation_id = "list_periodic_tasks", tag = "periodic",
    params(
        ("enabled" = Option<bool>, Query, description = "Only enabled (true) or disabled (false) ones"),
    ),
    responses(
        (status = 200, description = "The periodic tasks", body = PeriodicTaskList),
        (status = 400, description = "A parameter is wrong (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing (`beat_not_installed`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    _: Read,
    State(state): State<AppState>,
    mut q: QueryParams,
) -> Result<Json<PeriodicTaskList>, ApiError> {
    let enabled = q.parse("enabled", |v| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_string()),
    })?;
    q.finish()?;
    let all = state.beat_admin().list().await.map_err(api_error)?;
    Ok(Json(PeriodicTaskList {
        periodic_tasks: all
            .into_iter()
            .filter(|i| enabled.is_none_or(|e| i.enabled == e))
            .map(api_task)
            .collect(),
    }))
}

/// One periodic task by name. Scope: read.
#[utoipa::path(
    get, path = "/periodic-tasks/{name}", operation_id = "get_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    responses(
        (status = 200, description = "The periodic task", body = PeriodicTask),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    _: Read,
    State(state): State<AppState>,
    NamePath(name): NamePath,
) -> Result<Json<PeriodicTask>, ApiError> {
    Ok(Json(current(&state, &name).await?))
}

/// Create a periodic task.
///
/// Validated as Django's model and Celery would (a crontab Celery rejects is refused with
/// Celery's message, naming the field, e.g. `schedule.day_of_week`). The schedule row is
/// reused when an identical one exists. `django_celery_beat_periodictasks.last_update` is
/// bumped, and beat picks the task up at once. Scope: admin.
#[utoipa::path(
    post, path = "/periodic-tasks", operation_id = "create_periodic_task", tag = "periodic",
    request_body = PeriodicTaskCreate,
    responses(
        (status = 201, description = "Created; `Location` is its URL", body = PeriodicTask,
         headers(("Location" = String, description = "The periodic task's URL"))),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 409, description = "A periodic task of that name exists (`field`: name)", body = ErrorBody),
        (status = 413, description = "Body or payload over the limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "A field has a wrong type or value (`field` names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PeriodicTaskCreate>,
) -> Result<Response, ApiError> {
    let req = create_request(body);
    state.beat_admin().add(&req).await.map_err(api_error)?;
    let task = current(&state, &req.name).await?;
    Ok(with_location(
        StatusCode::CREATED,
        &task,
        &periodic_url(&task.name),
    ))
}

/// Change some fields of a periodic task; the others keep their value.
///
/// Applied under a row lock (concurrent updates of different fields both survive). The run
/// history is kept, as when editing in Django admin; disabling clears `last_run_at`. Nothing
/// changed → nothing written. Scope: admin.
#[utoipa::path(
    patch, path = "/periodic-tasks/{name}", operation_id = "update_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    request_body = PeriodicTaskUpdate,
    responses(
        (status = 200, description = "The periodic task after the change", body = PeriodicTask),
        (status = 400, description = "Bad name, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 413, description = "Body or payload over the limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "A field has a wrong type or value (`field` names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    _: Admin,
    State(state): State<AppState>,
    NamePath(name): NamePath,
    JsonBody(body): JsonBody<PeriodicTaskUpdate>,
) -> Result<Json<PeriodicTask>, ApiError> {
    if let Some(n) = &body.name
        && *n != name
    {
        return Err(ApiError::invalid_field(
            "name",
            "a periodic task cannot be renamed: create one under the new name and delete this one",
        ));
    }
    state
        .beat_admin()
        .update(&name, &update_request(body))
        .await
        .map_err(api_error)?;
    Ok(Json(current(&state, &name).await?))
}

/// Delete a periodic task (its schedule row stays, as with Django). Tasks it already sent are
/// not affected. Scope: admin.
#[utoipa::path(
    delete, path = "/periodic-tasks/{name}", operation_id = "delete_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    _: Admin,
    State(state): State<AppState>,
    NamePath(name): NamePath,
) -> Result<StatusCode, ApiError> {
    state.beat_admin().remove(&name).await.map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a periodic task (a no-op when it is enabled). Scope: admin.
#[utoipa::path(
    post, path = "/periodic-tasks/{name}/enable", operation_id = "enable_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    responses(
        (status = 200, description = "The periodic task, enabled", body = PeriodicTask),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enable(
    _: Admin,
    State(state): State<AppState>,
    NamePath(name): NamePath,
) -> Result<Json<PeriodicTask>, ApiError> {
    state
        .beat_admin()
        .set_enabled(&name, true)
        .await
        .map_err(api_error)?;
    Ok(Json(current(&state, &name).await?))
}

/// Disable a periodic task (a no-op when it is disabled); beat stops sending it at once.
///
/// As in Django admin, disabling clears `last_run_at`: once enabled again, the task is
/// anchored at the moment it was enabled. Scope: admin.
#[utoipa::path(
    post, path = "/periodic-tasks/{name}/disable", operation_id = "disable_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    responses(
        (status = 200, description = "The periodic task, disabled", body = PeriodicTask),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn disable(
    _: Admin,
    State(state): State<AppState>,
    NamePath(name): NamePath,
) -> Result<Json<PeriodicTask>, ApiError> {
    state
        .beat_admin()
        .set_enabled(&name, false)
        .await
        .map_err(api_error)?;
    Ok(Json(current(&state, &name).await?))
}

/// Send a periodic task's task now, once.
///
/// Enqueued with the row's arguments, queue, priority, headers and expiry, and the header
/// `periodic_task_name`, like a send by beat; the schedule is not touched (`last_run_at`, the
/// run count and the next fire time stay as they are), like Django admin's "Run selected
/// tasks". Works on disabled tasks too. Scope: admin.
#[utoipa::path(
    post, path = "/periodic-tasks/{name}/run", operation_id = "run_periodic_task", tag = "periodic",
    params(("name" = String, Path, description = "The periodic task's unique name (percent-encoded)")),
    responses(
        (status = 201, description = "Enqueued; `Location` is the task's status URL", body = PeriodicRun,
         headers(("Location" = String, description = "The task's status URL"))),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No periodic task of that name", body = ErrorBody),
        (status = 409, description = "The row cannot be sent as it is (see its `problem`)", body = ErrorBody),
        (status = 503, description = "Database unavailable, or django-celery-beat's tables missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn run(
    _: Admin,
    State(state): State<AppState>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    let id = match state.beat_admin().run_now(&name).await {
        Ok(id) => id,
        // The stored row is what is wrong, not the request.
        Err(Error::Invalid(m)) => return Err(ApiError::conflict(m)),
        Err(e) => return Err(api_error(e)),
    };
    let url = format!("/api/v1/tasks/{id}");
    Ok(with_location(
        StatusCode::CREATED,
        PeriodicRun {
            id: id.0,
            url: url.clone(),
            periodic_task: name,
        },
        &url,
    ))
}

/// The beat scheduler: leader (host, pid, since), last tick, schedules loaded, problem rows,
/// live beat processes, and the lag of its sends over the last 5 minutes.
///
/// `leader_alive: false` means no beat runs: nothing sends periodic tasks. Scope: read.
#[utoipa::path(
    get, path = "/beat", operation_id = "beat_status", tag = "periodic",
    responses(
        (status = 200, description = "The beat status", body = BeatStatus),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn beat_status(
    _: Read,
    State(state): State<AppState>,
) -> Result<Json<BeatStatus>, ApiError> {
    let s = state.store().beat_status().await?;
    Ok(Json(BeatStatus {
        leader_alive: s.leader_alive,
        leader_id: s.leader_id,
        leader_hostname: s.leader_hostname,
        leader_pid: s.leader_pid,
        leader_since: s.leader_since,
        last_tick_at: s.last_tick_at,
        tick_age_s: s.tick_age_s,
        schedules: s.schedules,
        bad_rows: s.bad_rows,
        next_fire_at: s.next_fire_at,
        instances: s.instances,
        sent_5m: s.fires_5m,
        lag_p50_s: s.lag_p50_s,
        lag_p99_s: s.lag_p99_s,
        lag_max_s: s.lag_max_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::parse_json;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(encode_segment("nightly-report_1.x~"), "nightly-report_1.x~");
        assert_eq!(encode_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }

    #[test]
    fn schedules_parse_with_crontab_defaults_and_name_the_field() {
        let c: PeriodicTaskCreate = parse_json(
            br#"{"name": "n", "task": "t", "schedule": {"kind": "crontab", "minute": "0"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.schedule,
            PeriodicSchedule::Crontab {
                minute: "0".into(),
                hour: "*".into(),
                day_of_month: "*".into(),
                month_of_year: "*".into(),
                day_of_week: "*".into(),
                timezone: "UTC".into(),
            }
        );
        for (body, field) in [
            (
                r#"{"name": "n", "task": "t", "schedule": {"kind": "weekly"}}"#,
                "schedule.kind",
            ),
            (
                r#"{"name": "n", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "seconds", "x": 1}}"#,
                "schedule",
            ),
            (
                r#"{"name": "n", "task": "t", "schedule": {"kind": "clocked", "at": "2030-01-01T00:00:00Z"}, "args": {}}"#,
                "args",
            ),
            (r#"{"name": "n", "task": "t"}"#, "schedule"),
        ] {
            let e = parse_json::<PeriodicTaskCreate>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.field_name(), Some(field), "{body}: {e:?}");
        }
        // An update tells null (clear) from absent (keep).
        let u: PeriodicTaskUpdate = parse_json(br#"{"queue": null, "priority": 3}"#).unwrap();
        assert_eq!(u.queue, Some(None));
        assert_eq!(u.priority, Some(Some(3)));
        assert_eq!(u.expires, None);
    }
}
