//! The supervised process pool (Celery's prefork, supervised by Rust): N long-lived children,
//! each running one task at a time, spoken to over the JSON-lines [`protocol`].
//!
//! - A task checks a child out of the pool for its whole run (a [`Lease`]); a healthy child
//!   goes back after its `result`, or is recycled (stopped and replaced) once it ran
//!   `max_tasks_per_child` tasks or its resident memory passed `max_memory_per_child`.
//! - Soft time limit (the worker cancels the task's context): the child gets SIGUSR1, which the
//!   Python runner turns into `SoftTimeLimitExceeded` inside the task. Terminate, shutdown or a
//!   lost lease: SIGUSR2 (the runner raises `TaskTerminated`).
//! - Hard time limit, or a task aborted after not stopping: the worker drops the handler's
//!   future, the lease is dropped with the child still busy, and the child's process group is
//!   SIGKILLed and replaced in the background. The worker records `TimeLimitExceeded`.
//! - A child that dies while running a task (crash, OOM killer, `os._exit`) ends that task
//!   `WorkerLostError` (or a retry, per the route's `on_worker_lost` or the task's own
//!   `reject_on_worker_lost`); it is replaced; its task never runs again on the same attempt.

mod child;
pub mod protocol;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use self::child::Child;
use self::protocol::{FromChild, Status, TaskMsg};
use super::routes::{eta_of, periodic_task_name};
use crate::error::{Error, Result};
use crate::registry::{BoxFuture, CancelReason, Handler, HandlerResult, TaskContext, TaskError};
use crate::task::ErrorInfo;

/// What happens to a task whose child dies while running it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LostPolicy {
    /// FAILURE `WorkerLostError` (Celery's default).
    #[default]
    Fail,
    /// Retry per the task's retry policy (Celery's `acks_late` + `reject_on_worker_lost`, but
    /// bounded by `max_retries`).
    Retry,
}

/// How the pool runs its children.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Shell command of a child (run as `/bin/sh -c "exec <command>"`).
    pub command: String,
    /// Number of children.
    pub processes: usize,
    /// Replace a child after this many tasks.
    pub max_tasks_per_child: Option<u64>,
    /// Replace a child whose resident memory exceeds this (KiB) after a task.
    pub max_memory_per_child_kib: Option<u64>,
    /// How long a child may take to send `ready`.
    pub startup_timeout: Duration,
    /// How long a child asked to exit (stdin closed) may take before it is killed.
    pub stop_grace: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            command: String::new(),
            processes: 1,
            max_tasks_per_child: None,
            max_memory_per_child_kib: None,
            startup_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// The pool. Shared by every route that uses it.
pub struct ProcessPool {
    cfg: PoolConfig,
    state: Mutex<State>,
    /// One permit per child: a task holds one for its whole run.
    permits: Arc<Semaphore>,
    /// A child became idle (or a replacement is ready).
    idle_ready: Notify,
    closed: AtomicBool,
    /// Children started so far (sequence numbers for logs).
    spawned: AtomicU64,
    /// Background stops and replacements, awaited by shutdown so no child outlives the pool.
    background: TaskTracker,
}

struct State {
    idle: Vec<Child>,
    /// Children alive or starting (idle + leased + starting) ≤ processes.
    live: usize,
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ProcessPool {
    /// Start every child and wait until they are ready; fails (and stops the ones that
    /// started) when one cannot start, so a bad `--exec` stops the worker at once.
    pub async fn start(cfg: PoolConfig) -> Result<Arc<Self>> {
        if cfg.command.trim().is_empty() {
            return Err(Error::Invalid("the process pool command is empty".into()));
        }
        let n = cfg.processes.max(1);
        let pool = Arc::new(ProcessPool {
            permits: Arc::new(Semaphore::new(n)),
            state: Mutex::new(State {
                idle: Vec::new(),
                live: 0,
            }),
            idle_ready: Notify::new(),
            closed: AtomicBool::new(false),
            spawned: AtomicU64::new(0),
            background: TaskTracker::new(),
            cfg: PoolConfig {
                processes: n,
                ..cfg
            },
        });
        let started = futures_util::future::join_all(
            (0..n).map(|_| Child::spawn(&pool.cfg, pool.spawned.fetch_add(1, Ordering::Relaxed))),
        )
        .await;
        let mut children = Vec::new();
        let mut first_err = None;
        for s in started {
            match s {
                Ok(c) => children.push(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            for c in children {
                c.stop(Duration::from_secs(2)).await;
            }
            return Err(Error::Invalid(format!("process pool: {e}")));
        }
        tracing::info!(
            processes = n,
            command = %pool.cfg.command,
            pids = ?children.iter().map(|c| c.pid).collect::<Vec<_>>(),
            "process pool started"
        );
        if let Ok(mut st) = pool.state.lock() {
            st.live = children.len();
            st.idle = children;
        }
        Ok(pool)
    }

    /// A handler running tasks in this pool with `policy` for lost children.
    pub fn executor(self: &Arc<Self>, policy: LostPolicy) -> ProcessExecutor {
        ProcessExecutor {
            pool: self.clone(),
            policy,
        }
    }

    /// Process ids of the children alive and idle right now (for tests and inspection).
    pub fn idle_pids(&self) -> Vec<u32> {
        self.state
            .lock()
            .map(|s| s.idle.iter().map(|c| c.pid).collect())
            .unwrap_or_default()
    }

    /// Stop every idle child (tasks still leased are killed when their lease drops). Called
    /// once the worker has stopped.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        let idle = self
            .state
            .lock()
            .map(|mut s| std::mem::take(&mut s.idle))
            .unwrap_or_default();
        let grace = self.cfg.stop_grace;
        futures_util::future::join_all(idle.into_iter().map(|c| c.stop(grace))).await;
        // Children being recycled or started as replacements: wait for them to be stopped.
        self.background.close();
        let within = self.cfg.startup_timeout + grace + Duration::from_secs(2);
        if tokio::time::timeout(within, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("process pool: background stops did not finish in time");
        }
        tracing::info!("process pool stopped");
    }

    /// Take an idle child for one task (waiting for a free one, or starting one).
    async fn checkout(self: &Arc<Self>) -> std::result::Result<Lease, String> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the process pool is shut down".to_string())?;
        loop {
            let spawn_here = {
                let mut st = self.state.lock().map_err(|_| "pool state poisoned")?;
                if let Some(child) = st.idle.pop() {
                    return Ok(Lease {
                        pool: self.clone(),
                        child: Some(child),
                        _permit: permit,
                    });
                }
                if st.live < self.cfg.processes {
                    st.live += 1;
                    true
                } else {
                    false
                }
            };
            if spawn_here {
                let n = self.spawned.fetch_add(1, Ordering::Relaxed);
                return match Child::spawn(&self.cfg, n).await {
                    Ok(child) => Ok(Lease {
                        pool: self.clone(),
                        child: Some(child),
                        _permit: permit,
                    }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            // Every child is leased or being started (a replacement): wait for one. The
            // timeout re-checks in case a replacement failed to start.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.idle_ready.notified()).await;
            if self.closed.load(Ordering::SeqCst) {
                return Err("the process pool is shut down".into());
            }
        }
    }

    /// A child is gone for good: count it out.
    fn forget_one(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.live = st.live.saturating_sub(1);
        }
        self.idle_ready.notify_one();
    }

    fn put_back(&self, child: Child) {
        if self.closed.load(Ordering::SeqCst) {
            let grace = self.cfg.stop_grace;
            self.forget_one();
            self.spawn_detached(child.stop(grace));
            return;
        }
        if let Ok(mut st) = self.state.lock() {
            st.idle.push(child);
        }
        self.idle_ready.notify_one();
    }

    /// Start a child in the background to replace one that died or was recycled (its slot in
    /// `live` is kept while starting). Retries with backoff when it cannot start.
    fn replace(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) {
            self.forget_one();
            return;
        }
        let pool = self.clone();
        let started = self.spawn_detached(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                if pool.closed.load(Ordering::SeqCst) {
                    pool.forget_one();
                    return;
                }
                let n = pool.spawned.fetch_add(1, Ordering::Relaxed);
                match Child::spawn(&pool.cfg, n).await {
                    Ok(child) => {
                        tracing::info!(child.pid = child.pid, "replacement child ready");
                        pool.put_back(child);
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_in = ?backoff, "could not start a replacement child");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        if !started {
            self.forget_one();
        }
    }
}

impl ProcessPool {
    /// Run `fut` in the background (tracked for shutdown); false when there is no runtime.
    fn spawn_detached<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                self.background.spawn_on(fut, &h);
                true
            }
            Err(_) => false,
        }
    }
}

/// A child checked out for one task. Dropped without [`Lease::release`] (the task's future was
/// aborted at its hard limit, or the child died): the child is killed and replaced.
struct Lease {
    pool: Arc<ProcessPool>,
    child: Option<Child>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn child(&mut self) -> &mut Child {
        // Only None after release/discard, which consume the lease.
        self.child
            .as_mut()
            .expect("lease holds a child until released")
    }

    /// The task finished normally: give the child back, or recycle it when it reached its
    /// task or memory budget.
    fn release(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        child.tasks_run += 1;
        let cfg = &self.pool.cfg;
        let why = if cfg
            .max_tasks_per_child
            .is_some_and(|m| child.tasks_run >= m)
        {
            Some(format!("ran {} tasks", child.tasks_run))
        } else if let Some(max) = cfg.max_memory_per_child_kib
            && let Some(rss) = child.rss_kib()
            && rss > max
        {
            Some(format!("uses {rss} KiB (limit {max} KiB)"))
        } else {
            None
        };
        match why {
            None => self.pool.put_back(child),
            Some(why) => {
                tracing::info!(child.pid = child.pid, "recycling child: {why}");
                let grace = cfg.stop_grace;
                self.pool.spawn_detached(child.stop(grace));
                self.pool.replace();
            }
        }
    }

    /// The child died or broke the protocol: kill what is left of it and replace it.
    fn discard(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
            self.pool.replace();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tracing::warn!(
                child.pid = child.pid,
                "task abandoned while its child was running it (time limit or abort): killing the child"
            );
            child.kill();
            self.pool.replace();
        }
    }
}

/// A [`Handler`] that runs tasks in the pool.
#[derive(Clone)]
pub struct ProcessExecutor {
    pool: Arc<ProcessPool>,
    policy: LostPolicy,
}

impl Handler for ProcessExecutor {
    fn call(&self, ctx: TaskContext) -> BoxFuture<HandlerResult> {
        Box::pin(run(self.pool.clone(), self.policy, ctx))
    }
}

async fn run(pool: Arc<ProcessPool>, policy: LostPolicy, ctx: TaskContext) -> HandlerResult {
    let mut lease = match pool.checkout().await {
        Ok(l) => l,
        // No child could be started: the task is not lost, it runs again later.
        Err(e) => {
            return Err(TaskError::retry_because(
                Some(5.0),
                ErrorInfo::new(
                    "WorkerLostError",
                    format!("no child process available: {e}"),
                ),
            ));
        }
    };
    let id = ctx.id.to_string();
    let msg = TaskMsg {
        kind: "task",
        id: id.clone(),
        task: &ctx.name,
        args: &ctx.args,
        kwargs: &ctx.kwargs,
        headers: &ctx.headers,
        retries: ctx.retries,
        attempt: ctx.attempt,
        queue: &ctx.queue,
        eta: eta_of(&ctx),
        created_at: ctx
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        periodic_task_name: periodic_task_name(&ctx),
        soft_time_limit: ctx.soft_time_limit,
        time_limit: ctx.time_limit,
        max_retries: ctx.retry_policy.max_retries,
    };
    let line =
        serde_json::to_vec(&msg).map_err(|e| TaskError::fail("EncodeError", e.to_string()))?;
    let pid = lease.child().pid;
    tracing::debug!(task.id = %ctx.id, task.name = %ctx.name, child.pid = pid, "task sent to child");
    let mut retry_on_lost = policy == LostPolicy::Retry;
    if let Err(e) = lease.child().send(&line).await {
        return Err(lost(
            lease,
            pid,
            format!("could not be sent the task ({e}) and"),
            retry_on_lost,
        )
        .await);
    }
    let mut signalled = false;
    loop {
        let next = tokio::select! {
            m = lease.child().recv() => Some(m),
            _ = ctx.cancelled(), if !signalled => None,
        };
        let Some(message) = next else {
            signalled = true;
            let sig = match ctx.cancel_reason() {
                Some(CancelReason::SoftTimeLimit) => Signal::SIGUSR1,
                _ => Signal::SIGUSR2,
            };
            tracing::info!(task.id = %ctx.id, child.pid = pid, signal = sig.as_str(), reason = ?ctx.cancel_reason(), "signalling child");
            child::signal_pid(pid, sig);
            continue;
        };
        match message {
            None => return Err(lost(lease, pid, String::new(), retry_on_lost).await),
            Some(FromChild::Result {
                id: rid,
                status,
                result,
                error,
                countdown,
                max_retries,
            }) if rid == id => {
                lease.release();
                return match status {
                    Status::Success => Ok(result),
                    Status::Failure => Err(TaskError::Failed(error.unwrap_or_else(|| {
                        ErrorInfo::new("TaskError", "the child reported a failure without an error")
                    }))),
                    Status::Retry => Err(TaskError::Retry {
                        countdown,
                        max_retries,
                        error,
                    }),
                };
            }
            Some(FromChild::Started {
                id: rid,
                retry_on_worker_lost,
            }) if rid == id => {
                retry_on_lost |= retry_on_worker_lost;
            }
            Some(FromChild::Progress {
                id: rid,
                state,
                meta,
            }) if rid == id => {
                if let Err(e) = ctx.update_state(&state, meta).await {
                    tracing::warn!(task.id = %ctx.id, error = ?e, "could not record progress");
                }
            }
            Some(FromChild::Log {
                level,
                logger,
                message,
                ..
            }) => log_line(&ctx, pid, &level, logger.as_deref().unwrap_or(""), &message),
            Some(other) => {
                tracing::debug!(task.id = %ctx.id, child.pid = pid, message = ?other, "unexpected message ignored")
            }
        }
    }
}

/// The child closed its protocol channel or could not be written to: it is dead (or dying).
async fn lost(mut lease: Lease, pid: u32, prefix: String, retry: bool) -> TaskError {
    let how = lease.child().exit_description(Duration::from_secs(2)).await;
    let stderr = lease.child().stderr_lines();
    lease.discard();
    let what = if prefix.is_empty() {
        how
    } else {
        format!("{prefix} {how}")
    };
    let mut info = ErrorInfo::new(
        "WorkerLostError",
        format!("the child process {pid} running the task {what}"),
    );
    if !stderr.is_empty() {
        info = info.with_traceback(stderr);
    }
    tracing::warn!(child.pid = pid, retry, "{}", info.message);
    if retry {
        TaskError::retry_because(None, info)
    } else {
        TaskError::Failed(info)
    }
}

fn log_line(ctx: &TaskContext, pid: u32, level: &str, logger: &str, message: &str) {
    let (id, name) = (&ctx.id, &ctx.name);
    match level {
        "debug" => {
            tracing::debug!(task.id = %id, task.name = %name, child.pid = pid, logger, "{message}")
        }
        "warning" | "warn" => {
            tracing::warn!(task.id = %id, task.name = %name, child.pid = pid, logger, "{message}")
        }
        "error" | "critical" => {
            tracing::error!(task.id = %id, task.name = %name, child.pid = pid, logger, "{message}")
        }
        _ => {
            tracing::info!(task.id = %id, task.name = %name, child.pid = pid, logger, "{message}")
        }
    }
}
