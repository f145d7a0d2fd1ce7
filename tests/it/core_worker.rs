//! Worker semantics with workers running in this process: ordering, ETA, expiry, retries,
//! time limits, progress, revoke, exactly-once with two workers, fencing, and surviving
//! connection loss and a PostgreSQL restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac::config::Config;
use celeriac::pgproc::{PgProc, PgProcOptions};
use celeriac::registry::TaskOptions;
use celeriac::store::{Completion, Store, WorkerRegistration};
use celeriac::task::{ErrorInfo, NewTask, RetryPolicy, TaskState};
use celeriac::{Client, Error, Registry, TaskContext, TaskError};
use serde_json::{Value, json};

use crate::common::*;

fn recording_registry(order: Arc<Mutex<Vec<i64>>>) -> Registry {
    let mut r = Registry::new();
    r.register("t.record", move |ctx: TaskContext| {
        let order = order.clone();
        async move {
            order.lock().unwrap().push(ctx.arg::<i64>(0)?);
            Ok(Value::Null)
        }
    });
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn higher_priority_first_and_fifo_within_a_priority() {
    let db = TestDb::new().await;
    // (marker, priority), enqueued in this order before any worker runs.
    let plan = [(1, 0), (2, 5), (3, 0), (4, 255), (5, 5), (6, 0), (7, 255)];
    for (marker, prio) in plan {
        db.client
            .enqueue(
                NewTask::new("t.record")
                    .args(json!([marker]))
                    .priority(prio),
            )
            .await
            .unwrap();
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = test_worker_config(&["celery"], 1);
    cfg.claim_batch = 1;
    let w = RunningWorker::start(&db, recording_registry(order.clone()), cfg);
    eventually(Duration::from_secs(10), "all 7 ran", || async {
        (order.lock().unwrap().len() == 7).then_some(())
    })
    .await;
    w.stop().await;
    assert_eq!(*order.lock().unwrap(), vec![4, 7, 2, 5, 1, 3, 6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn countdown_and_eta_are_rows_not_run_early() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 4),
    );
    let later = db
        .client
        .enqueue(NewTask::new("celeriac.noop").countdown(1.5))
        .await
        .unwrap();
    let eta = chrono::Utc::now() + chrono::Duration::milliseconds(1200);
    let at = db
        .client
        .enqueue(NewTask::new("celeriac.noop").eta(eta))
        .await
        .unwrap();
    assert_eq!(later.state().await.unwrap(), "PENDING");
    later.get(Duration::from_secs(10)).await.unwrap();
    at.get(Duration::from_secs(10)).await.unwrap();
    let waited: f64 = db
        .scalar(&format!(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM celeriac.tasks WHERE id = '{}'",
            later.id()
        ))
        .await;
    assert!(
        waited >= 1.45,
        "started {waited}s after enqueue, countdown was 1.5s"
    );
    assert!(
        waited < 4.0,
        "the worker sleeps until the ETA, not a poll later: {waited}s"
    );
    let rec = at.info().await.unwrap().unwrap();
    assert!(rec.started_at.unwrap() >= eta - chrono::Duration::milliseconds(20));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tasks_are_revoked_not_run() {
    let db = TestDb::new().await;
    let log = RunLog::default();
    let mut r = Registry::new();
    let l = log.clone();
    r.register("t.x", move |ctx: TaskContext| {
        let l = l.clone();
        async move {
            l.record(ctx.id);
            Ok(Value::Null)
        }
    });
    let past = chrono::Utc::now() - chrono::Duration::seconds(5);
    let expired = db
        .client
        .enqueue(NewTask::new("t.x").expires_at(past))
        .await
        .unwrap();
    // Due after it expires: never started either.
    let too_late = db
        .client
        .enqueue(NewTask::new("t.x").countdown(0.5).expires_in(0.2))
        .await
        .unwrap();
    let fine = db
        .client
        .enqueue(NewTask::new("t.x").expires_in(60.0))
        .await
        .unwrap();
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 2));
    fine.get(Duration::from_secs(10)).await.unwrap();
    for r in [&expired, &too_late] {
        let err = r.get(Duration::from_secs(10)).await.unwrap_err();
        assert!(
            matches!(err, Error::TaskFailed { ref state, .. } if state == "REVOKED"),
            "{err}"
        );
        let rec = r.info().await.unwrap().unwrap();
        assert_eq!(rec.revoked_reason.as_deref(), Some("expired"));
        assert_eq!(log.count(r.id()), 0);
    }
    assert_eq!(log.count(fine.id()), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_follow_the_policy_then_fail_with_the_cause() {
    let db = TestDb::new().await;
    let mut r = Registry::new();
    r.register("t.always_retry", |ctx: TaskContext| async move {
        Err::<Value, _>(TaskError::retry_because(
            None,
            ErrorInfo::new("IOError", format!("attempt {}", ctx.attempt)),
        ))
    });
    r.register_with(
        "t.backoff",
        TaskOptions {
            retry: Some(RetryPolicy {
                max_retries: 2,
                delay: 999.0,
                backoff: 0.2,
                backoff_max: 0.3,
                jitter: false,
            }),
            ..TaskOptions::default()
        },
        |ctx: TaskContext| async move {
            if ctx.retries < 2 {
                Err(ctx.retry(None))
            } else {
                Ok(json!({"retries": ctx.retries}))
            }
        },
    );
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 4));
    let doomed = db
        .client
        .enqueue(
            NewTask::new("t.always_retry")
                .max_retries(3)
                .retry_delay(0.1),
        )
        .await
        .unwrap();
    let err = doomed.get(Duration::from_secs(20)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, message, .. } if error_type == "IOError" && message == "attempt 4"),
        "{err}"
    );
    let rec = doomed.info().await.unwrap().unwrap();
    assert_eq!((rec.retries, rec.attempt), (3, 4));

    let backoff = db.client.enqueue(NewTask::new("t.backoff")).await.unwrap();
    assert_eq!(
        backoff.get(Duration::from_secs(20)).await.unwrap(),
        json!({"retries": 2})
    );
    // Backoff 0.2 s then 0.4 s capped to 0.3 s: at least 0.5 s between enqueue and the end.
    let spent: f64 = db
        .scalar(&format!(
            "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM celeriac.tasks WHERE id = '{}'",
            backoff.id()
        ))
        .await;
    assert!(spent >= 0.45, "backoff delays were skipped ({spent}s)");

    // Retry without a cause, budget exhausted: MaxRetriesExceededError.
    let none_left = db
        .client
        .enqueue(NewTask::new("t.backoff").max_retries(0))
        .await
        .unwrap();
    let err = none_left.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "MaxRetriesExceededError"),
        "{err}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_limit_can_be_caught_hard_limit_kills() {
    let db = TestDb::new().await;
    let mut r = Registry::with_builtins();
    r.register("t.cleanup", |ctx: TaskContext| async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(json!("slept")),
            _ = ctx.cancelled() => Ok(json!(format!("cleaned up after {:?}", ctx.cancel_reason()))),
        }
    });
    r.register("t.stubborn", |_ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(json!("never"))
    });
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 4));
    let soft = db
        .client
        .enqueue(
            NewTask::new("t.cleanup")
                .soft_time_limit(0.3)
                .time_limit(10.0),
        )
        .await
        .unwrap();
    let hard = db
        .client
        .enqueue(NewTask::new("t.stubborn").time_limit(0.5))
        .await
        .unwrap();
    let slept = db
        .client
        .enqueue(
            NewTask::new("celeriac.sleep")
                .args(json!([60]))
                .soft_time_limit(0.3),
        )
        .await
        .unwrap();
    assert_eq!(
        soft.get(Duration::from_secs(10)).await.unwrap(),
        json!("cleaned up after Some(SoftTimeLimit)")
    );
    let err = hard.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "TimeLimitExceeded"),
        "{err}"
    );
    let err = slept.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "SoftTimeLimitExceeded"),
        "{err}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn results_errors_progress_headers_and_unknown_tasks() {
    let db = TestDb::new().await;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut r = Registry::with_builtins();
    r.register("t.progress", move |ctx: TaskContext| {
        let mut go = go_rx.clone();
        async move {
            ctx.update_state("PROGRESS", json!({"current": 3, "total": 10}))
                .await?;
            go.wait_for(|g| *g)
                .await
                .map_err(|e| TaskError::fail("Closed", e.to_string()))?;
            Ok(json!({"header": ctx.headers["trace"]}))
        }
    });
    r.register("t.panics", |_ctx: TaskContext| async move {
        if true {
            panic!("boom");
        }
        Ok(Value::Null)
    });
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 4));
    let p = db
        .client
        .enqueue(NewTask::new("t.progress").headers(json!({"trace": "abc"})))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "PROGRESS state", || async {
        (p.state().await.unwrap() == "PROGRESS").then_some(())
    })
    .await;
    let rec = p.info().await.unwrap().unwrap();
    assert_eq!(rec.progress, Some(json!({"current": 3, "total": 10})));
    assert_eq!(rec.state, TaskState::Started);
    go_tx.send(true).unwrap();
    assert_eq!(
        p.get(Duration::from_secs(10)).await.unwrap(),
        json!({"header": "abc"})
    );
    assert!(p.successful().await.unwrap());

    let unknown = db
        .client
        .enqueue(NewTask::new("no.such.task"))
        .await
        .unwrap();
    let err = unknown.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "NotRegistered"),
        "{err}"
    );
    let panics = db.client.enqueue(NewTask::new("t.panics")).await.unwrap();
    let err = panics.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, message, .. } if error_type == "Panic" && message.contains("boom")),
        "{err}"
    );
    // The worker keeps going after all that.
    let echo = db
        .client
        .enqueue(
            NewTask::new("celeriac.echo")
                .args(json!([1]))
                .kwargs(json!({"k": "v"})),
        )
        .await
        .unwrap();
    assert_eq!(
        echo.get(Duration::from_secs(10)).await.unwrap(),
        json!({"args": [1], "kwargs": {"k": "v"}})
    );
    let quiet = db
        .client
        .enqueue(NewTask::new("celeriac.echo").ignore_result(true))
        .await
        .unwrap();
    assert_eq!(
        quiet.get(Duration::from_secs(10)).await.unwrap(),
        Value::Null
    );
    assert!(quiet.info().await.unwrap().unwrap().result.is_none());
    let failed = db
        .client
        .enqueue(
            NewTask::new("celeriac.fail")
                .kwargs(json!({"message": "kaputt", "type": "ValueError"})),
        )
        .await
        .unwrap();
    let _ = failed.get(Duration::from_secs(10)).await;
    let rec = failed.info().await.unwrap().unwrap();
    let e = rec.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("ValueError", "kaputt")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_with_terminate_cancels_a_running_task() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 2),
    );
    let long = db
        .client
        .enqueue(NewTask::new("celeriac.sleep").args(json!([60])))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "task started", || async {
        (long.state().await.unwrap() == "STARTED").then_some(())
    })
    .await;
    // Without terminate a running task is left alone (Celery semantics).
    assert_eq!(db.client.revoke(long.id(), false).await.unwrap(), "STARTED");
    let t = std::time::Instant::now();
    assert_eq!(db.client.revoke(long.id(), true).await.unwrap(), "STARTED");
    let err = long.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { state, .. } if state == "REVOKED"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "terminate took {:?}",
        t.elapsed()
    );
    let rec = long.info().await.unwrap().unwrap();
    assert_eq!(rec.revoked_reason.as_deref(), Some("terminated"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_run_every_task_exactly_once() {
    let db = TestDb::new().await;
    let log = RunLog::default();
    let registry = {
        let mut r = Registry::new();
        let l = log.clone();
        r.register("t.count", move |ctx: TaskContext| {
            let l = l.clone();
            async move {
                l.record(ctx.id);
                if ctx.arg::<u64>(0)? % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(Value::Null)
            }
        });
        r
    };
    let a = RunningWorker::start(&db, registry.clone(), test_worker_config(&["celery"], 16));
    let b = RunningWorker::start(&db, registry, test_worker_config(&["celery"], 16));
    let n = 3000;
    for chunk in (0..n).collect::<Vec<u64>>().chunks(500) {
        db.client
            .enqueue_many(
                chunk
                    .iter()
                    .map(|i| NewTask::new("t.count").args(json!([i])))
                    .collect(),
            )
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(60), "all tasks finished", || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
    assert_eq!(log.distinct(), n as usize);
    assert_eq!(log.max(), 1, "a task ran twice");
    let per_worker: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM celeriac.tasks WHERE state = 'SUCCESS' GROUP BY attempt",
    )
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert_eq!(
        per_worker,
        vec![n as i64],
        "every task succeeded on its first attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_write_from_a_lost_attempt_changes_nothing() {
    let db = TestDb::new().await;
    let store = &db.store;
    let task = db.client.enqueue(NewTask::new("t.fenced")).await.unwrap();
    let register = |id: uuid::Uuid| WorkerRegistration {
        id,
        hostname: "h".into(),
        pid: 1,
        queues: vec!["celery".into()],
        concurrency: 1,
        version: "test".into(),
        lease: Duration::from_secs(60),
        info: json!({}),
    };
    let (w1, w2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    store.worker_register(&register(w1)).await.unwrap();
    let first = store.task_claim(&["celery".into()], 10, w1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    // w1 stops heartbeating; its lease runs out; the task is rescued.
    db.exec(&format!(
        "UPDATE celeriac.workers SET expires_at = now() - interval '1 second' WHERE id = '{w1}'"
    ))
    .await;
    assert_eq!(store.task_rescue_orphans(5).await.unwrap(), (1, 0));
    store.worker_register(&register(w2)).await.unwrap();
    let second = store.task_claim(&["celery".into()], 10, w2).await.unwrap();
    assert_eq!(second[0].attempt, 2);
    let outcome = |attempt: i32, v: Value| Completion {
        id: task.id(),
        attempt,
        state: TaskState::Success,
        result: Some(v),
        error: None,
        retry_in: None,
        revoked_reason: None,
    };
    // The dead attempt's write arrives late: refused.
    let accepted = store
        .task_complete_many(&[outcome(1, json!("stale"))])
        .await
        .unwrap();
    assert!(accepted.is_empty());
    let rec = task.info().await.unwrap().unwrap();
    assert_eq!((rec.state, rec.lost), (TaskState::Started, 1));
    let accepted = store
        .task_complete_many(&[outcome(2, json!("fresh"))])
        .await
        .unwrap();
    assert_eq!(accepted, vec![task.id()]);
    assert_eq!(
        task.get(Duration::from_secs(1)).await.unwrap(),
        json!("fresh")
    );
    // And after success, the stale write still changes nothing.
    assert!(
        store
            .task_complete_many(&[outcome(1, json!("stale"))])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        task.get(Duration::from_secs(1)).await.unwrap(),
        json!("fresh")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_lost_too_often_end_as_worker_lost() {
    let db = TestDb::new().await;
    let task = db.client.enqueue(NewTask::new("t.poison")).await.unwrap();
    for round in 1..=3 {
        let w = uuid::Uuid::new_v4();
        db.store
            .worker_register(&WorkerRegistration {
                id: w,
                hostname: "h".into(),
                pid: 1,
                queues: vec!["celery".into()],
                concurrency: 1,
                version: "t".into(),
                lease: Duration::from_secs(60),
                info: json!({}),
            })
            .await
            .unwrap();
        let claimed = db.store.task_claim(&["celery".into()], 1, w).await.unwrap();
        assert_eq!(claimed.len(), 1, "round {round}");
        db.exec(&format!("DELETE FROM celeriac.workers WHERE id = '{w}'"))
            .await;
        let (requeued, failed) = db.store.task_rescue_orphans(2).await.unwrap();
        assert_eq!((requeued, failed), if round < 3 { (1, 0) } else { (0, 1) });
    }
    let err = task.get(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "WorkerLostError"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_survives_killed_connections() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 4),
    );
    let first = db
        .client
        .enqueue(NewTask::new("celeriac.noop"))
        .await
        .unwrap();
    first.get(Duration::from_secs(10)).await.unwrap();
    // Kill every backend of the worker (its listener included) and of the client.
    let killed: i64 = db
        .scalar(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid() AND application_name = 'celeriac'",
            db.name
        ))
        .await;
    assert!(killed >= 2, "killed {killed}");
    let client = Client::connect(&db.config).unwrap();
    let after: Vec<_> = futures_util::future::join_all((0..10).map(|i| {
        let c = client.clone();
        async move {
            c.enqueue(NewTask::new("celeriac.echo").args(json!([i])))
                .await
                .unwrap()
                .get(Duration::from_secs(20))
                .await
        }
    }))
    .await;
    assert!(after.iter().all(|r| r.is_ok()), "{after:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_completes_across_a_postgres_restart() {
    init_logs();
    // Under the system temporary directory (see core_cli's dev test for why).
    let dir = tempfile::Builder::new()
        .prefix("pgrestart")
        .tempdir()
        .unwrap();

    make_traversable(dir.path());
    let pg = PgProc::start(&dir.path().join("data"), PgProcOptions { fsync: false })
        .await
        .expect("starting a private PostgreSQL (needs the server binaries)");
    let config = Config::new(pg.url());
    let store = Store::connect(&config).unwrap();
    store.migrate().await.unwrap();
    let client = Client::from_store(store.clone(), &config);
    let w = RunningWorker::start_with(
        &config,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 8),
        Some(test_maintenance()),
    );
    let ids = client
        .enqueue_many(
            (0..300)
                .map(|_| NewTask::new("celeriac.sleep").args(json!([0.02])))
                .collect(),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "some tasks done before the restart",
        || async {
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM celeriac.tasks WHERE state = 'SUCCESS'")
                    .fetch_one(store.pool())
                    .await
                    .ok()?;
            (done >= 20).then_some(())
        },
    )
    .await;
    pg.restart_after(Duration::from_secs(2), false)
        .await
        .unwrap();
    // Enqueued after the restart: the listener reconnected (or the poll finds it).
    let late = loop {
        match client
            .enqueue(NewTask::new("celeriac.echo").args(json!(["after"])))
            .await
        {
            Ok(r) => break r,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        late.get(Duration::from_secs(30)).await.unwrap(),
        json!({"args": ["after"], "kwargs": {}})
    );
    eventually(Duration::from_secs(60), "all 300 tasks done", || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM celeriac.tasks WHERE state <> 'SUCCESS'")
                .fetch_one(store.pool())
                .await
                .ok()?;
        (left == 0).then_some(())
    })
    .await;
    for id in ids {
        assert_eq!(client.result(id).state().await.unwrap(), "SUCCESS");
    }
    w.stop().await;
    store.pool().close().await;
    pg.stop().await.unwrap();
}

/// The private server runs as `postgres` when tests run as root: let it reach the directory.
pub fn make_traversable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_time_limit_retries_when_the_task_asks_for_it() {
    let db = TestDb::new().await;
    let mut r = Registry::new();
    r.register_with(
        "t.slow_once",
        TaskOptions {
            retry_on_time_limit: true,
            time_limit: Some(0.3),
            retry: Some(RetryPolicy {
                max_retries: 2,
                delay: 0.0,
                ..RetryPolicy::default()
            }),
            ..TaskOptions::default()
        },
        |ctx: TaskContext| async move {
            if ctx.retries == 0 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(json!(ctx.retries))
        },
    );
    r.register_with(
        "t.always_slow",
        TaskOptions {
            retry_on_time_limit: true,
            time_limit: Some(0.2),
            retry: Some(RetryPolicy {
                max_retries: 1,
                delay: 0.0,
                ..RetryPolicy::default()
            }),
            ..TaskOptions::default()
        },
        |_ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Value::Null)
        },
    );
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 2));
    let once = db
        .client
        .enqueue(NewTask::new("t.slow_once"))
        .await
        .unwrap();
    assert_eq!(once.get(Duration::from_secs(20)).await.unwrap(), json!(1));
    let always = db
        .client
        .enqueue(NewTask::new("t.always_slow"))
        .await
        .unwrap();
    let err = always.get(Duration::from_secs(20)).await.unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "TimeLimitExceeded"),
        "{err}"
    );
    assert_eq!(always.info().await.unwrap().unwrap().retries, 1);
    w.stop().await;
}
