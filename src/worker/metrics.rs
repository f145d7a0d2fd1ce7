//! What this worker counts (attempts started and how they ended, run time, due→start latency)
//! and adds to the database's cumulative metrics on every heartbeat; see `crate::metrics`.

use std::sync::Mutex;

use crate::metrics::MetricsDelta;
use crate::store::Store;
use crate::task::TaskState;

/// Counts since the last successful flush.
#[derive(Default)]
pub(crate) struct Recorder {
    delta: Mutex<MetricsDelta>,
}

impl Recorder {
    /// An attempt started `latency` seconds after it was due.
    pub(crate) fn started(&self, name: &str, latency: Option<f64>) {
        if let Ok(mut d) = self.delta.lock() {
            d.started(name, latency);
        }
    }

    /// An attempt ended with `state` after `runtime` seconds.
    pub(crate) fn finished(&self, name: &str, queue: &str, state: TaskState, runtime: f64) {
        if let Ok(mut d) = self.delta.lock() {
            d.finished(name, queue, state, runtime);
        }
    }

    /// Add what was counted to the database; on failure keep it for the next flush.
    pub(crate) async fn flush(&self, store: &Store) {
        let taken = match self.delta.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        if let Err(e) = store.task_metrics_add(&taken).await {
            tracing::debug!(error = %e, "could not write metrics; keeping them for the next heartbeat");
            if let Ok(mut d) = self.delta.lock() {
                d.merge(taken);
            }
        }
    }
}
