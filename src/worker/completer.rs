//! Writes outcomes in batches: each write takes everything that queued up while the previous
//! one was in flight, so batches grow with load and a lone outcome is written at once.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Completion, Store};
use crate::task::{ErrorInfo, TaskState};

/// Largest batch written by one statement.
const MAX_BATCH: usize = 1000;
/// During shutdown, how long to keep retrying through a database outage before giving up
/// (the tasks then stay STARTED and are rescued when this worker's lease expires).
const FLUSH_PATIENCE: Duration = Duration::from_secs(15);

/// Write outcomes from `rx` until `flush` fires, then write what is queued and return.
pub(super) async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Completion>,
    flush: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                write(&store, &mut batch, None).await;
            }
            _ = flush.cancelled() => {
                while let Ok(c) = rx.try_recv() {
                    batch.push(c);
                }
                let deadline = Instant::now() + FLUSH_PATIENCE;
                for chunk in batch.chunks(MAX_BATCH) {
                    let mut chunk = chunk.to_vec();
                    write(&store, &mut chunk, Some(deadline)).await;
                }
                return;
            }
        }
    }
}

/// Write `batch` (and empty it). Transient errors are retried with backoff (until `deadline`,
/// if any); a batch the database refuses is split so one bad row cannot block the others, and
/// a refused row is recorded as FAILURE `ResultError` instead.
async fn write(store: &Store, batch: &mut Vec<Completion>, deadline: Option<Instant>) {
    let mut backoff = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let t0 = std::time::Instant::now();
        let result = store.task_complete_many(batch).await;
        tracing::trace!(
            n = batch.len(),
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            "completed"
        );
        match result {
            Ok(accepted) => {
                if accepted.len() < batch.len() {
                    let stale: Vec<String> = batch
                        .iter()
                        .filter(|c| !accepted.contains(&c.id))
                        .map(|c| format!("{}#{}", c.id, c.attempt))
                        .collect();
                    tracing::info!(
                        stale = ?stale,
                        "outcomes of attempts that are no longer current were ignored"
                    );
                }
                if warned {
                    tracing::info!("outcomes written again after database trouble");
                }
                batch.clear();
                return;
            }
            Err(e) if e.is_transient() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::error!(
                        error = %e, lost = batch.len(),
                        "giving up writing outcomes at shutdown; those tasks will be rescued and run again"
                    );
                    batch.clear();
                    return;
                }
                if !warned {
                    tracing::warn!(error = %e, pending = batch.len(), "cannot write outcomes; retrying");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                if batch.len() > 1 {
                    tracing::warn!(error = %e, "a batch of outcomes was refused; writing them one by one");
                    for one in std::mem::take(batch) {
                        let mut single = vec![one];
                        Box::pin(write(store, &mut single, deadline)).await;
                    }
                    return;
                }
                let Some(bad) = batch.pop() else { return };
                if bad.state == TaskState::Failure
                    && bad.result.is_none()
                    && bad.error.as_ref().is_some_and(|e| e.kind == "ResultError")
                {
                    tracing::error!(task.id = %bad.id, error = %e, "cannot record even the failure of this task");
                    return;
                }
                tracing::warn!(task.id = %bad.id, error = %e, "outcome refused by the database; recording FAILURE ResultError");
                let mut degraded = vec![Completion {
                    state: TaskState::Failure,
                    result: None,
                    error: Some(ErrorInfo::new(
                        "ResultError",
                        format!("the task's outcome could not be stored: {}", db_message(&e)),
                    )),
                    retry_in: None,
                    revoked_reason: None,
                    ..bad
                }];
                Box::pin(write(store, &mut degraded, deadline)).await;
                return;
            }
        }
    }
}

fn db_message(e: &crate::error::Error) -> String {
    match e {
        crate::error::Error::Database(sqlx::Error::Database(db)) => db.message().to_string(),
        other => other.to_string(),
    }
}
