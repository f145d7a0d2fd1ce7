//! Issue 6: rate limits and concurrency caps across workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use celeriac::limits::{LimitKind, LimitSpec};
use celeriac::task::NewTask;
use celeriac::{Registry, TaskContext};
use serde_json::{Value, json};

use crate::common::*;

fn spec(kind: LimitKind, target: &str, rate: Option<&str>, concurrency: Option<u32>) -> LimitSpec {
    LimitSpec {
        kind,
        target: target.into(),
        rate: rate.map(str::to_string),
        concurrency,
        partition_by: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_across_three_workers() {
    let db = TestDb::new().await;
    db.client
        .set_limit(&spec(LimitKind::Task, "r.tick", Some("10/s"), None))
        .await
        .unwrap();
    db.client
        .enqueue_many(
            (0..400)
                .map(|i| NewTask::new("r.tick").args(json!([i])))
                .collect(),
        )
        .await
        .unwrap();
    let mut r = Registry::new();
    r.register("r.tick", |_ctx: TaskContext| async { Ok(Value::Null) });
    let workers: Vec<_> = (0..3)
        .map(|_| RunningWorker::start(&db, r.clone(), test_worker_config(&["celery"], 8)))
        .collect();
    // Measure over 20 s from the first start (database clock).
    eventually(Duration::from_secs(60), "20 s of starts after the first", || async {
        let span: Option<f64> = db
            .scalar("SELECT extract(epoch FROM now() - min(started_at))::float8 FROM celeriac.tasks WHERE started_at IS NOT NULL")
            .await;
        span.filter(|s| *s >= 20.5).map(|_| ())
    })
    .await;
    let started: i64 = db
        .scalar(
            "SELECT count(*) FROM celeriac.tasks WHERE started_at <= \
             (SELECT min(started_at) FROM celeriac.tasks) + interval '20 seconds'",
        )
        .await;
    // 10/s for 20 s, plus the initial bucket of 10: 200..=210 (± one bucket).
    assert!(
        (190..=210).contains(&started),
        "{started} starts in 20 s at 10/s"
    );
    // No second of the window had more than 10 + the burst.
    let worst: i64 = db
        .scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM celeriac.tasks WHERE started_at IS NOT NULL \
             GROUP BY floor(extract(epoch FROM started_at - (SELECT min(started_at) FROM celeriac.tasks)))) s",
        )
        .await;
    assert!(worst <= 20, "{worst} starts in one second");
    db.client.purge("celery").await.unwrap();
    for w in workers {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrency_cap_holds_and_other_tasks_keep_flowing() {
    let db = TestDb::new().await;
    db.client
        .set_limit(&spec(LimitKind::Task, "c.capped", None, Some(3)))
        .await
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    {
        let (running, peak) = (running.clone(), peak.clone());
        r.register("c.capped", move |_ctx: TaskContext| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(Value::Null)
            }
        });
    }
    r.register("c.free", |_ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Value::Null)
    });
    // Capped tasks first in the queue, free ones behind them.
    db.client
        .enqueue_many(
            (0..100)
                .map(|i| NewTask::new("c.capped").args(json!([i])))
                .collect(),
        )
        .await
        .unwrap();
    db.client
        .enqueue_many(
            (0..100)
                .map(|i| NewTask::new("c.free").args(json!([i])))
                .collect(),
        )
        .await
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| RunningWorker::start(&db, r.clone(), test_worker_config(&["celery"], 10)))
        .collect();
    eventually(Duration::from_secs(90), "everything finished", || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;
    for w in workers {
        w.stop().await;
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {} running",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "the cap is used, not just respected"
    );
    let ok: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE state = 'SUCCESS'")
        .await;
    assert_eq!(ok, 200);
    // The free tasks did not wait for the capped ones.
    let free_done: f64 = db
        .scalar("SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 FROM celeriac.tasks WHERE name = 'c.free'")
        .await;
    let capped_done: f64 = db
        .scalar("SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 FROM celeriac.tasks WHERE name = 'c.capped'")
        .await;
    assert!(
        free_done < capped_done / 2.0,
        "free tasks took {free_done}s, capped {capped_done}s"
    );
    let slots: i64 = db
        .scalar("SELECT coalesce(sum(running), 0)::int8 FROM celeriac.limit_buckets")
        .await;
    assert_eq!(slots, 0, "every slot was given back");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_partition_by_a_kwarg_and_release_on_every_exit() {
    let db = TestDb::new().await;
    db.client
        .set_limit(&LimitSpec {
            partition_by: Some("customer".into()),
            ..spec(LimitKind::Task, "p.job", None, Some(1))
        })
        .await
        .unwrap();
    let mut r = Registry::new();
    r.register("p.job", |ctx: TaskContext| async move {
        if ctx.kwarg::<bool>("fail")?.unwrap_or(false) {
            return Err(celeriac::TaskError::fail("ValueError", "no"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Value::Null)
    });
    let ids = db
        .client
        .enqueue_many(vec![
            NewTask::new("p.job").kwargs(json!({"customer": "a", "fail": true})),
            NewTask::new("p.job").kwargs(json!({"customer": "a"})),
            NewTask::new("p.job").kwargs(json!({"customer": "a"})),
            NewTask::new("p.job").kwargs(json!({"customer": "b"})),
            NewTask::new("p.job").kwargs(json!({"customer": "b"})),
        ])
        .await
        .unwrap();
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 10));
    for id in &ids {
        let _ = db.client.result(*id).get(Duration::from_secs(30)).await;
    }
    w.stop().await;
    // Per customer, runs never overlap; across customers they do.
    let overlap = |c: &str| {
        format!(
            "SELECT count(*) FROM celeriac.tasks x JOIN celeriac.tasks y ON x.id < y.id \
             WHERE x.kwargs->>'customer' = '{c}' AND y.kwargs->>'customer' = '{c}' \
               AND x.started_at < y.finished_at AND y.started_at < x.finished_at"
        )
    };
    assert_eq!(db.scalar::<i64>(&overlap("a")).await, 0);
    assert_eq!(db.scalar::<i64>(&overlap("b")).await, 0);
    let across: i64 = db
        .scalar(
            "SELECT count(*) FROM celeriac.tasks x JOIN celeriac.tasks y ON x.kwargs->>'customer' = 'a' \
             AND y.kwargs->>'customer' = 'b' WHERE x.started_at < y.finished_at AND y.started_at < x.finished_at",
        )
        .await;
    assert!(across > 0, "customers a and b should run side by side");
    let slots: i64 = db
        .scalar("SELECT coalesce(sum(running), 0)::int8 FROM celeriac.limit_buckets")
        .await;
    assert_eq!(slots, 0, "a failing task gave its slot back too");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_from_the_cli_and_the_config_file() {
    let db = TestDb::new().await;
    let (code, _, err) = cli(&db, &["limit", "set", "--queue", "mail", "--rate", "100/m"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&db, &["limit", "set", "--task", "x", "--rate", "10/d"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("N/s, N/m or N/h"), "{err}");
    let (code, _, _) = cli(&db, &["limit", "set", "--task", "x"]).await;
    assert_ne!(code, 0, "a limit needs a rate or a concurrency");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("celeriac.toml");
    std::fs::write(
        &cfg,
        "[limits.\"task:report.build\"]\nconcurrency = 2\npartition_by = \"customer_id\"\n",
    )
    .unwrap();
    let mut worker = spawn_worker_process(&db, &["--config", cfg.to_str().unwrap()]);
    eventually(
        Duration::from_secs(15),
        "the config's limit applied",
        || async {
            let (_, out, _) = cli(&db, &["limit", "list", "--json"]).await;
            let v: Value = serde_json::from_str(&out).ok()?;
            (v.as_array()?.len() == 2).then_some(v)
        },
    )
    .await;
    let (_, out, _) = cli(&db, &["limit", "list"]).await;
    assert!(
        out.contains("report.build") && out.contains("100/m") && out.contains("customer_id"),
        "{out}"
    );
    let (code, _, _) = cli(&db, &["limit", "remove", "--queue", "mail"]).await;
    assert_eq!(code, 0);
    let (code, _, _) = cli(&db, &["limit", "remove", "--queue", "mail"]).await;
    assert_ne!(code, 0);
    signal(&worker, nix::sys::signal::Signal::SIGTERM);
    worker.wait().await.unwrap();
}
