//! Plain data about tasks: ids, states, what to enqueue, retry policy, error records. No I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A task's id: a UUID, chosen by the caller or generated (time-ordered v7) at enqueue.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A new time-ordered id (UUID v7), so inserts land at the right edge of the primary key.
    pub fn new() -> Self {
        TaskId(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s.trim())
            .map(TaskId)
            .map_err(|e| Error::Invalid(format!("{s:?} is not a task id (UUID): {e}")))
    }
}

impl From<Uuid> for TaskId {
    fn from(u: Uuid) -> Self {
        TaskId(u)
    }
}

/// The `state` column. Celery's view of it is [`celery_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Waiting for its countdown/ETA.
    Scheduled,
    /// Ready to be claimed.
    Pending,
    /// Waiting for a concurrency slot of a limit.
    Throttled,
    /// Claimed by a worker and running.
    Started,
    /// Failed and waiting for its retry backoff.
    Retry,
    /// Finished with a result.
    Success,
    /// Finished with an error.
    Failure,
    /// Revoked, expired or purged before it finished.
    Revoked,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Scheduled,
        TaskState::Pending,
        TaskState::Throttled,
        TaskState::Started,
        TaskState::Retry,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Revoked,
    ];

    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduled => "SCHEDULED",
            TaskState::Pending => "PENDING",
            TaskState::Throttled => "THROTTLED",
            TaskState::Started => "STARTED",
            TaskState::Retry => "RETRY",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Revoked => "REVOKED",
        }
    }

    /// SUCCESS, FAILURE or REVOKED: the task will not run again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Invalid(format!("unknown task state {s:?}")))
    }
}

/// Celery's name for a state (mirrors the SQL function `celeriac.celery_state`): waiting rows
/// are PENDING, or RETRY once retried; a running task that reported a custom state shows it.
pub fn celery_state(state: TaskState, retries: i32, progress_state: Option<&str>) -> String {
    match (state, progress_state) {
        (TaskState::Scheduled | TaskState::Pending | TaskState::Throttled, _) if retries > 0 => {
            "RETRY".into()
        }
        (TaskState::Scheduled | TaskState::Throttled, _) => "PENDING".into(),
        (TaskState::Started, Some(custom)) => custom.into(),
        (s, _) => s.as_str().into(),
    }
}

/// When a task stops being worth starting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expires {
    /// At this instant.
    At(DateTime<Utc>),
    /// This many seconds after the enqueue (database clock).
    In(f64),
}

/// How long a unique key keeps a second enqueue from adding a task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueScope {
    /// While the task waits (scheduled, ready or waiting to retry).
    Queued,
    /// While the task waits or runs.
    Active,
    /// One task per key per window of this many seconds (windows aligned on the epoch).
    Window(f64),
}

impl UniqueScope {
    /// The `unique_scope` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            UniqueScope::Queued => "queued",
            UniqueScope::Active => "active",
            UniqueScope::Window(_) => "window",
        }
    }

    /// The window length, for `Window`.
    pub fn window(self) -> Option<f64> {
        match self {
            UniqueScope::Window(s) => Some(s),
            _ => None,
        }
    }
}

/// A task to enqueue, with every Celery option. Built with [`NewTask::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The task id; generated when `None`.
    pub id: Option<TaskId>,
    /// The registered task name, e.g. `emails.send`.
    pub name: String,
    /// Positional arguments: a JSON array.
    pub args: Value,
    /// Keyword arguments: a JSON object.
    pub kwargs: Value,
    /// Free-form message headers: a JSON object.
    pub headers: Value,
    /// The queue; `None` means the configured default queue.
    pub queue: Option<String>,
    /// 0..=255, higher runs first.
    pub priority: u8,
    /// Run no earlier than this many seconds from now.
    pub countdown: Option<f64>,
    /// Run no earlier than this instant.
    pub eta: Option<DateTime<Utc>>,
    /// Not started by then: REVOKED (`expired`).
    pub expires: Option<Expires>,
    /// Retries allowed; `None` = the task's registered default.
    pub max_retries: Option<u32>,
    /// Seconds between retries when the task gives no countdown (Celery's default_retry_delay).
    pub retry_delay: Option<f64>,
    /// Exponential backoff factor in seconds (0 = off).
    pub retry_backoff: Option<f64>,
    /// Cap on the backoff delay, in seconds.
    pub retry_backoff_max: Option<f64>,
    /// Full jitter on the backoff delay.
    pub retry_jitter: Option<bool>,
    /// Seconds after which the running task is asked to stop (it can catch this).
    pub soft_time_limit: Option<f64>,
    /// Seconds after which the running task is killed: FAILURE `TimeLimitExceeded`.
    pub time_limit: Option<f64>,
    /// Do not store the return value.
    pub ignore_result: bool,
    /// A second enqueue with the same key returns the live task instead of adding one.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// How long the key stays taken (default: while queued).
    #[serde(default)]
    pub unique_scope: Option<UniqueScope>,
}

impl NewTask {
    /// A task with no arguments and every option at its default.
    pub fn new(name: impl Into<String>) -> Self {
        NewTask {
            id: None,
            name: name.into(),
            args: Value::Array(vec![]),
            kwargs: Value::Object(Map::new()),
            headers: Value::Object(Map::new()),
            queue: None,
            priority: 0,
            countdown: None,
            eta: None,
            expires: None,
            max_retries: None,
            retry_delay: None,
            retry_backoff: None,
            retry_backoff_max: None,
            retry_jitter: None,
            soft_time_limit: None,
            time_limit: None,
            ignore_result: false,
            unique_key: None,
            unique_scope: None,
        }
    }

    /// Make the task unique by `key` within `scope`: enqueuing it again while the key is
    /// taken returns the existing task.
    pub fn unique(mut self, key: impl Into<String>, scope: UniqueScope) -> Self {
        self.unique_key = Some(key.into());
        self.unique_scope = Some(scope);
        self
    }

    /// Use this id instead of generating one.
    pub fn id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }
    /// Positional arguments (a JSON array).
    pub fn args(mut self, args: Value) -> Self {
        self.args = args;
        self
    }
    /// Keyword arguments (a JSON object).
    pub fn kwargs(mut self, kwargs: Value) -> Self {
        self.kwargs = kwargs;
        self
    }
    /// Message headers (a JSON object).
    pub fn headers(mut self, headers: Value) -> Self {
        self.headers = headers;
        self
    }
    /// The queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// 0..=255, higher first.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
    /// Run no earlier than `seconds` from now.
    pub fn countdown(mut self, seconds: f64) -> Self {
        self.countdown = Some(seconds);
        self
    }
    /// Run no earlier than `eta`.
    pub fn eta(mut self, eta: DateTime<Utc>) -> Self {
        self.eta = Some(eta);
        self
    }
    /// Revoke if not started by `at`.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires = Some(Expires::At(at));
        self
    }
    /// Revoke if not started within `seconds`.
    pub fn expires_in(mut self, seconds: f64) -> Self {
        self.expires = Some(Expires::In(seconds));
        self
    }
    /// Retries allowed.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }
    /// Seconds between retries without an explicit countdown.
    pub fn retry_delay(mut self, seconds: f64) -> Self {
        self.retry_delay = Some(seconds);
        self
    }
    /// Exponential backoff: factor (s), cap (s), full jitter.
    pub fn retry_backoff(mut self, factor: f64, max: f64, jitter: bool) -> Self {
        self.retry_backoff = Some(factor);
        self.retry_backoff_max = Some(max);
        self.retry_jitter = Some(jitter);
        self
    }
    /// Soft time limit (s).
    pub fn soft_time_limit(mut self, seconds: f64) -> Self {
        self.soft_time_limit = Some(seconds);
        self
    }
    /// Hard time limit (s).
    pub fn time_limit(mut self, seconds: f64) -> Self {
        self.time_limit = Some(seconds);
        self
    }
    /// Do not store the result.
    pub fn ignore_result(mut self, ignore: bool) -> Self {
        self.ignore_result = ignore;
        self
    }

    /// Check everything that can be checked without the database.
    pub fn validate(&self, max_payload_bytes: usize) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(m));
        if self.name.trim().is_empty() || self.name.len() > 255 {
            return invalid(format!(
                "task name must be 1 to 255 characters, got {:?}",
                self.name
            ));
        }
        if let Some(q) = &self.queue
            && (q.is_empty() || q.len() > 255)
        {
            return invalid(format!("queue must be 1 to 255 characters, got {q:?}"));
        }
        if !self.args.is_array() {
            return invalid(format!(
                "args must be a JSON array, got {}",
                json_kind(&self.args)
            ));
        }
        if !self.kwargs.is_object() {
            return invalid(format!(
                "kwargs must be a JSON object, got {}",
                json_kind(&self.kwargs)
            ));
        }
        if !self.headers.is_object() {
            return invalid(format!(
                "headers must be a JSON object, got {}",
                json_kind(&self.headers)
            ));
        }
        if self.countdown.is_some() && self.eta.is_some() {
            return invalid("give countdown or eta, not both".into());
        }
        let seconds = [
            ("countdown", self.countdown),
            (
                "expires",
                match self.expires {
                    Some(Expires::In(s)) => Some(s),
                    _ => None,
                },
            ),
            ("retry_delay", self.retry_delay),
            ("retry_backoff", self.retry_backoff),
            ("retry_backoff_max", self.retry_backoff_max),
        ];
        for (what, v) in seconds {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return invalid(format!(
                    "{what} must be a non-negative number of seconds, got {v}"
                ));
            }
        }
        for (what, v) in [
            ("soft_time_limit", self.soft_time_limit),
            ("time_limit", self.time_limit),
        ] {
            if let Some(v) = v
                && (!v.is_finite() || v <= 0.0)
            {
                return invalid(format!(
                    "{what} must be a positive number of seconds, got {v}"
                ));
            }
        }
        if let Some(k) = &self.unique_key
            && (k.is_empty() || k.len() > 1000)
        {
            return invalid("unique_key must be 1 to 1000 characters".into());
        }
        if let Some(w) = self.unique_scope.and_then(UniqueScope::window)
            && (!w.is_finite() || w <= 0.0)
        {
            return invalid(format!(
                "a unique window must be a positive number of seconds, got {w}"
            ));
        }
        let size = self.payload_size();
        if size > max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                size,
                limit: max_payload_bytes,
            });
        }
        Ok(())
    }

    /// Serialized size of args, kwargs and headers together (what the limit applies to).
    pub fn payload_size(&self) -> usize {
        [&self.args, &self.kwargs, &self.headers]
            .iter()
            .map(|v| {
                serde_json::to_vec(v)
                    .map(|b| b.len())
                    .unwrap_or(usize::MAX / 4)
            })
            .sum()
    }
}

/// "array", "object", "string", ... for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How a task is retried: Celery's `max_retries`, `default_retry_delay`, `retry_backoff`,
/// `retry_backoff_max` and `retry_jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Seconds between retries when there is no backoff and no explicit countdown.
    pub delay: f64,
    /// Exponential backoff factor in seconds; 0 turns backoff off.
    pub backoff: f64,
    /// Upper bound of the backoff delay, in seconds.
    pub backoff_max: f64,
    /// Full jitter: the delay is drawn uniformly from 0..=computed delay.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Celery's defaults: 3 retries, 180 s apart, no backoff (cap 600 s, jitter on when enabled).
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            delay: 180.0,
            backoff: 0.0,
            backoff_max: 600.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Seconds to wait before retry number `retries + 1`, given `retries` done so far.
    /// `rand01` is a uniform sample in [0, 1) used for jitter (passed in so tests are exact).
    pub fn delay_for(&self, retries: u32, rand01: f64) -> f64 {
        if self.backoff > 0.0 {
            let exp = self.backoff * 2f64.powi(retries.min(62) as i32);
            let capped = exp.min(self.backoff_max).max(0.0);
            if self.jitter {
                // Celery: random.randrange(countdown + 1), an integer in 0..=countdown.
                ((capped.floor() + 1.0) * rand01.clamp(0.0, 1.0))
                    .floor()
                    .min(capped)
            } else {
                capped
            }
        } else {
            self.delay.max(0.0)
        }
    }

    /// This policy with the row's per-task overrides applied.
    pub fn with_overrides(
        mut self,
        max_retries: Option<i32>,
        delay: Option<f64>,
        backoff: Option<f64>,
        backoff_max: Option<f64>,
        jitter: Option<bool>,
    ) -> Self {
        if let Some(n) = max_retries {
            self.max_retries = n.max(0) as u32;
        }
        if let Some(d) = delay {
            self.delay = d;
        }
        if let Some(b) = backoff {
            self.backoff = b;
        }
        if let Some(m) = backoff_max {
            self.backoff_max = m;
        }
        if let Some(j) = jitter {
            self.jitter = j;
        }
        self
    }
}

/// A stored error: Celery's exception type and message, plus a traceback (for Rust handlers,
/// the chain of causes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The error type, e.g. `NotRegistered`, `TimeLimitExceeded`, `HttpError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// Traceback or cause chain, when there is one.
    #[serde(default)]
    pub traceback: Option<String>,
}

impl ErrorInfo {
    /// An error of type `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind: kind.into(),
            message: message.into(),
            traceback: None,
        }
    }

    /// With a traceback / cause chain.
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Self {
        self.traceback = Some(traceback.into());
        self
    }

    /// The JSON stored in the `error` column.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Everything stored about a task, as read back by `AsyncResult` and `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The id.
    pub id: TaskId,
    /// The task name.
    pub name: String,
    /// The queue.
    pub queue: String,
    /// The `state` column.
    pub state: TaskState,
    /// Celery's name for the state (custom progress states included).
    pub celery_state: String,
    /// 0..=255.
    pub priority: i16,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// Headers.
    pub headers: Value,
    /// When it was enqueued (Celery's "received").
    pub created_at: DateTime<Utc>,
    /// Not claimable before this.
    pub run_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the current/last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Attempts started so far.
    pub attempt: i32,
    /// Retries so far.
    pub retries: i32,
    /// Attempts lost with their worker.
    pub lost: i32,
    /// Per-task override of max_retries.
    pub max_retries: Option<i32>,
    /// Whether the return value is discarded.
    pub ignore_result: bool,
    /// The worker running it.
    pub worker_id: Option<Uuid>,
    /// The return value (SUCCESS).
    pub result: Option<Value>,
    /// The error (FAILURE, or the last retry's cause).
    pub error: Option<ErrorInfo>,
    /// Custom state reported while running.
    pub progress_state: Option<String>,
    /// Its meta.
    pub progress: Option<Value>,
    /// Why it was revoked: `revoked`, `expired`, `purged`, `terminated`.
    pub revoked_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn celery_state_mapping() {
        assert_eq!(celery_state(TaskState::Scheduled, 0, None), "PENDING");
        assert_eq!(celery_state(TaskState::Scheduled, 1, None), "RETRY");
        assert_eq!(celery_state(TaskState::Pending, 2, None), "RETRY");
        assert_eq!(celery_state(TaskState::Retry, 1, None), "RETRY");
        assert_eq!(
            celery_state(TaskState::Started, 0, Some("PROGRESS")),
            "PROGRESS"
        );
        assert_eq!(celery_state(TaskState::Success, 3, None), "SUCCESS");
    }

    #[test]
    fn state_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        assert!("nope".parse::<TaskState>().is_err());
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 10,
            delay: 180.0,
            backoff: 2.0,
            backoff_max: 60.0,
            jitter: false,
        };
        assert_eq!(p.delay_for(0, 0.5), 2.0);
        assert_eq!(p.delay_for(1, 0.5), 4.0);
        assert_eq!(p.delay_for(4, 0.5), 32.0);
        assert_eq!(p.delay_for(5, 0.5), 60.0);
        assert_eq!(p.delay_for(60, 0.5), 60.0);
        let j = RetryPolicy { jitter: true, ..p };
        assert_eq!(j.delay_for(3, 0.5), 8.0);
        assert_eq!(j.delay_for(3, 0.0), 0.0);
        assert!(j.delay_for(3, 0.999) <= 16.0);
        let flat = RetryPolicy::default();
        assert_eq!(flat.delay_for(7, 0.3), 180.0);
    }

    #[test]
    fn validation_rejects_bad_shapes() {
        assert!(NewTask::new("a").validate(1024).is_ok());
        assert!(NewTask::new("").validate(1024).is_err());
        assert!(
            NewTask::new("a")
                .args(json!({"x": 1}))
                .validate(1024)
                .is_err()
        );
        assert!(NewTask::new("a").kwargs(json!([1])).validate(1024).is_err());
        assert!(
            NewTask::new("a")
                .countdown(1.0)
                .eta(Utc::now())
                .validate(1024)
                .is_err()
        );
        assert!(
            NewTask::new("a")
                .countdown(f64::NAN)
                .validate(1024)
                .is_err()
        );
        assert!(NewTask::new("a").time_limit(0.0).validate(1024).is_err());
        let big = NewTask::new("a").args(json!(["x".repeat(2000)]));
        assert!(matches!(
            big.validate(1024),
            Err(Error::PayloadTooLarge { limit: 1024, .. })
        ));
    }
}
