//! `celeriac bench`: throughput and latency on the given database, in a scratch schema that is
//! dropped afterwards. One JSON line per measure on stdout.
//!
//! Measures, in order: bare INSERT commits (reference), single enqueues (separate
//! transactions), bulk enqueue, raw claim-and-delete of 100 rows (reference, same as
//! `shared/bench/pglimit.sh`), drain of pre-enqueued no-op tasks by one worker *process*
//! (`celeriac worker`, spawned), its memory, and enqueue-commit → handler-start latency on an
//! idle worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Timelike;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::Global;
use crate::client::Client;
use crate::config::{Config, WorkerConfig};
use crate::registry::{Registry, TaskContext};
use crate::store::Store;
use crate::task::{NewTask, TaskId};
use crate::worker::{Shutdown, Worker};

/// `celeriac bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scratch schema (created, and dropped at the end).
    #[arg(long, default_value = "celeriac_bench")]
    pub bench_schema: String,
    /// Tasks in the bulk enqueue and in the drain.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Separate-transaction enqueues (and bare INSERTs).
    #[arg(long, default_value_t = 2_000)]
    pub singles: usize,
    /// Concurrency of the draining worker process.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Tasks in the latency measure.
    #[arg(long, default_value_t = 200)]
    pub latency_tasks: usize,
    /// Gap between latency tasks.
    #[arg(long, value_parser = super::parse_duration, default_value = "20ms")]
    pub latency_gap: Duration,
    /// Seconds of raw claim-and-delete.
    #[arg(long, value_parser = super::parse_duration, default_value = "5s")]
    pub raw_duration: Duration,
    /// Only these measures (comma-separated names); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Periodic tasks in the beat measure (`--only beat`).
    #[arg(long, default_value_t = 10_000)]
    pub beat_schedules: i32,
    /// How long the idle beat's CPU is measured.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub beat_idle: Duration,
    /// Keep the scratch schema afterwards.
    #[arg(long)]
    pub keep: bool,
}

fn emit(measure: &str, fields: Value) {
    let mut obj = serde_json::Map::new();
    obj.insert("measure".into(), json!(measure));
    if let Value::Object(f) = fields {
        obj.extend(f);
    }
    println!("{}", Value::Object(obj));
}

pub(super) async fn run(g: &Global, a: BenchArgs) -> anyhow::Result<i32> {
    let base = g.config()?;
    let config = Config::new(base.database_url.clone()).with_schema(a.bench_schema.clone());
    let store = Store::connect(&config)?;
    store
        .bench_teardown()
        .await
        .context("dropping an old bench schema")?;
    store.migrate().await.context("creating the bench schema")?;
    store.bench_setup().await?;
    let client = Client::from_store(store.clone(), &config);
    let want = |m: &str| a.only.is_empty() || a.only.iter().any(|o| o == m);
    let outcome = async {
        if want("insert_commit") || want("single_enqueue") {
            single(&store, &client, &a).await?;
        }
        if want("bulk_enqueue") || want("drain") {
            bulk_and_drain(&store, &client, &config, &a, want("drain")).await?;
        }
        if want("raw_claim_delete") {
            raw_claim_delete(&store, &a).await?;
        }
        if want("latency") {
            latency(&client, &config, &a).await?;
        }
        // Minutes long: only when asked for (`--only beat`).
        if a.only.iter().any(|o| o == "beat") {
            beat(&store, &config, &a).await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if !a.keep {
        store.bench_teardown().await?;
    }
    outcome.map(|_| 0)
}

async fn single(store: &Store, client: &Client, a: &BenchArgs) -> anyhow::Result<()> {
    // Interleaved, one of each in turn, so both see the same disk: a commit's WAL flush time
    // drifts a lot on shared machines.
    let (mut bare, mut ours) = (Duration::ZERO, Duration::ZERO);
    for i in 0..a.singles {
        let t = Instant::now();
        store.bench_raw_insert().await?;
        bare += t.elapsed();
        let t = Instant::now();
        client
            .enqueue(
                NewTask::new("celeriac.noop")
                    .queue("bench_single")
                    .args(json!([i])),
            )
            .await?;
        ours += t.elapsed();
    }
    let bare = a.singles as f64 / bare.as_secs_f64();
    let ours = a.singles as f64 / ours.as_secs_f64();
    emit(
        "insert_commit",
        json!({"clients": 1, "count": a.singles, "per_s": bare.round(), "note": "bare single-row INSERT, one transaction each (reference, interleaved with single_enqueue)"}),
    );
    emit(
        "single_enqueue",
        json!({"clients": 1, "count": a.singles, "per_s": ours.round(), "vs_insert_commit": (ours / bare * 100.0).round() / 100.0}),
    );
    Ok(())
}

async fn bulk_and_drain(
    store: &Store,
    client: &Client,
    config: &Config,
    a: &BenchArgs,
    drain: bool,
) -> anyhow::Result<()> {
    let tasks: Vec<NewTask> = (0..a.tasks)
        .map(|i| {
            NewTask::new("celeriac.noop")
                .queue("bench")
                .args(json!([i]))
        })
        .collect();
    let t = Instant::now();
    client.enqueue_many(tasks).await?;
    let rate = a.tasks as f64 / t.elapsed().as_secs_f64();
    emit(
        "bulk_enqueue",
        json!({"count": a.tasks, "per_s": rate.round(), "statements": 1}),
    );
    if !drain {
        return Ok(());
    }
    store.bench_analyze().await?;

    // One worker process, as a user would run it.
    let exe = std::env::current_exe().context("locating the celeriac binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "worker",
            "-Q",
            "bench",
            "-c",
            &a.concurrency.to_string(),
            "--no-maintenance",
            "--schema",
            &config.schema,
        ])
        .env("DATABASE_URL", &config.database_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the worker process")?;
    let pid = child.id().unwrap_or(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut peak_rss_kb = 0u64;
    loop {
        let busy = store.bench_progress("bench").await?;
        peak_rss_kb = peak_rss_kb.max(rss_kb(pid, "VmHWM").unwrap_or(0));
        if !busy {
            let (finished, first, last) = store.bench_window("bench").await?;
            if (finished as usize) < a.tasks {
                bail!("only {finished} of {} tasks finished", a.tasks);
            }
            let window = match (first, last) {
                (Some(f), Some(l)) => (l - f).num_microseconds().unwrap_or(0) as f64 / 1e6,
                _ => 0.0,
            };
            let wall = started.elapsed().as_secs_f64();
            emit(
                "drain",
                json!({
                    "count": a.tasks, "concurrency": a.concurrency, "processes": 1,
                    "per_s": (a.tasks as f64 / window.max(1e-6)).round(),
                    "window_s": (window * 1000.0).round() / 1000.0,
                    "per_s_incl_startup": (a.tasks as f64 / wall).round(),
                }),
            );
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "drain of {} tasks did not finish within 10 minutes",
                a.tasks
            );
        }
        if let Some(status) = child.try_wait()? {
            bail!("the worker process exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_now = rss_kb(pid, "VmRSS").unwrap_or(0);
    emit(
        "worker_rss",
        json!({"concurrency": a.concurrency, "rss_mb": (rss_now as f64 / 1024.0 * 10.0).round() / 10.0,
               "peak_rss_mb": (peak_rss_kb.max(rss_now) as f64 / 1024.0 * 10.0).round() / 10.0}),
    );
    if pid != 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    Ok(())
}

fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn raw_claim_delete(store: &Store, a: &BenchArgs) -> anyhow::Result<()> {
    store.bench_raw_fill(1_000_000).await?;
    store.bench_analyze().await?;
    let t = Instant::now();
    let mut rows = 0u64;
    while t.elapsed() < a.raw_duration {
        let n = store.bench_raw_claim_delete().await?;
        if n == 0 {
            break;
        }
        rows += n;
    }
    let rate = rows as f64 / t.elapsed().as_secs_f64();
    emit(
        "raw_claim_delete_100",
        json!({"clients": 1, "rows": rows, "rows_per_s": rate.round(), "note": "DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 100): pglimit.sh's ceiling, same run"}),
    );
    Ok(())
}

async fn latency(client: &Client, config: &Config, a: &BenchArgs) -> anyhow::Result<()> {
    let started: Arc<Mutex<HashMap<TaskId, Instant>>> = Arc::default();
    let mut registry = Registry::new();
    {
        let started = started.clone();
        registry.register("bench.mark", move |ctx: TaskContext| {
            let now = Instant::now();
            if let Ok(mut s) = started.lock() {
                s.insert(ctx.id, now);
            }
            async { Ok(Value::Null) }
        });
    }
    let wcfg = WorkerConfig {
        queues: vec!["bench_latency".into()],
        concurrency: 10,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(config, registry, wcfg, None)?;
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    // Let the worker register and start listening before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::with_capacity(a.latency_tasks);
    for _ in 0..a.latency_tasks {
        let r = client
            .enqueue(NewTask::new("bench.mark").queue("bench_latency"))
            .await?;
        sent.push((r.id(), Instant::now()));
        tokio::time::sleep(a.latency_gap).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.lock().map(|s| s.len()).unwrap_or(0) < sent.len() {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.begin();
    let _ = handle.await;
    let starts = started.lock().map(|s| s.clone()).unwrap_or_default();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, committed)| {
            starts
                .get(id)
                .map(|s| s.saturating_duration_since(*committed).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    emit(
        "latency",
        json!({
            "count": lat.len(), "sent": sent.len(), "gap_ms": a.latency_gap.as_millis() as u64,
            "p50_ms": (pct(0.5) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "max_ms": (pct(1.0) * 100.0).round() / 100.0,
            "from": "enqueue commit returned", "to": "handler started",
        }),
    );
    Ok(())
}

/// CPU seconds (user + system) a process has used so far (/proc; USER_HZ is 100 on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// `--only beat`: one `celeriac beat` process with `--beat-schedules` enabled crontab tasks
/// (django tables in the bench schema). (1) All of them due at the same minute: lag of each
/// send after its slot (p50/p99/max) and when the last task was visible. (2) The same
/// schedules moved to 03:00 (nothing due): the idle beat's CPU over `--beat-idle`, which
/// includes its periodic full reloads.
async fn beat(store: &Store, config: &Config, a: &BenchArgs) -> anyhow::Result<()> {
    let tables = store.beat_tables(&config.schema)?;
    tables.install().await?;
    let n = a.beat_schedules;
    let cron = tables.bench_fill(n, "*", "*").await?;
    store.bench_analyze().await?;
    let exe = std::env::current_exe().context("locating the celeriac binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "beat",
            "--schema",
            &config.schema,
            "--django-schema",
            &config.schema,
        ])
        .env("DATABASE_URL", &config.database_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the beat process")?;
    let pid = child.id().unwrap_or(0);
    let outcome = async {
        // Loaded and leading.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = store.beat_status().await?;
            if st.leader_alive && st.schedules == Some(n) {
                break;
            }
            if Instant::now() > deadline {
                bail!("beat did not load {n} schedules within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The next minute boundary (+ a second if it is too close to tell apart).
        let now = chrono::Utc::now();
        let mut slot = now
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .context("time")?
            + chrono::Duration::minutes(1);
        if (slot - now).num_milliseconds() < 2000 {
            slot += chrono::Duration::minutes(1);
        }
        let already = store.beat_bench_visible().await?;
        let wait_until = Instant::now() + (slot - now).to_std().unwrap_or_default();
        tokio::time::sleep_until(wait_until.into()).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut all_visible_s = f64::NAN;
        loop {
            let visible = store.beat_bench_visible().await? - already;
            if visible >= i64::from(n) {
                all_visible_s = (chrono::Utc::now() - slot).num_milliseconds() as f64 / 1000.0;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (count, p50, p99, max) = store.beat_bench_lag(slot).await?;
        emit(
            "beat_fire_lag",
            json!({
                "schedules": n, "due_at_once": n, "sent": count,
                "lag_p50_s": (p50 * 1000.0).round() / 1000.0,
                "lag_p99_s": (p99 * 1000.0).round() / 1000.0,
                "lag_max_s": (max * 1000.0).round() / 1000.0,
                "all_visible_after_s": (all_visible_s * 1000.0).round() / 1000.0,
                "note": "every schedule is `* * * * *`: all due at the same minute (worst case); lag = send transaction time - slot",
            }),
        );
        // Idle: nothing due for hours.
        tables.bench_cron_set(cron, "0", "3").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let c0 = cpu_seconds(pid).context("reading the beat's CPU time")?;
        let t0 = Instant::now();
        tokio::time::sleep(a.beat_idle).await;
        let c1 = cpu_seconds(pid).context("reading the beat's CPU time")?;
        let wall = t0.elapsed().as_secs_f64();
        let st = store.beat_status().await?;
        emit(
            "beat_idle_cpu",
            json!({
                "schedules": st.schedules, "seconds": (wall * 10.0).round() / 10.0,
                "cpu_s": (c1 - c0) * 1000.0 / 1000.0,
                "cpu_pct_of_core": (((c1 - c0) / wall) * 100.0 * 100.0).round() / 100.0,
                "rss_mb": (rss_kb(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0 * 10.0).round() / 10.0,
                "note": "beat process only (user+system), including its full reload every 30 s",
            }),
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if pid != 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    outcome
}
