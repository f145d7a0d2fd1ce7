//! Task counters and histograms as plain data, shared by the worker (which counts what it runs
//! and adds its deltas to `celeriac.task_metrics` / `celeriac.queue_throughput` on every
//! heartbeat) and the HTTP server (which renders the sums). No I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::task::TaskState;

/// Upper bounds (seconds) of the histogram buckets for run time and enqueue→start latency; a
/// last bucket counts everything above. Changing them resets the stored histograms (the row's
/// arrays no longer match and are replaced), which Prometheus treats as a counter reset.
pub const BUCKET_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Width of a `queue_throughput` window, seconds.
pub const THROUGHPUT_BUCKET_SECONDS: f64 = 10.0;

/// A histogram with [`BUCKET_BOUNDS`]: per-bucket counts (not cumulative), their sum and count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// One count per bound, plus one for +Inf.
    pub buckets: Vec<i64>,
    /// Sum of the observed values, seconds.
    pub sum: f64,
    /// Observations.
    pub count: i64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKET_BOUNDS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    /// Count one value (negative and non-finite values count as 0).
    pub fn observe(&mut self, seconds: f64) {
        let v = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let i = BUCKET_BOUNDS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKET_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Cumulative counts per bound (Prometheus' `le` buckets), the last one being +Inf.
    pub fn cumulative(&self) -> Vec<i64> {
        let mut acc = 0;
        self.buckets
            .iter()
            .map(|b| {
                acc += b;
                acc
            })
            .collect()
    }
}

/// What a worker counted for one task name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskCounts {
    /// Attempts started.
    pub started: i64,
    /// Attempts that ended SUCCESS.
    pub succeeded: i64,
    /// Attempts that ended FAILURE.
    pub failed: i64,
    /// Attempts that asked for a retry.
    pub retried: i64,
    /// Attempts revoked while running.
    pub revoked: i64,
    /// Handler run time.
    pub runtime: Histogram,
    /// Due → start latency.
    pub latency: Histogram,
}

impl TaskCounts {
    fn merge(&mut self, o: &TaskCounts) {
        self.started += o.started;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.retried += o.retried;
        self.revoked += o.revoked;
        self.runtime.merge(&o.runtime);
        self.latency.merge(&o.latency);
    }
}

/// Finished attempts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    /// Ended SUCCESS.
    pub succeeded: i64,
    /// Ended FAILURE.
    pub failed: i64,
    /// Asked for a retry.
    pub retried: i64,
    /// Revoked while running.
    pub revoked: i64,
}

impl QueueCounts {
    fn merge(&mut self, o: &QueueCounts) {
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.retried += o.retried;
        self.revoked += o.revoked;
    }
}

/// Counts accumulated since the last successful flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsDelta {
    /// By task name (sorted, so every flush locks rows in the same order).
    pub tasks: BTreeMap<String, TaskCounts>,
    /// By queue.
    pub queues: BTreeMap<String, QueueCounts>,
}

impl MetricsDelta {
    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.queues.is_empty()
    }

    /// An attempt of `name` started `latency` seconds after it was due.
    pub fn started(&mut self, name: &str, latency: Option<f64>) {
        let t = self.tasks.entry(name.to_string()).or_default();
        t.started += 1;
        if let Some(l) = latency {
            t.latency.observe(l);
        }
    }

    /// An attempt of `name` from `queue` ended in `state` after `runtime` seconds. States other
    /// than SUCCESS, FAILURE, REVOKED, RETRY and PENDING (a retry due now) are not counted.
    pub fn finished(&mut self, name: &str, queue: &str, state: TaskState, runtime: f64) {
        let t = self.tasks.entry(name.to_string()).or_default();
        let q = self.queues.entry(queue.to_string()).or_default();
        match state {
            TaskState::Success => {
                t.succeeded += 1;
                q.succeeded += 1;
            }
            TaskState::Failure => {
                t.failed += 1;
                q.failed += 1;
            }
            TaskState::Revoked => {
                t.revoked += 1;
                q.revoked += 1;
            }
            TaskState::Retry | TaskState::Pending => {
                t.retried += 1;
                q.retried += 1;
            }
            TaskState::Scheduled | TaskState::Throttled | TaskState::Started => return,
        }
        t.runtime.observe(runtime);
    }

    /// Add another delta (a flush that failed goes back into the accumulator).
    pub fn merge(&mut self, other: MetricsDelta) {
        for (k, v) in other.tasks {
            self.tasks.entry(k).or_default().merge(&v);
        }
        for (k, v) in other.queues {
            self.queues.entry(k).or_default().merge(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_cumulative_counts() {
        let mut h = Histogram::default();
        for v in [0.001, 0.005, 0.2, 7.0, 1e6, f64::NAN, -1.0] {
            h.observe(v);
        }
        assert_eq!(h.count, 7);
        // 0.001, 0.005, NaN→0, -1→0 in the first bucket; 0.2 ≤ 0.25; 7 ≤ 10; 1e6 in +Inf.
        assert_eq!(h.buckets[0], 4);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[10], 1);
        assert_eq!(*h.buckets.last().unwrap(), 1);
        let c = h.cumulative();
        assert_eq!(*c.last().unwrap(), 7);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn deltas_merge() {
        let mut a = MetricsDelta::default();
        a.started("t", Some(0.01));
        a.finished("t", "q", TaskState::Success, 0.5);
        let mut b = MetricsDelta::default();
        b.started("t", None);
        b.finished("t", "q", TaskState::Retry, 0.1);
        b.finished("u", "q", TaskState::Failure, 2.0);
        a.merge(b);
        let t = &a.tasks["t"];
        assert_eq!((t.started, t.succeeded, t.retried), (2, 1, 1));
        assert_eq!(t.latency.count, 1);
        assert_eq!(t.runtime.count, 2);
        assert_eq!(a.queues["q"].failed, 1);
        assert_eq!(a.tasks["u"].failed, 1);
    }
}
