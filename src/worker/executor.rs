//! Runs one claimed task: resolves its handler, enforces the soft and hard time limits, catches
//! panics, honours cancellation, and turns the handler's answer into an outcome for the
//! completer.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::time::{Instant, sleep_until};

use super::{Running, Shared};
use crate::registry::{CancelReason, HandlerResult, TaskContext, TaskError, TaskMeta};
use crate::store::{ClaimedRow, Completion};
use crate::task::{ErrorInfo, TaskId, TaskState};

/// Start running `row` (claimed by this worker) in its own task.
pub(super) fn start(shared: &Arc<Shared>, row: ClaimedRow) {
    let id = TaskId(row.id);
    if row.state == TaskState::Revoked.as_str() {
        // Expired before it could start: the claim already recorded it; tell its waiters.
        tracing::info!(task.id = %id, task.name = %row.name, "task expired before it started");
        let store = shared.store.clone();
        tokio::spawn(async move {
            let _ = store
                .notify(&store.schema().done_channel(), &id.to_string())
                .await;
        });
        return;
    }
    let latency = row
        .started_at
        .map(|s| (s - row.run_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
    shared.metrics.started(&row.name, latency);
    let registered = shared.registry.resolve(&row.name).cloned();
    let cfg = &shared.config;
    let defaults = registered
        .as_ref()
        .map(|r| r.options.clone())
        .unwrap_or_default();
    let policy = defaults.retry.unwrap_or(cfg.default_retry).with_overrides(
        row.max_retries,
        row.retry_delay,
        row.retry_backoff,
        row.retry_backoff_max,
        row.retry_jitter,
    );
    let meta = TaskMeta {
        id,
        name: row.name,
        queue: row.queue,
        args: row.args,
        kwargs: row.kwargs,
        headers: row.headers,
        retries: row.retries.max(0) as u32,
        attempt: row.attempt,
        created_at: row.created_at,
        run_at: row.run_at,
        soft_time_limit: row
            .soft_time_limit
            .or(defaults.soft_time_limit)
            .or(cfg.default_soft_time_limit),
        time_limit: row
            .time_limit
            .or(defaults.time_limit)
            .or(cfg.default_time_limit),
        retry_policy: policy,
        retry_on_time_limit: defaults.retry_on_time_limit,
    };
    let ctx = TaskContext::for_worker(meta, shared.store.clone());
    let ignore_result = row.ignore_result;
    if let Ok(mut running) = shared.running.lock() {
        running.insert(
            id,
            Running {
                attempt: row.attempt,
                ctx: ctx.clone(),
            },
        );
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let name = ctx.name.clone();
        let attempt = ctx.attempt;
        let began = std::time::Instant::now();
        let answer = match registered {
            Some(reg) => Some(
                run_with_limits(
                    &ctx,
                    reg.handler.call(ctx.clone()),
                    shared.config.cancel_grace,
                )
                .await,
            ),
            None => None,
        };
        let outcome = match answer {
            None => Some(Completion {
                id,
                attempt,
                state: TaskState::Failure,
                result: None,
                error: Some(ErrorInfo::new(
                    "NotRegistered",
                    format!(
                        "task {name:?} is not registered on this worker (it knows: {})",
                        shared.registry.names().join(", ")
                    ),
                )),
                retry_in: None,
                revoked_reason: None,
            }),
            Some(answer) => outcome_for(&ctx, answer, ignore_result, rand::rng().random()),
        };
        if let Ok(mut running) = shared.running.lock() {
            running.remove(&id);
        }
        if let Some(outcome) = outcome {
            log_outcome(&name, &outcome);
            let runtime = began.elapsed().as_secs_f64();
            shared
                .metrics
                .finished(&name, &ctx.queue, outcome.state, runtime);
            // Waits when the completer is backed up (database away): the slot stays taken,
            // so nothing new is claimed meanwhile.
            if shared.outcomes.send(outcome).await.is_err() {
                tracing::error!(task.id = %id, "completer gone; the outcome is lost and the task will be rescued");
            }
        }
        shared.slot_freed.notify_one();
    });
}

/// How a run ended, before retry policy is applied.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The handler returned.
    Returned(HandlerResult),
    /// The handler panicked.
    Panicked(String),
    /// The hard time limit passed and the handler was aborted.
    HardTimeLimit(f64),
    /// The handler was aborted after being cancelled for this reason and not stopping.
    Aborted(CancelReason),
}

/// Run `fut` (the handler) under `ctx`'s time limits and cancellation.
pub(crate) async fn run_with_limits(
    ctx: &TaskContext,
    fut: crate::registry::BoxFuture<HandlerResult>,
    cancel_grace: Duration,
) -> Answer {
    let started = Instant::now();
    // The handler runs as its own task so a panic is caught and it can be aborted.
    let mut handle = tokio::spawn(fut);
    let soft_at = ctx
        .soft_time_limit
        .map(|s| started + Duration::from_secs_f64(s.min(1e9)));
    let hard_at = ctx
        .time_limit
        .map(|s| started + Duration::from_secs_f64(s.min(1e9)));
    let mut soft_fired = false;
    let mut abort_at: Option<Instant> = None;
    loop {
        tokio::select! {
            joined = &mut handle => {
                return match joined {
                    Ok(result) => Answer::Returned(result),
                    Err(e) if e.is_panic() => Answer::Panicked(panic_message(e.into_panic())),
                    Err(_) => Answer::Aborted(ctx.cancel_reason().unwrap_or(CancelReason::Shutdown)),
                };
            }
            _ = sleep_until(soft_at.unwrap_or(started)), if soft_at.is_some() && !soft_fired => {
                soft_fired = true;
                ctx.cancel(CancelReason::SoftTimeLimit);
            }
            _ = sleep_until(hard_at.unwrap_or(started)), if hard_at.is_some() => {
                handle.abort();
                return Answer::HardTimeLimit(ctx.time_limit.unwrap_or_default());
            }
            _ = ctx.cancelled(), if abort_at.is_none() && ctx.cancel_reason() != Some(CancelReason::SoftTimeLimit) => {
                // Terminate, shutdown or lost lease: the handler gets cancel_grace to wind down.
                abort_at = Some(Instant::now() + cancel_grace);
            }
            _ = sleep_until(abort_at.unwrap_or(started)), if abort_at.is_some() => {
                handle.abort();
                return Answer::Aborted(ctx.cancel_reason().unwrap_or(CancelReason::Shutdown));
            }
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

/// Turn how a run ended into the outcome to record, applying the retry policy. `None`: record
/// nothing (the task is handed back at shutdown, or was taken from this worker). `rand01` is a
/// uniform sample in [0, 1) for retry jitter.
pub(crate) fn outcome_for(
    ctx: &TaskContext,
    answer: Answer,
    ignore_result: bool,
    rand01: f64,
) -> Option<Completion> {
    let base = |state: TaskState| Completion {
        id: ctx.id,
        attempt: ctx.attempt,
        state,
        result: None,
        error: None,
        retry_in: None,
        revoked_reason: None,
    };
    // Run again in `delay` seconds (RETRY), or right away (PENDING), with `error` as the cause.
    let retry = |delay: f64, error: Option<ErrorInfo>| Completion {
        error,
        retry_in: Some(delay),
        ..base(if delay > 0.0 {
            TaskState::Retry
        } else {
            TaskState::Pending
        })
    };
    let reason = ctx.cancel_reason();
    match (reason, &answer) {
        // Revoked with terminate: whatever the handler did, the task ends REVOKED.
        (Some(CancelReason::Terminated), _) => {
            return Some(Completion {
                error: Some(ErrorInfo::new(
                    "TaskRevokedError",
                    "revoked with terminate=true while running",
                )),
                revoked_reason: Some("terminated".into()),
                ..base(TaskState::Revoked)
            });
        }
        // Taken from us: the new owner records the outcome (ours would be fenced anyway).
        (Some(CancelReason::LostOwnership), _) => return None,
        // Shutdown: a finished result is kept, an interrupted run is handed back.
        (Some(CancelReason::Shutdown), Answer::Returned(Ok(_))) => {}
        (Some(CancelReason::Shutdown), _) => return None,
        _ => {}
    }
    let error = match answer {
        Answer::Returned(Ok(value)) => {
            return Some(Completion {
                result: if ignore_result { None } else { Some(value) },
                ..base(TaskState::Success)
            });
        }
        Answer::Returned(Err(TaskError::Failed(info))) => {
            return Some(Completion {
                error: Some(info),
                ..base(TaskState::Failure)
            });
        }
        Answer::Returned(Err(TaskError::Retry {
            countdown,
            max_retries,
            error,
        })) => {
            let policy = ctx.retry_policy;
            let budget = max_retries.unwrap_or(policy.max_retries);
            if ctx.retries < budget {
                let delay = countdown
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .unwrap_or_else(|| policy.delay_for(ctx.retries, rand01));
                return Some(retry(delay, error));
            }
            error.unwrap_or_else(|| {
                ErrorInfo::new(
                    "MaxRetriesExceededError",
                    format!(
                        "can't retry {}[{}]: {} retries used (args: {}, kwargs: {})",
                        ctx.name, ctx.id, ctx.retries, ctx.args, ctx.kwargs
                    ),
                )
            })
        }
        Answer::Panicked(msg) => ErrorInfo::new("Panic", format!("handler panicked: {msg}")),
        Answer::HardTimeLimit(limit) => {
            let error = ErrorInfo::new(
                "TimeLimitExceeded",
                format!("hard time limit ({limit}s) exceeded"),
            );
            let policy = ctx.retry_policy;
            if ctx.retry_on_time_limit && ctx.retries < policy.max_retries {
                return Some(retry(policy.delay_for(ctx.retries, rand01), Some(error)));
            }
            error
        }
        Answer::Aborted(reason) => ErrorInfo::new(
            reason.error_type(),
            format!("aborted after not stopping within the grace period ({reason:?})"),
        ),
    };
    Some(Completion {
        error: Some(error),
        ..base(TaskState::Failure)
    })
}

fn log_outcome(name: &str, c: &Completion) {
    match c.state {
        TaskState::Success => {
            tracing::debug!(task.id = %c.id, task.name = name, attempt = c.attempt, "task succeeded")
        }
        TaskState::Retry | TaskState::Pending => tracing::info!(
            task.id = %c.id, task.name = name, attempt = c.attempt,
            retry_in = c.retry_in.unwrap_or_default(),
            error = %c.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            "task will be retried"
        ),
        _ => tracing::info!(
            task.id = %c.id, task.name = name, attempt = c.attempt, state = %c.state,
            error = %c.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            "task failed"
        ),
    }
}
