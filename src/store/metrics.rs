//! Task counters and histograms: workers add their deltas, the HTTP server reads the sums.

use std::time::Duration;

use serde_json::{Value, json};

use super::Store;
use crate::error::Result;
use crate::metrics::{Histogram, MetricsDelta, THROUGHPUT_BUCKET_SECONDS};

/// `task_metrics_list`: one task name's cumulative counts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskMetricsRow {
    /// Task name.
    pub name: String,
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
    /// Per-bucket run-time counts.
    pub runtime_buckets: Vec<i64>,
    /// Sum of run times, seconds.
    pub runtime_sum: f64,
    /// Run times counted.
    pub runtime_count: i64,
    /// Per-bucket due→start latency counts.
    pub latency_buckets: Vec<i64>,
    /// Sum of latencies, seconds.
    pub latency_sum: f64,
    /// Latencies counted.
    pub latency_count: i64,
}

impl TaskMetricsRow {
    /// The run-time histogram.
    pub fn runtime(&self) -> Histogram {
        Histogram {
            buckets: self.runtime_buckets.clone(),
            sum: self.runtime_sum,
            count: self.runtime_count,
        }
    }

    /// The due→start latency histogram.
    pub fn latency(&self) -> Histogram {
        Histogram {
            buckets: self.latency_buckets.clone(),
            sum: self.latency_sum,
            count: self.latency_count,
        }
    }
}

fn delta_json(delta: &MetricsDelta) -> (Value, Value) {
    let tasks: Vec<Value> = delta
        .tasks
        .iter()
        .map(|(name, t)| {
            json!({
                "name": name,
                "started": t.started,
                "succeeded": t.succeeded,
                "failed": t.failed,
                "retried": t.retried,
                "revoked": t.revoked,
                "runtime_buckets": t.runtime.buckets,
                "runtime_sum": t.runtime.sum,
                "runtime_count": t.runtime.count,
                "latency_buckets": t.latency.buckets,
                "latency_sum": t.latency.sum,
                "latency_count": t.latency.count,
            })
        })
        .collect();
    let queues: Vec<Value> = delta
        .queues
        .iter()
        .map(|(queue, q)| {
            json!({
                "queue": queue,
                "succeeded": q.succeeded,
                "failed": q.failed,
                "retried": q.retried,
                "revoked": q.revoked,
            })
        })
        .collect();
    (Value::Array(tasks), Value::Array(queues))
}

impl Store {
    /// Add a worker's counts since its last flush to the cumulative metrics.
    pub async fn task_metrics_add(&self, delta: &MetricsDelta) -> Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let (tasks, queues) = delta_json(delta);
        let _: (i64, i64) = sqlx::query_as(&self.statements().task_metrics_add)
            .bind(tasks)
            .bind(queues)
            .bind(THROUGHPUT_BUCKET_SECONDS)
            .fetch_one(self.pool())
            .await?;
        Ok(())
    }

    /// Every task name's cumulative counts.
    pub async fn task_metrics_list(&self) -> Result<Vec<TaskMetricsRow>> {
        Ok(sqlx::query_as(&self.statements().task_metrics_list)
            .fetch_all(self.pool())
            .await?)
    }

    /// Forget throughput windows older than `keep`; returns how many.
    pub async fn queue_throughput_prune(&self, keep: Duration) -> Result<u64> {
        Ok(sqlx::query(&self.statements().queue_throughput_prune)
            .bind(keep.as_secs_f64())
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
