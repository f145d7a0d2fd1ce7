//! Request and response bodies of the API: the public contract, kept apart from the storage
//! rows (`crate::store`) so a column can change without changing the API, and the other way
//! round. Every type here is in the OpenAPI document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// An error, as every non-2xx answer of the API carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `malformed_json`, `invalid_field`, `invalid_parameter`,
    /// `unsupported_media_type`, `payload_too_large`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `unavailable`, `query_timeout`, `beat_not_installed`,
    /// `internal`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// The request field or query parameter at fault, when there is one (e.g. `priority`,
    /// `kwargs.user`, `state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 5xx answers: quote it to the operator, who finds the cause in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `expires`: seconds from now, or an instant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ExpiresSpec {
    /// Seconds after the enqueue.
    Seconds(f64),
    /// An RFC 3339 instant.
    At(DateTime<Utc>),
}

/// `POST /api/v1/tasks`: a task to enqueue, with every option of the SQL API.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"task": "celeriac.echo", "args": [1, 2], "kwargs": {"x": "y"}, "queue": "celery", "priority": 5, "countdown": 0}))]
pub struct EnqueueRequest {
    /// The registered task name, e.g. `emails.send`.
    pub task: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub kwargs: Map<String, Value>,
    /// Message headers (the handler sees them).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    /// Queue (default: the server's default queue, `celery`).
    #[serde(default)]
    pub queue: Option<String>,
    /// 0..=255, higher runs first.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Run no earlier than this many seconds from now (not with `eta`).
    #[serde(default)]
    pub countdown: Option<f64>,
    /// Run no earlier than this instant (not with `countdown`).
    #[serde(default)]
    pub eta: Option<DateTime<Utc>>,
    /// Not started by then → REVOKED (`expired`): seconds from now, or an RFC 3339 instant.
    #[serde(default)]
    pub expires: Option<ExpiresSpec>,
    /// Use this id (UUID) instead of a generated one; 409 if it exists.
    #[serde(default)]
    pub task_id: Option<Uuid>,
    /// Retries allowed (default: the task's registered policy).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Seconds between retries without backoff.
    #[serde(default)]
    pub retry_delay: Option<f64>,
    /// Exponential backoff factor, seconds (0 = off).
    #[serde(default)]
    pub retry_backoff: Option<f64>,
    /// Cap of the backoff delay, seconds.
    #[serde(default)]
    pub retry_backoff_max: Option<f64>,
    /// Full jitter on the backoff delay.
    #[serde(default)]
    pub retry_jitter: Option<bool>,
    /// Seconds after which the running task is asked to stop.
    #[serde(default)]
    pub soft_time_limit: Option<f64>,
    /// Seconds after which the running task is killed (FAILURE `TimeLimitExceeded`).
    #[serde(default)]
    pub time_limit: Option<f64>,
    /// Do not store the return value.
    #[serde(default)]
    pub ignore_result: bool,
    /// While a live task has this key, enqueuing again returns it (200, `existing: true`)
    /// instead of adding one.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// How long the key stays taken: `queued` (default: while waiting), `active` (while
    /// waiting or running) or `window` (one per `unique_window` seconds).
    #[serde(default)]
    pub unique_scope: Option<UniqueScopeName>,
    /// The window of `unique_scope = "window"`, in seconds.
    #[serde(default)]
    pub unique_window: Option<f64>,
}

/// Scopes of a unique key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UniqueScopeName {
    /// While the task waits.
    Queued,
    /// While the task waits or runs.
    Active,
    /// One per key per `unique_window` seconds.
    Window,
}

/// `POST /api/v1/workflows`: a workflow in the JSON of the SQL API's `celeriac.apply`.
/// The node is `{"task": …, "args", "kwargs", "options", "immutable", "link",
/// "link_error"}`, `{"chain": [...]}`, `{"group": [...]}` or `{"chord": {"header": [...],
/// "body": …}}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = Object)]
#[serde(transparent)]
pub struct WorkflowRequest(pub Value);

/// A workflow was applied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowCreated {
    /// The id whose result is the workflow's: a task (chain, chord, single task) or a group.
    pub id: Uuid,
    /// `task` or `group`: which endpoint reads `id`.
    pub kind: String,
    /// Where to read it.
    pub url: String,
    /// The first task's id.
    pub root_id: Uuid,
    /// The workflow as stored, every task and group with its id.
    #[schema(value_type = Object)]
    pub canvas: Value,
}

/// A group's or chord's combined state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupBody {
    /// The group id.
    pub id: Uuid,
    /// `group` or `chord`.
    pub kind: String,
    /// PENDING, SUCCESS or FAILURE (a member failed).
    pub state: String,
    /// Members.
    pub size: i64,
    /// Members finished so far.
    pub completed: i64,
    /// Members that failed.
    pub failed: i64,
    /// Members' results in order (null while running or failed).
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
    /// The first member failure.
    pub error: Option<TaskErrorInfo>,
}

/// A rate limit and/or concurrency cap, as set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rate": "10/m", "concurrency": 3, "partition_by": "customer_id"}))]
pub struct LimitRequest {
    /// At most N starts per period: `N/s`, `N/m` or `N/h` (Celery's rate_limit syntax).
    #[serde(default)]
    pub rate: Option<String>,
    /// At most this many running at once, across all workers.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Separate limits per value of this kwarg.
    #[serde(default)]
    pub partition_by: Option<String>,
}

/// A limit with its current use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LimitBody {
    /// `task` or `queue`.
    pub kind: String,
    /// The task or queue name.
    pub target: String,
    /// `N/s`, `N/m` or `N/h`, if rate limited.
    pub rate: Option<String>,
    /// The running cap, if any.
    pub concurrency: Option<i32>,
    /// The partition kwarg, if any.
    pub partition_by: Option<String>,
    /// Running now (all partitions).
    pub running: i64,
    /// Waiting for a slot.
    pub throttled: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A task was enqueued (or re-enqueued by a retry).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskCreated {
    /// The new task's id.
    pub id: Uuid,
    /// Where to read its state and result.
    pub url: String,
    /// For a retry: the task it re-runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<Uuid>,
    /// True when a live task with the request's `unique_key` was returned instead of a new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
}

/// An error stored with a task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskErrorInfo {
    /// The error type, e.g. `ValueError`, `TimeLimitExceeded`, `NotRegistered`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its message.
    pub message: String,
    /// Traceback (Python) or chain of causes (Rust), when there is one.
    pub traceback: Option<String>,
}

/// A custom state reported by the running task (`update_state`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// The custom state, e.g. `PROGRESS`.
    pub state: Option<String>,
    /// Its meta.
    #[schema(value_type = Object)]
    pub meta: Option<Value>,
}

/// Retry and time-limit options stored with a task (null: the task's registered default).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskOptions {
    /// Retries allowed.
    pub max_retries: Option<i32>,
    /// Seconds between retries without backoff.
    pub retry_delay: Option<f64>,
    /// Backoff factor, seconds.
    pub retry_backoff: Option<f64>,
    /// Backoff cap, seconds.
    pub retry_backoff_max: Option<f64>,
    /// Full jitter.
    pub retry_jitter: Option<bool>,
    /// Soft time limit, seconds.
    pub soft_time_limit: Option<f64>,
    /// Hard time limit, seconds.
    pub time_limit: Option<f64>,
    /// The return value is not stored.
    pub ignore_result: bool,
}

/// Everything about one task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    /// Id.
    pub id: Uuid,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Lifecycle state: SCHEDULED, PENDING, THROTTLED, STARTED, RETRY, SUCCESS, FAILURE or REVOKED.
    pub state: String,
    /// Celery's view of it: waiting tasks are PENDING (RETRY once retried), a running task
    /// that reported a custom state shows it (e.g. PROGRESS).
    pub celery_state: String,
    /// 0..=255.
    pub priority: i16,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    #[schema(value_type = Object)]
    pub kwargs: Value,
    /// Headers.
    #[schema(value_type = Object)]
    pub headers: Value,
    /// The return value (SUCCESS; null when ignored).
    pub result: Option<Value>,
    /// The error (FAILURE or REVOKED, or the cause of the last retry).
    pub error: Option<TaskErrorInfo>,
    /// Custom state reported while running.
    pub progress: Option<Progress>,
    /// Retries so far (Celery's `request.retries`).
    pub retries: i32,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts lost with their worker.
    pub lost: i32,
    /// When it was enqueued (Celery's "received").
    pub received_at: DateTime<Utc>,
    /// When it is (or was) due: the enqueue, its countdown/ETA, or its next retry.
    pub eta: DateTime<Utc>,
    /// Not started by then → REVOKED.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the current or last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// finished_at − started_at of the last attempt, seconds.
    pub runtime_s: Option<f64>,
    /// The worker running it.
    pub worker_id: Option<Uuid>,
    /// Why it was revoked: `revoked`, `expired`, `purged`, `terminated`.
    pub revoked_reason: Option<String>,
    /// A terminate request is waiting for the worker.
    pub terminate_requested: bool,
    /// The task this one re-runs (a manual retry).
    pub retry_of: Option<Uuid>,
    /// The task that re-ran this one (a manual retry).
    pub retried_as: Option<Uuid>,
    /// Retry and time-limit options.
    pub options: TaskOptions,
}

/// One task in a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskSummary {
    /// Id.
    pub id: Uuid,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Lifecycle state (see TaskDetail).
    pub state: String,
    /// Celery's state.
    pub celery_state: String,
    /// Priority.
    pub priority: i16,
    /// Enqueued.
    pub received_at: DateTime<Utc>,
    /// Due.
    pub eta: DateTime<Utc>,
    /// Current or last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Retries so far.
    pub retries: i32,
    /// Attempts so far.
    pub attempt: i32,
    /// The worker running it.
    pub worker_id: Option<Uuid>,
    /// Error type, when it failed (or is retrying).
    pub error_type: Option<String>,
    /// Error message (first 300 characters).
    pub error_message: Option<String>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// A page of tasks, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskSummary>,
    /// Pass as `cursor` for the next (older) page; null when there is none.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/tasks/{id}/revoke`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Also stop it if it is running (the worker cancels it; it ends REVOKED `terminated`).
    #[serde(default)]
    pub terminate: bool,
}

/// What a revoke did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeResult {
    /// The task.
    pub id: Uuid,
    /// Its Celery state after the call: REVOKED for a waiting task; a running task keeps
    /// running (terminate=false) or is being stopped (terminate=true); a finished one is
    /// unchanged.
    pub celery_state: String,
    /// A terminate request was sent to the worker running it.
    pub terminate_requested: bool,
}

/// A queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// Paused cluster-wide (workers do not claim from it).
    pub paused: bool,
    /// Depth: tasks ready to run now.
    pub ready: i64,
    /// Tasks waiting for a countdown, ETA or retry time.
    pub scheduled: i64,
    /// Tasks running.
    pub running: i64,
    /// Tasks waiting for a concurrency slot of a limit.
    pub throttled: i64,
    /// Due time of the oldest ready task.
    pub oldest_ready_at: Option<DateTime<Utc>>,
    /// Its age, seconds (database clock).
    pub oldest_ready_age_s: Option<f64>,
    /// Live workers consuming it.
    pub workers: i64,
    /// Attempts finished over the last minute (as reported by workers' heartbeats).
    pub last_minute: Throughput,
    /// Finished attempts (succeeded + failed + revoked) per second over the last minute.
    pub rate_per_s: f64,
}

/// Finished attempts in a span of time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Throughput {
    /// Ended SUCCESS.
    pub succeeded: i64,
    /// Ended FAILURE.
    pub failed: i64,
    /// Asked for a retry.
    pub retried: i64,
    /// Revoked while running.
    pub revoked: i64,
}

/// Every queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// The queues, by name.
    pub queues: Vec<QueueInfo>,
}

/// A queue was paused or resumed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuePaused {
    /// The queue.
    pub queue: String,
    /// Its new setting.
    pub paused: bool,
}

/// A queue was purged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuePurged {
    /// The queue.
    pub queue: String,
    /// Waiting tasks revoked (reason `purged`); running tasks finish.
    pub purged: u64,
}

/// A worker process.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerInfo {
    /// Id (random per process start).
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS process id.
    pub pid: i32,
    /// Queues consumed, in claim order.
    pub queues: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: i32,
    /// Tasks it runs now.
    pub running: i64,
    /// Celeriac version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since then (database clock).
    pub heartbeat_age_s: f64,
    /// Its lease ends then; after that it is dead and its tasks are rescued.
    pub expires_at: DateTime<Utc>,
    /// Lease still valid.
    pub alive: bool,
    /// Shutting down (finishing its running tasks).
    pub stopping: bool,
}

/// Every registered worker (dead ones stay listed for a minute).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers, oldest first.
    pub workers: Vec<WorkerInfo>,
}

/// Finished attempts in one minute.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputPoint {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// The counts.
    #[serde(flatten)]
    pub counts: Throughput,
}

/// Finished attempts per minute, oldest first, the current (partial) minute last.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputSeries {
    /// One point per minute.
    pub points: Vec<ThroughputPoint>,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (process up), `ready`, or `unavailable`.
    pub status: String,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ─── periodic tasks (django-celery-beat's tables) ─────────────────────────────────────────────

/// Unit of an interval schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntervalPeriod {
    /// 86,400 s (elapsed time: no calendar or DST logic, as Celery).
    Days,
    /// 3,600 s.
    Hours,
    /// 60 s.
    Minutes,
    /// 1 s.
    Seconds,
    /// 1 µs.
    Microseconds,
}

fn star() -> String {
    "*".into()
}

fn utc() -> String {
    "UTC".into()
}

/// When a periodic task fires: one of django-celery-beat's four schedule kinds, told apart by
/// `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PeriodicSchedule {
    /// Every `every` `period`s, counted from the previous send (the first one `every` after
    /// the task was saved, or at `start_time`).
    Interval {
        /// At least 1.
        every: i32,
        /// The unit.
        period: IntervalPeriod,
    },
    /// A Celery crontab (Celery's syntax: `*`, `*/15`, `1-5`, `mon-fri`, lists; Sunday = 0). A
    /// day must match day_of_month AND month_of_year AND day_of_week. Omitted fields are `*`.
    Crontab {
        /// Minutes, 0-59.
        #[serde(default = "star")]
        minute: String,
        /// Hours, 0-23.
        #[serde(default = "star")]
        hour: String,
        /// Days of the month, 1-31.
        #[serde(default = "star")]
        day_of_month: String,
        /// Months, 1-12 or jan-dec.
        #[serde(default = "star")]
        month_of_year: String,
        /// Weekdays, 0-6 (Sunday = 0) or sun-sat.
        #[serde(default = "star")]
        day_of_week: String,
        /// IANA time zone the fields are read in (default UTC), e.g. `Europe/Berlin`.
        #[serde(default = "utc")]
        timezone: String,
    },
    /// A solar event at a place.
    Solar {
        /// sunrise, sunset, solar_noon, dawn_astronomical, dawn_nautical, dawn_civil,
        /// dusk_astronomical, dusk_nautical, dusk_civil.
        event: String,
        /// Degrees north, -90..90.
        latitude: f64,
        /// Degrees east, -180..180.
        longitude: f64,
    },
    /// Once, at an instant (the task must be one-off; a create sets `one_off` by itself).
    Clocked {
        /// When (RFC 3339). In the past: sent at once.
        at: DateTime<Utc>,
    },
}

/// `POST /api/v1/periodic-tasks`: a periodic task to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "nightly-report", "task": "reports.build",
    "schedule": {"kind": "crontab", "minute": "0", "hour": "3", "timezone": "Europe/Berlin"},
    "kwargs": {"fmt": "pdf"}, "queue": "reports", "expire_seconds": 3600,
    "description": "the nightly PDF report"
}))]
pub struct PeriodicTaskCreate {
    /// Unique name, 1 to 200 characters (the key in URLs: percent-encode it).
    pub name: String,
    /// The task to send, e.g. `reports.build`.
    pub task: String,
    /// When.
    pub schedule: PeriodicSchedule,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub kwargs: Map<String, Value>,
    /// Extra headers of every sent task (beat adds `periodic_task_name`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    /// Queue (default: the default queue).
    #[serde(default)]
    pub queue: Option<String>,
    /// 0..=255, higher runs first.
    #[serde(default)]
    pub priority: Option<u8>,
    /// The schedule is disabled from then on, and sent tasks expire then (not with
    /// `expire_seconds`).
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// Sent tasks expire this many seconds after the send (not with `expires`).
    #[serde(default)]
    pub expire_seconds: Option<u32>,
    /// Run once, then disable (default: true for a clocked schedule, else false).
    #[serde(default)]
    pub one_off: Option<bool>,
    /// Never sent before this instant.
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

/// Present (even as null) → `Some(value)`; absent → `None` (by `#[serde(default)]`).
fn present<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    T::deserialize(d).map(Some)
}

/// `PATCH /api/v1/periodic-tasks/{name}`: the fields to change; the others keep their value.
/// Nullable fields are cleared with `null`. The run history (`last_run_at`,
/// `total_run_count`) is kept, except that disabling clears `last_run_at` (as Django does).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"schedule": {"kind": "crontab", "minute": "30", "hour": "4", "timezone": "UTC"}, "queue": null}))]
pub struct PeriodicTaskUpdate {
    /// Must be the current name if given: periodic tasks cannot be renamed (create one under
    /// the new name and delete this one).
    #[serde(default)]
    pub name: Option<String>,
    /// The task to send.
    #[serde(default)]
    pub task: Option<String>,
    /// A new schedule, of any kind.
    #[serde(default)]
    pub schedule: Option<PeriodicSchedule>,
    /// Positional arguments.
    #[serde(default)]
    pub args: Option<Vec<Value>>,
    /// Keyword arguments.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub kwargs: Option<Map<String, Value>>,
    /// Extra headers.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub headers: Option<Map<String, Value>>,
    /// Queue; null: the default queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub queue: Option<Option<String>>,
    /// Priority 0..=255; null: none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u8>)]
    pub priority: Option<Option<u8>>,
    /// Expiry instant; null: none. Setting it clears `expire_seconds` (unless given too).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires: Option<Option<DateTime<Utc>>>,
    /// Expiry after the send, seconds; null: none. Setting it clears `expires` (unless given
    /// too).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub expire_seconds: Option<Option<u32>>,
    /// Run once, then disable (a new clocked schedule sets it unless given).
    #[serde(default)]
    pub one_off: Option<bool>,
    /// Never sent before this instant; null: no constraint.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub start_time: Option<Option<DateTime<Utc>>>,
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// What beat does with a row it cannot use as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProblemAction {
    /// Not scheduled (left as it is).
    Skip,
    /// Disabled by beat (Celery disables rows whose args/kwargs do not parse).
    Disable,
    /// Scheduled anyway, as Celery does, but probably a mistake.
    Warn,
}

/// Why beat cannot use a periodic task, or what looks wrong with it (what `celeriac beat
/// --check` reports).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodicProblem {
    /// The reason (Celery's message where Celery has one).
    pub reason: String,
    /// What beat does with it.
    pub action: ProblemAction,
}

/// A periodic task (a row of `django_celery_beat_periodictask` with its schedule).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodicTask {
    /// Row id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// The task sent.
    pub task: String,
    /// Enabled.
    pub enabled: bool,
    /// The schedule; null when the row has none beat can use (see `problem`).
    pub schedule: Option<PeriodicSchedule>,
    /// The schedule in words, e.g. `at 09:00 on Monday to Friday (Europe/Berlin)`.
    pub schedule_text: String,
    /// Positional arguments (the stored text as a string when it is not JSON).
    pub args: Value,
    /// Keyword arguments (idem).
    pub kwargs: Value,
    /// Extra headers (idem).
    pub headers: Value,
    /// Queue (null: the default queue).
    pub queue: Option<String>,
    /// Priority.
    pub priority: Option<i32>,
    /// Disabled from then on; sent tasks expire then.
    pub expires: Option<DateTime<Utc>>,
    /// Sent tasks expire this many seconds after the send.
    pub expire_seconds: Option<i32>,
    /// Runs once, then is disabled.
    pub one_off: bool,
    /// Never sent before.
    pub start_time: Option<DateTime<Utc>>,
    /// The previous send (null: never, or since it was last disabled).
    pub last_run_at: Option<DateTime<Utc>>,
    /// Sends so far.
    pub total_run_count: i32,
    /// When beat sends it next (null: disabled, unusable, or never again), computed by the same
    /// code as beat, on the database clock.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Last change (beat's sends count as changes, as in Django).
    pub date_changed: DateTime<Utc>,
    /// Free text.
    pub description: String,
    /// Why beat cannot use it, or what looks wrong; null when all is well.
    pub problem: Option<PeriodicProblem>,
}

/// Every periodic task, by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodicTaskList {
    /// The periodic tasks.
    pub periodic_tasks: Vec<PeriodicTask>,
}

/// A periodic task's task was sent now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodicRun {
    /// The enqueued task's id.
    pub id: Uuid,
    /// Where to read its state and result.
    pub url: String,
    /// The periodic task (the task's `periodic_task_name` header).
    pub periodic_task: String,
}

/// The beat scheduler: its leader, last tick, and how late it sent tasks recently
/// (`celeriac.beat_status`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BeatStatus {
    /// A beat holds the leader lease now. False: nothing sends periodic tasks.
    pub leader_alive: bool,
    /// The last leader's id.
    pub leader_id: Option<Uuid>,
    /// Its host.
    pub leader_hostname: Option<String>,
    /// Its process id.
    pub leader_pid: Option<i32>,
    /// Since when it leads.
    pub leader_since: Option<DateTime<Utc>>,
    /// The leader's last heartbeat with a loaded schedule.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// Seconds since then (database clock).
    pub tick_age_s: Option<f64>,
    /// Enabled periodic tasks the leader has loaded.
    pub schedules: Option<i32>,
    /// Of those, rows it cannot use or warns about.
    pub bad_rows: Option<i32>,
    /// When the leader wakes next to send (or disable) something.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Beat processes alive (leader and stand-bys).
    pub instances: i64,
    /// Tasks sent over the last 5 minutes (catch-ups after downtime excluded).
    pub sent_5m: i64,
    /// Median delay of those sends after their slot, seconds.
    pub lag_p50_s: Option<f64>,
    /// 99th percentile, seconds.
    pub lag_p99_s: Option<f64>,
    /// Largest, seconds.
    pub lag_max_s: Option<f64>,
}
