//! Rows returned by the statements, one struct per result shape.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::task::{ErrorInfo, TaskId, TaskRecord, TaskState};

/// A task as claimed by a worker (`task_claim`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedRow {
    /// Task id.
    pub id: Uuid,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// STARTED, or REVOKED when it had expired.
    pub state: String,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// Headers.
    pub headers: Value,
    /// This attempt's number (fencing token).
    pub attempt: i32,
    /// Retries so far.
    pub retries: i32,
    /// Per-task overrides (NULL: the handler's default).
    pub max_retries: Option<i32>,
    /// See [`crate::task::RetryPolicy`].
    pub retry_delay: Option<f64>,
    /// See [`crate::task::RetryPolicy`].
    pub retry_backoff: Option<f64>,
    /// See [`crate::task::RetryPolicy`].
    pub retry_backoff_max: Option<f64>,
    /// See [`crate::task::RetryPolicy`].
    pub retry_jitter: Option<bool>,
    /// Soft time limit, seconds.
    pub soft_time_limit: Option<f64>,
    /// Hard time limit, seconds.
    pub time_limit: Option<f64>,
    /// Discard the return value.
    pub ignore_result: bool,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// When it became due.
    pub run_at: DateTime<Utc>,
    /// When this attempt started (database clock; NULL when it expired instead).
    pub started_at: Option<DateTime<Utc>>,
}

/// `task_next_due`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NextDueRow {
    /// Earliest run_at of a waiting task.
    pub next_due: Option<DateTime<Utc>>,
    /// The database clock.
    pub now: DateTime<Utc>,
}

/// `task_get`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    id: Uuid,
    name: String,
    queue: String,
    state: String,
    celery_state: String,
    priority: i16,
    args: Value,
    kwargs: Value,
    headers: Value,
    created_at: DateTime<Utc>,
    run_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    attempt: i32,
    retries: i32,
    lost: i32,
    max_retries: Option<i32>,
    ignore_result: bool,
    worker_id: Option<Uuid>,
    result: Option<Value>,
    error: Option<Value>,
    progress_state: Option<String>,
    progress: Option<Value>,
    revoked_reason: Option<String>,
}

impl TaskRow {
    /// The public record.
    pub fn into_record(self) -> Result<TaskRecord> {
        let state: TaskState = self.state.parse()?;
        let error = match self.error {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<ErrorInfo>(v.clone())
                    .unwrap_or_else(|_| ErrorInfo::new("Unknown", v.to_string())),
            ),
        };
        Ok(TaskRecord {
            id: TaskId(self.id),
            name: self.name,
            queue: self.queue,
            state,
            celery_state: self.celery_state,
            priority: self.priority,
            args: self.args,
            kwargs: self.kwargs,
            headers: self.headers,
            created_at: self.created_at,
            run_at: self.run_at,
            expires_at: self.expires_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            attempt: self.attempt,
            retries: self.retries,
            lost: self.lost,
            max_retries: self.max_retries,
            ignore_result: self.ignore_result,
            worker_id: self.worker_id,
            result: self.result,
            error,
            progress_state: self.progress_state,
            progress: self.progress,
            revoked_reason: self.revoked_reason,
        })
    }
}

/// `task_list_running`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunningRow {
    /// Task id.
    pub id: Uuid,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// The worker running it.
    pub worker_id: Option<Uuid>,
    /// Attempt number.
    pub attempt: i32,
    /// Retries so far.
    pub retries: i32,
    /// When this attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// Custom state reported, if any.
    pub progress_state: Option<String>,
    /// A terminate request is pending.
    pub terminate: bool,
}

/// `task_list_owned`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OwnedRow {
    /// Task id.
    pub id: Uuid,
    /// Attempt number.
    pub attempt: i32,
    /// revoke(terminate=true) was asked.
    pub terminate: bool,
}

/// What a worker announces about itself.
#[derive(Debug, Clone)]
pub struct WorkerRegistration {
    /// Random per process start.
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS process id.
    pub pid: i32,
    /// Queues consumed.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Celeriac version.
    pub version: String,
    /// Lease length.
    pub lease: Duration,
    /// Free-form details (pool kind, …).
    pub info: Value,
}

/// `worker_list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    /// Worker id.
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS process id.
    pub pid: i32,
    /// Queues consumed.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Celeriac version.
    pub version: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Lease end.
    pub expires_at: DateTime<Utc>,
    /// Draining after SIGTERM.
    pub stopping: bool,
    /// Lease still valid.
    pub alive: bool,
    /// Free-form details.
    pub info: Value,
    /// Tasks running now.
    pub running: i64,
}

/// `queue_stats`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QueueStatsRow {
    /// Queue name.
    pub queue: String,
    /// Paused cluster-wide.
    pub paused: bool,
    /// Tasks ready to run now (including due scheduled ones).
    pub ready: i64,
    /// Tasks waiting for a future countdown/ETA/retry.
    pub scheduled: i64,
    /// Tasks running.
    pub running: i64,
    /// Tasks waiting for a concurrency slot of a limit.
    pub throttled: i64,
    /// Due time of the oldest ready task.
    pub oldest_ready_at: Option<DateTime<Utc>>,
    /// Its age in seconds.
    pub oldest_ready_age_s: Option<f64>,
    /// Live workers consuming the queue.
    pub workers: i64,
}

impl TryFrom<&str> for TaskState {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        s.parse()
    }
}
