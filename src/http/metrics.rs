//! `/metrics` in Prometheus' text exposition format (version 0.0.4). Every number is read from
//! PostgreSQL at scrape time: queue gauges from the live tables, task counters and histograms
//! from the sums workers add on each heartbeat (`celeriac.task_metrics`), so any number of
//! servers report the same values and nothing is lost when a server restarts.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Read;
use super::error::ApiError;
use super::types::ErrorBody;
use crate::metrics::{BUCKET_BOUNDS, Histogram};

/// Prometheus metrics.
///
/// Per queue: depth, scheduled, running, oldest ready age, paused, consumers. Per task name:
/// started / succeeded / failed / retried / revoked counters, run-time and due→start latency
/// histograms. Live workers. Beat: lag of its sends, leader present, last tick, schedules
/// loaded, problem rows, beat processes. Scope: read (Prometheus: `authorization: {credentials: <token>}`).
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn metrics(_: Read, State(state): State<AppState>) -> Result<Response, ApiError> {
    let queues = state.client().queue_stats().await?;
    let workers = state.client().workers().await?;
    let tasks = state.store().task_metrics_list().await?;
    let beat = state.store().beat_status().await?;

    let mut out = Exposition::default();
    out.family("celeriac_queue_depth", "gauge", "Tasks ready to run now.");
    for q in &queues {
        out.sample(
            "celeriac_queue_depth",
            &[("queue", &q.queue)],
            q.ready as f64,
        );
    }
    out.family(
        "celeriac_queue_scheduled",
        "gauge",
        "Tasks waiting for a countdown, ETA or retry time.",
    );
    for q in &queues {
        out.sample(
            "celeriac_queue_scheduled",
            &[("queue", &q.queue)],
            q.scheduled as f64,
        );
    }
    out.family("celeriac_queue_running", "gauge", "Tasks running.");
    for q in &queues {
        out.sample(
            "celeriac_queue_running",
            &[("queue", &q.queue)],
            q.running as f64,
        );
    }
    out.family(
        "celeriac_queue_oldest_ready_age_seconds",
        "gauge",
        "Age of the oldest ready task (0 when none), database clock.",
    );
    for q in &queues {
        out.sample(
            "celeriac_queue_oldest_ready_age_seconds",
            &[("queue", &q.queue)],
            q.oldest_ready_age_s.unwrap_or(0.0).max(0.0),
        );
    }
    out.family(
        "celeriac_queue_paused",
        "gauge",
        "1 when the queue is paused.",
    );
    for q in &queues {
        out.sample(
            "celeriac_queue_paused",
            &[("queue", &q.queue)],
            if q.paused { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "celeriac_queue_workers",
        "gauge",
        "Live workers consuming the queue.",
    );
    for q in &queues {
        out.sample(
            "celeriac_queue_workers",
            &[("queue", &q.queue)],
            q.workers as f64,
        );
    }

    out.family(
        "celeriac_workers_alive",
        "gauge",
        "Worker processes whose lease is valid.",
    );
    let alive = workers.iter().filter(|w| w.alive).count();
    out.sample("celeriac_workers_alive", &[], alive as f64);
    out.family(
        "celeriac_worker_slots",
        "gauge",
        "Concurrency (task slots) of live workers.",
    );
    let slots: i64 = workers
        .iter()
        .filter(|w| w.alive)
        .map(|w| i64::from(w.concurrency))
        .sum();
    out.sample("celeriac_worker_slots", &[], slots as f64);
    beat_metrics(&mut out, &beat);

    for (metric, help, get) in COUNTERS {
        out.family(metric, "counter", help);
        for t in &tasks {
            out.sample(metric, &[("task", &t.name)], get(t) as f64);
        }
    }
    out.family(
        "celeriac_task_runtime_seconds",
        "histogram",
        "Handler run time of finished attempts.",
    );
    for t in &tasks {
        out.histogram("celeriac_task_runtime_seconds", &t.name, &t.runtime());
    }
    out.family(
        "celeriac_task_start_latency_seconds",
        "histogram",
        "From the moment an attempt was due (enqueue, countdown/ETA or retry time) to its start, database clock.",
    );
    for t in &tasks {
        out.histogram("celeriac_task_start_latency_seconds", &t.name, &t.latency());
    }

    let mut r = out.text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// Beat's gauges, from the view `celeriac.beat_status`. The lag gauges describe the sends of
/// the last 5 minutes (catch-ups after downtime excluded) and are absent when there were none;
/// a beat that stopped sending shows as `celeriac_beat_leader 0` or a growing
/// `celeriac_beat_tick_age_seconds`.
fn beat_metrics(out: &mut Exposition, b: &crate::store::BeatStatusRow) {
    out.family(
        "celeriac_beat_lag_seconds",
        "gauge",
        "How late beat sent periodic tasks after their slot: 99th percentile over the last 5 minutes (catch-ups after downtime excluded).",
    );
    if let Some(v) = b.lag_p99_s {
        out.sample("celeriac_beat_lag_seconds", &[], v.max(0.0));
    }
    out.family(
        "celeriac_beat_lag_max_seconds",
        "gauge",
        "Largest delay of a periodic task's send after its slot over the last 5 minutes.",
    );
    if let Some(v) = b.lag_max_s {
        out.sample("celeriac_beat_lag_max_seconds", &[], v.max(0.0));
    }
    out.family(
        "celeriac_beat_sent_5m",
        "gauge",
        "Periodic tasks sent by beat over the last 5 minutes (catch-ups excluded).",
    );
    out.sample("celeriac_beat_sent_5m", &[], b.fires_5m as f64);
    out.family(
        "celeriac_beat_leader",
        "gauge",
        "1 when a beat holds the leader lease (something sends periodic tasks), else 0.",
    );
    out.sample(
        "celeriac_beat_leader",
        &[],
        if b.leader_alive { 1.0 } else { 0.0 },
    );
    out.family(
        "celeriac_beat_tick_age_seconds",
        "gauge",
        "Seconds since the beat leader's last heartbeat with its schedule loaded (database clock).",
    );
    if let Some(v) = b.tick_age_s {
        out.sample("celeriac_beat_tick_age_seconds", &[], v.max(0.0));
    }
    out.family(
        "celeriac_beat_schedules",
        "gauge",
        "Enabled periodic tasks loaded by the beat leader.",
    );
    out.family(
        "celeriac_beat_bad_rows",
        "gauge",
        "Periodic tasks the beat leader cannot use or warns about (see `celeriac beat --check`).",
    );
    if b.leader_alive {
        out.sample(
            "celeriac_beat_schedules",
            &[],
            f64::from(b.schedules.unwrap_or(0)),
        );
        out.sample(
            "celeriac_beat_bad_rows",
            &[],
            f64::from(b.bad_rows.unwrap_or(0)),
        );
    }
    out.family(
        "celeriac_beat_instances",
        "gauge",
        "Beat processes alive (the leader and its stand-bys).",
    );
    out.sample("celeriac_beat_instances", &[], b.instances as f64);
}

type Counter = (
    &'static str,
    &'static str,
    fn(&crate::store::TaskMetricsRow) -> i64,
);

const COUNTERS: &[Counter] = &[
    (
        "celeriac_task_started_total",
        "Attempts started, per task name.",
        |t| t.started,
    ),
    (
        "celeriac_task_succeeded_total",
        "Attempts that ended SUCCESS.",
        |t| t.succeeded,
    ),
    (
        "celeriac_task_failed_total",
        "Attempts that ended FAILURE.",
        |t| t.failed,
    ),
    (
        "celeriac_task_retried_total",
        "Attempts that asked for a retry.",
        |t| t.retried,
    ),
    (
        "celeriac_task_revoked_total",
        "Attempts revoked while running (terminate).",
        |t| t.revoked,
    ),
];

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, task: &str, h: &Histogram) {
        let cumulative = h.cumulative();
        if cumulative.len() != BUCKET_BOUNDS.len() + 1 {
            // Stored with other bounds (an older version): skip rather than mislabel.
            return;
        }
        let bucket = format!("{name}_bucket");
        for (bound, count) in BUCKET_BOUNDS.iter().zip(&cumulative) {
            let le = number(*bound);
            self.sample(&bucket, &[("task", task), ("le", &le)], *count as f64);
        }
        let total = cumulative.last().copied().unwrap_or(0);
        self.sample(&bucket, &[("task", task), ("le", "+Inf")], total as f64);
        self.sample(&format!("{name}_sum"), &[("task", task)], h.sum);
        self.sample(&format!("{name}_count"), &[("task", task)], total as f64);
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_cumulative() {
        let mut e = Exposition::default();
        e.sample("m", &[("task", "a\"b\\c\nd")], 1.0);
        assert_eq!(e.text, "m{task=\"a\\\"b\\\\c\\nd\"} 1\n");
        let mut h = Histogram::default();
        h.observe(0.001);
        h.observe(2.0);
        let mut e = Exposition::default();
        e.histogram("h", "t", &h);
        assert!(e.text.contains("h_bucket{task=\"t\",le=\"0.005\"} 1\n"));
        assert!(e.text.contains("h_bucket{task=\"t\",le=\"2.5\"} 2\n"));
        assert!(e.text.contains("h_bucket{task=\"t\",le=\"+Inf\"} 2\n"));
        assert!(e.text.contains("h_count{task=\"t\"} 2\n"));
    }
}
