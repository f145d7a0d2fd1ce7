//! Statements behind the HTTP API and the dashboard: task history, detail, manual retry,
//! throughput. (Queue stats, workers, revoke, purge and pause are shared with the client.)

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use crate::error::Result;
use crate::metrics::THROUGHPUT_BUCKET_SECONDS;
use crate::task::{TaskId, TaskState};

/// What `task_list` returns and from where.
#[derive(Debug, Clone)]
pub struct TaskListFilter {
    /// States to include (`state` column values); empty = every state.
    pub states: Vec<TaskState>,
    /// Only this task name.
    pub name: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only tasks created at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Start after this (created_at, seq) position (the last row of the previous page).
    pub after: Option<(DateTime<Utc>, i64)>,
    /// Rows in the page.
    pub limit: u32,
    /// Statement timeout for the query (a heavy filter cannot hold a connection for long).
    pub timeout: Option<Duration>,
}

/// `task_list`: one task of a page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskListRow {
    /// Task id.
    pub id: Uuid,
    /// Insertion order (the keyset tie-breaker).
    pub seq: i64,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// `state` column.
    pub state: String,
    /// Celery's state.
    pub celery_state: String,
    /// Priority.
    pub priority: i16,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Due.
    pub run_at: DateTime<Utc>,
    /// Current/last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Attempts.
    pub attempt: i32,
    /// Retries.
    pub retries: i32,
    /// Worker running it.
    pub worker_id: Option<Uuid>,
    /// Error type, if any.
    pub error_type: Option<String>,
    /// Error message (first 300 characters).
    pub error_message: Option<String>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// `task_get_detail`: every column the API shows.
#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(missing_docs)]
pub struct TaskDetailRow {
    pub id: Uuid,
    pub seq: i64,
    pub name: String,
    pub queue: String,
    pub state: String,
    pub celery_state: String,
    pub priority: i16,
    pub args: Value,
    pub kwargs: Value,
    pub headers: Value,
    pub created_at: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt: i32,
    pub retries: i32,
    pub lost: i32,
    pub max_retries: Option<i32>,
    pub retry_delay: Option<f64>,
    pub retry_backoff: Option<f64>,
    pub retry_backoff_max: Option<f64>,
    pub retry_jitter: Option<bool>,
    pub soft_time_limit: Option<f64>,
    pub time_limit: Option<f64>,
    pub ignore_result: bool,
    pub worker_id: Option<Uuid>,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub progress_state: Option<String>,
    pub progress: Option<Value>,
    pub revoked_reason: Option<String>,
    pub terminate: bool,
    pub retried_as: Option<Uuid>,
}

/// What a manual retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// No such task.
    NotFound,
    /// A copy was enqueued with this id.
    Created(TaskId),
    /// The task is not FAILURE or REVOKED (state column given).
    NotRetryable(String),
    /// The task was already retried as this task.
    AlreadyRetried(TaskId),
}

/// `queue_throughput_series`: finished attempts in one minute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThroughputRow {
    /// Start of the minute (for rates: unused).
    pub minute: DateTime<Utc>,
    /// Ended SUCCESS.
    pub succeeded: i64,
    /// Ended FAILURE.
    pub failed: i64,
    /// Asked for a retry.
    pub retried: i64,
    /// Revoked while running.
    pub revoked: i64,
}

/// `queue_throughput_rates`: one queue's finished attempts over the last minute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRateRow {
    /// Queue.
    pub queue: String,
    /// Ended SUCCESS.
    pub succeeded: i64,
    /// Ended FAILURE.
    pub failed: i64,
    /// Asked for a retry.
    pub retried: i64,
    /// Revoked while running.
    pub revoked: i64,
    /// The span counted, seconds.
    pub seconds: f64,
}

/// The first page's cursor: later than any row.
fn far_future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `since` when none is given: earlier than any row.
fn far_past() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

impl Store {
    /// The database clock.
    pub async fn clock_read(&self) -> Result<DateTime<Utc>> {
        let (now,): (DateTime<Utc>,) = sqlx::query_as(&self.statements().clock_read)
            .fetch_one(self.pool())
            .await?;
        Ok(now)
    }

    /// A page of tasks, newest first; see `sql/task_list.sql`.
    pub async fn task_list(&self, f: &TaskListFilter) -> Result<Vec<TaskListRow>> {
        let states: Vec<&str> = if f.states.is_empty() {
            TaskState::ALL.iter().map(|s| s.as_str()).collect()
        } else {
            f.states.iter().map(|s| s.as_str()).collect()
        };
        let (after_at, after_seq) = f.after.unwrap_or((far_future(), i64::MAX));
        let mut tx = self.pool().begin().await?;
        if let Some(t) = f.timeout {
            let ms = format!("{}ms", t.as_millis().max(1));
            let _: (String,) = sqlx::query_as(&self.statements().session_statement_timeout)
                .bind(ms)
                .fetch_one(&mut *tx)
                .await?;
        }
        let rows = sqlx::query_as(&self.statements().task_list)
            .bind(&states)
            .bind(f.name.as_deref())
            .bind(f.queue.as_deref())
            .bind(f.since.unwrap_or_else(far_past))
            .bind(after_at)
            .bind(after_seq)
            .bind(i64::from(f.limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// One task with every column the API shows.
    pub async fn task_get_detail(&self, id: TaskId) -> Result<Option<TaskDetailRow>> {
        Ok(sqlx::query_as(&self.statements().task_get_detail)
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Run finished task `id` again as a new task; see `sql/task_retry.sql`.
    pub async fn task_retry(&self, id: TaskId) -> Result<RetryOutcome> {
        let new_id = TaskId::new();
        let row: Option<(String, Option<Uuid>, Option<Uuid>, i64)> =
            sqlx::query_as(&self.statements().task_retry)
                .bind(id.0)
                .bind(new_id.0)
                .bind(self.schema().wakeup_channel())
                .fetch_optional(self.pool())
                .await?;
        let Some((state, retried_as, created, _)) = row else {
            return Ok(RetryOutcome::NotFound);
        };
        if let Some(created) = created {
            return Ok(RetryOutcome::Created(TaskId(created)));
        }
        if let Some(earlier) = retried_as {
            return Ok(RetryOutcome::AlreadyRetried(TaskId(earlier)));
        }
        if matches!(state.as_str(), "FAILURE" | "REVOKED") {
            // A concurrent retry won the row after our snapshot was taken: report its copy.
            if let Some(now) = self.task_get_detail(id).await?
                && let Some(copy) = now.retried_as
            {
                return Ok(RetryOutcome::AlreadyRetried(TaskId(copy)));
            }
        }
        Ok(RetryOutcome::NotRetryable(state))
    }

    /// Finished attempts per minute over the last `minutes` minutes (of `queue`, or all).
    pub async fn queue_throughput_series(
        &self,
        minutes: u32,
        queue: Option<&str>,
    ) -> Result<Vec<ThroughputRow>> {
        Ok(sqlx::query_as(&self.statements().queue_throughput_series)
            .bind(minutes.max(1) as i32)
            .bind(queue)
            .fetch_all(self.pool())
            .await?)
    }

    /// Finished attempts per queue over the last minute.
    pub async fn queue_throughput_rates(&self) -> Result<Vec<QueueRateRow>> {
        Ok(sqlx::query_as(&self.statements().queue_throughput_rates)
            .bind(THROUGHPUT_BUCKET_SECONDS)
            .fetch_all(self.pool())
            .await?)
    }
}
