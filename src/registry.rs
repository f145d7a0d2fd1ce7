//! Task name → handler. Handlers are async functions of a [`TaskContext`]; names are matched
//! exactly first, then against glob patterns (`billing.*`) in registration order.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::store::Store;
use crate::task::{ErrorInfo, RetryPolicy, TaskId};

/// What a handler returns.
pub type HandlerResult = Result<Value, TaskError>;
/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs one task. Implemented for every `Fn(TaskContext) -> impl Future<Output = HandlerResult>`.
pub trait Handler: Send + Sync + 'static {
    /// Run the task described by `ctx`.
    fn call(&self, ctx: TaskContext) -> BoxFuture<HandlerResult>;
}

impl<F, Fut> Handler for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, ctx: TaskContext) -> BoxFuture<HandlerResult> {
        Box::pin((self)(ctx))
    }
}

/// Per-task defaults, like the options of Celery's `@app.task(...)`. A value set at enqueue
/// overrides these; these override the worker's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Soft time limit (s).
    pub soft_time_limit: Option<f64>,
    /// Hard time limit (s).
    pub time_limit: Option<f64>,
    /// When the hard time limit kills the task, retry it (while retries remain) instead of
    /// failing with `TimeLimitExceeded`.
    pub retry_on_time_limit: bool,
}

/// A registered handler with its options.
#[derive(Clone)]
pub struct Registered {
    /// The handler.
    pub handler: Arc<dyn Handler>,
    /// Its defaults.
    pub options: TaskOptions,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The set of tasks a worker can run.
#[derive(Clone, Default, Debug)]
pub struct Registry {
    exact: HashMap<String, Registered>,
    patterns: Vec<(String, Registered)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-in tasks (`celeriac.noop`, `celeriac.sleep`,
    /// `celeriac.echo`, `celeriac.fail`, `http.request`).
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        crate::executor::builtins::register(&mut r);
        r
    }

    /// Register `handler` under `name` with default options. A name containing `*` or `?` is
    /// a glob pattern matched against task names that have no exact registration.
    pub fn register(&mut self, name: impl Into<String>, handler: impl Handler) -> &mut Self {
        self.register_with(name, TaskOptions::default(), handler)
    }

    /// Register `handler` under `name` with `options`.
    pub fn register_with(
        &mut self,
        name: impl Into<String>,
        options: TaskOptions,
        handler: impl Handler,
    ) -> &mut Self {
        self.insert(name.into(), Arc::new(handler), options)
    }

    /// Register an already shared handler (e.g. one executor serving many names).
    pub fn insert(
        &mut self,
        name: String,
        handler: Arc<dyn Handler>,
        options: TaskOptions,
    ) -> &mut Self {
        let reg = Registered { handler, options };
        if name.contains(['*', '?']) {
            self.patterns.retain(|(p, _)| *p != name);
            self.patterns.push((name, reg));
        } else {
            self.exact.insert(name, reg);
        }
        self
    }

    /// The handler for `name`: an exact registration, else the first matching pattern.
    pub fn resolve(&self, name: &str) -> Option<&Registered> {
        self.exact.get(name).or_else(|| {
            self.patterns
                .iter()
                .find(|(p, _)| glob_match(p, name))
                .map(|(_, r)| r)
        })
    }

    /// Registered exact names and patterns, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .exact
            .keys()
            .cloned()
            .chain(self.patterns.iter().map(|(p, _)| p.clone()))
            .collect();
        v.sort();
        v
    }
}

/// `*` matches any run of characters (dots included), `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Why a running task is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The soft time limit passed; the task may catch this and return (Celery's
    /// `SoftTimeLimitExceeded`).
    SoftTimeLimit,
    /// `revoke(id, terminate=true)`.
    Terminated,
    /// The worker is shutting down and the grace period is over.
    Shutdown,
    /// The worker lost its lease and the task was given to another worker.
    LostOwnership,
}

impl CancelReason {
    /// The error type a handler should report when it stops for this reason.
    pub fn error_type(self) -> &'static str {
        match self {
            CancelReason::SoftTimeLimit => "SoftTimeLimitExceeded",
            CancelReason::Terminated => "TaskRevokedError",
            CancelReason::Shutdown => "WorkerShutdown",
            CancelReason::LostOwnership => "WorkerLostError",
        }
    }
}

#[derive(Clone)]
enum ProgressSink {
    /// Write to the task's row (fenced by attempt).
    Store { store: Store, attempt: i32 },
    /// Eager mode: keep in memory.
    Memory(Arc<Mutex<Vec<(String, Value)>>>),
}

/// Everything a handler gets about the task it runs, plus progress, cancellation and retry.
#[derive(Clone)]
pub struct TaskContext {
    /// Task id.
    pub id: TaskId,
    /// Task name.
    pub name: String,
    /// Queue it came from.
    pub queue: String,
    /// Positional arguments (a JSON array).
    pub args: Value,
    /// Keyword arguments (a JSON object).
    pub kwargs: Value,
    /// Headers (a JSON object).
    pub headers: Value,
    /// Retries so far (Celery's `request.retries`).
    pub retries: u32,
    /// This attempt's number (1 for the first run).
    pub attempt: i32,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// When it became due (its ETA when it had one).
    pub run_at: DateTime<Utc>,
    /// The effective soft time limit (s).
    pub soft_time_limit: Option<f64>,
    /// The effective hard time limit (s).
    pub time_limit: Option<f64>,
    /// The effective retry policy.
    pub retry_policy: RetryPolicy,
    /// Retry (rather than fail) when the hard time limit kills the task.
    pub retry_on_time_limit: bool,
    progress: ProgressSink,
    cancel: CancellationToken,
    cancel_reason: Arc<Mutex<Option<CancelReason>>>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Fields of a [`TaskContext`] that come from the claimed row.
#[derive(Debug, Clone)]
pub struct TaskMeta {
    /// Task id.
    pub id: TaskId,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// Headers.
    pub headers: Value,
    /// Retries so far.
    pub retries: u32,
    /// Attempt number.
    pub attempt: i32,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// Due time.
    pub run_at: DateTime<Utc>,
    /// Effective soft limit.
    pub soft_time_limit: Option<f64>,
    /// Effective hard limit.
    pub time_limit: Option<f64>,
    /// Effective retry policy.
    pub retry_policy: RetryPolicy,
    /// Retry when the hard time limit kills the task.
    pub retry_on_time_limit: bool,
}

impl TaskContext {
    /// A context whose progress goes to the task's row.
    pub fn for_worker(meta: TaskMeta, store: Store) -> Self {
        let attempt = meta.attempt;
        Self::build(meta, ProgressSink::Store { store, attempt })
    }

    /// A context for eager runs: progress is kept in `log`.
    pub fn for_eager(meta: TaskMeta, log: Arc<Mutex<Vec<(String, Value)>>>) -> Self {
        Self::build(meta, ProgressSink::Memory(log))
    }

    fn build(m: TaskMeta, progress: ProgressSink) -> Self {
        TaskContext {
            id: m.id,
            name: m.name,
            queue: m.queue,
            args: m.args,
            kwargs: m.kwargs,
            headers: m.headers,
            retries: m.retries,
            attempt: m.attempt,
            created_at: m.created_at,
            run_at: m.run_at,
            soft_time_limit: m.soft_time_limit,
            time_limit: m.time_limit,
            retry_policy: m.retry_policy,
            retry_on_time_limit: m.retry_on_time_limit,
            progress,
            cancel: CancellationToken::new(),
            cancel_reason: Arc::new(Mutex::new(None)),
        }
    }

    /// Positional argument `i`, deserialized.
    pub fn arg<T: DeserializeOwned>(&self, i: usize) -> Result<T, TaskError> {
        let v = self.args.get(i).ok_or_else(|| {
            TaskError::fail(
                "TypeError",
                format!("{}: missing positional argument {i}", self.name),
            )
        })?;
        serde_json::from_value(v.clone()).map_err(|e| {
            TaskError::fail(
                "TypeError",
                format!("{}: positional argument {i}: {e}", self.name),
            )
        })
    }

    /// Keyword argument `key`, deserialized; `None` when absent or null.
    pub fn kwarg<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TaskError> {
        match self.kwargs.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                TaskError::fail(
                    "TypeError",
                    format!("{}: keyword argument {key:?}: {e}", self.name),
                )
            }),
        }
    }

    /// Report a custom state with meta (Celery's `update_state(state='PROGRESS', meta={...})`).
    /// Readers see it as the task's state until it finishes.
    pub async fn update_state(&self, state: &str, meta: Value) -> Result<(), TaskError> {
        match &self.progress {
            ProgressSink::Store { store, attempt } => {
                let current = store
                    .task_set_progress(self.id, *attempt, state, &meta)
                    .await
                    .map_err(|e| TaskError::fail("ProgressError", e.to_string()))?;
                if !current {
                    tracing::debug!(task.id = %self.id, "progress of a stale attempt ignored");
                }
                Ok(())
            }
            ProgressSink::Memory(log) => {
                if let Ok(mut log) = log.lock() {
                    log.push((state.to_string(), meta));
                }
                Ok(())
            }
        }
    }

    /// Resolves when the task is asked to stop (soft time limit, terminate, shutdown, lost
    /// lease). Handlers doing long work should `select!` on it.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the task was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Why the task was asked to stop.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.cancel_reason.lock().ok().and_then(|r| *r)
    }

    /// The error to return after stopping because of [`TaskContext::cancelled`].
    pub fn cancelled_error(&self) -> TaskError {
        let reason = self.cancel_reason().unwrap_or(CancelReason::Shutdown);
        TaskError::fail(
            reason.error_type(),
            format!("{} stopped: {reason:?}", self.name),
        )
    }

    /// Ask the task to stop (first reason wins).
    pub fn cancel(&self, reason: CancelReason) {
        if let Ok(mut r) = self.cancel_reason.lock()
            && r.is_none()
        {
            *r = Some(reason);
        }
        self.cancel.cancel();
    }

    /// Ask for named lock `name` for `ttl` from inside a task (see [`crate::lock`]). Not
    /// available in eager mode.
    pub fn lock(
        &self,
        name: impl Into<String>,
        ttl: std::time::Duration,
    ) -> Result<crate::lock::LockRequest, TaskError> {
        match &self.progress {
            ProgressSink::Store { store, .. } => {
                Ok(crate::lock::LockRequest::new(store.clone(), name, ttl)
                    .holder(format!("task {}", self.id)))
            }
            ProgressSink::Memory(_) => Err(TaskError::fail(
                "NotSupported",
                "locks need a database (not eager mode)",
            )),
        }
    }

    /// Celery's `self.retry(countdown=...)`: return this error to be run again after
    /// `countdown` seconds (`None`: the retry policy's delay).
    pub fn retry(&self, countdown: Option<f64>) -> TaskError {
        TaskError::Retry {
            countdown,
            max_retries: None,
            error: None,
        }
    }
}

/// How a handler fails. Any `std::error::Error` converts into [`TaskError::Failed`] with `?`.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    /// The task failed: FAILURE with this error (no retry).
    Failed(ErrorInfo),
    /// Run the task again (Celery's `self.retry(...)`), unless its retries are used up, in
    /// which case it fails with `error` (or `MaxRetriesExceededError`).
    Retry {
        /// Seconds until the retry; `None`: the policy's delay/backoff.
        countdown: Option<f64>,
        /// Override of the retry budget for this decision.
        max_retries: Option<u32>,
        /// The cause, recorded with the retry and used as the final error.
        error: Option<ErrorInfo>,
    },
}

impl TaskError {
    /// A failure of type `kind`.
    pub fn fail(kind: impl Into<String>, message: impl Into<String>) -> Self {
        TaskError::Failed(ErrorInfo::new(kind, message))
    }

    /// A retry request after `countdown` seconds (`None`: the policy's delay).
    pub fn retry(countdown: Option<f64>) -> Self {
        TaskError::Retry {
            countdown,
            max_retries: None,
            error: None,
        }
    }

    /// A retry request caused by `error`, after `countdown` seconds.
    pub fn retry_because(countdown: Option<f64>, error: ErrorInfo) -> Self {
        TaskError::Retry {
            countdown,
            max_retries: None,
            error: Some(error),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full
            .split('<')
            .next()
            .unwrap_or(full)
            .rsplit("::")
            .next()
            .unwrap_or(full);
        let mut chain = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        let mut info = ErrorInfo::new(short, e.to_string());
        if !chain.is_empty() {
            info = info.with_traceback(format!("caused by: {}", chain.join("\ncaused by: ")));
        }
        TaskError::Failed(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("billing.*", "billing.charge"));
        assert!(glob_match("billing.*", "billing.a.b"));
        assert!(!glob_match("billing.*", "billingx"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*.send", "emails.send"));
        assert!(!glob_match("*.send", "emails.sender"));
    }

    #[test]
    fn exact_beats_pattern() {
        let mut r = Registry::new();
        r.register("a.*", |_c: TaskContext| async { Ok(Value::from(1)) });
        r.register("a.b", |_c: TaskContext| async { Ok(Value::from(2)) });
        assert!(r.resolve("a.b").is_some());
        assert!(r.resolve("a.c").is_some());
        assert!(r.resolve("b").is_none());
        assert_eq!(r.names(), vec!["a.*".to_string(), "a.b".to_string()]);
    }

    #[test]
    fn std_errors_convert() {
        let e: TaskError = "x".parse::<i32>().unwrap_err().into();
        match e {
            TaskError::Failed(info) => assert_eq!(info.kind, "ParseIntError"),
            other => panic!("{other:?}"),
        }
    }
}
