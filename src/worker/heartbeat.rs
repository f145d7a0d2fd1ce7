//! Keeps the worker's lease alive and reconciles running tasks with what the database says
//! this worker owns.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Shared, registration};
use crate::registry::CancelReason;
use crate::task::TaskId;

pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken, stopping: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        beat(&shared, stopping.load(Ordering::SeqCst)).await;
        shared.metrics.flush(&shared.store).await;
    }
}

async fn beat(shared: &Shared, stopping: bool) {
    let cfg = &shared.config;
    match shared
        .store
        .worker_heartbeat(shared.id, cfg.lease, stopping)
        .await
    {
        Ok(Some(false)) => {}
        Ok(Some(true)) => tracing::warn!(
            "this worker's lease had lapsed (no heartbeat for over {:?}); tasks rescued meanwhile are cancelled here",
            cfg.lease
        ),
        Ok(None) => {
            tracing::warn!("this worker's registration was gone; registering again");
            if let Err(e) = shared.store.worker_register(&registration(shared)).await {
                tracing::warn!(error = %e, "re-registration failed");
                return;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed");
            return;
        }
    }

    // What we run, taken before asking the database what we own: anything in this snapshot
    // was claimed (committed) before the query starts.
    let snapshot: Vec<(TaskId, i32)> = match shared.running.lock() {
        Ok(r) => r.iter().map(|(id, r)| (*id, r.attempt)).collect(),
        Err(_) => return,
    };
    if snapshot.is_empty() {
        return;
    }
    let owned = match shared.store.task_list_owned(shared.id).await {
        Ok(rows) => rows
            .into_iter()
            .map(|r| (TaskId(r.id), (r.attempt, r.terminate)))
            .collect::<HashMap<_, _>>(),
        Err(e) => {
            tracing::debug!(error = %e, "could not list owned tasks");
            return;
        }
    };
    for (id, attempt) in snapshot {
        match owned.get(&id) {
            Some((a, terminate)) if *a == attempt => {
                if *terminate {
                    shared.cancel(id, Some(attempt), CancelReason::Terminated);
                }
            }
            // Finished meanwhile (no longer in `running`: no-op) or taken from us.
            _ => {
                if shared.cancel(id, Some(attempt), CancelReason::LostOwnership) {
                    tracing::warn!(task.id = %id, attempt, "task was rescued from this worker; cancelling it here");
                }
            }
        }
    }
}
