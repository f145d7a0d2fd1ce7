//! Schema, migrations, the SQL API, and client-side semantics (no worker needed).

use std::time::Duration;

use celeriac::client::Client;
use celeriac::config::Config;
use celeriac::store::Store;
use celeriac::task::{NewTask, TaskId};
use celeriac::{Error, Registry, TaskContext, TaskError};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_safe_concurrently() {
    let db = TestDb::empty().await;
    // Five processes' worth of migrations at once on an empty database.
    let mut runs = Vec::new();
    for _ in 0..5 {
        let config = db.config.clone();
        runs.push(tokio::spawn(async move {
            Store::connect(&config).unwrap().migrate().await
        }));
    }
    let mut applied = 0;
    for r in runs {
        let status = r.await.unwrap().expect("concurrent migrate failed");
        assert!(status.is_current());
        applied += status.newly_applied.len();
    }
    assert_eq!(
        applied,
        celeriac::store::MIGRATIONS.len(),
        "each migration applied exactly once"
    );
    let again = db.store.migrate().await.unwrap();
    assert!(again.newly_applied.is_empty());
    let history: i64 = db
        .scalar("SELECT count(*) FROM celeriac.refinery_schema_history")
        .await;
    assert_eq!(history as usize, celeriac::store::MIGRATIONS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_schema_holds_everything() {
    let db = TestDb::empty().await;
    let config = Config::new(db.url.clone()).with_schema("jobs");
    let store = Store::connect(&config).unwrap();
    store.migrate().await.unwrap();
    let client = Client::from_store(store.clone(), &config);
    let r = client.enqueue(NewTask::new("celeriac.noop")).await.unwrap();
    let in_jobs: i64 = db.scalar("SELECT count(*) FROM jobs.tasks").await;
    assert_eq!(in_jobs, 1);
    let celeriac_schema: bool = db
        .scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'celeriac')")
        .await;
    assert!(!celeriac_schema, "nothing may land in the default schema");
    // The SQL API of that schema works too.
    let id: uuid::Uuid = db
        .scalar("SELECT jobs.enqueue('celeriac.echo', '[1]')")
        .await;
    assert_ne!(id, r.id().0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_enqueue_returns_an_id_and_takes_every_option() {
    let db = TestDb::new().await;
    let id: uuid::Uuid = db
        .scalar(
            "SELECT celeriac.enqueue('emails.send', '[\"a@example.com\"]', '{\"x\": 1}', \
             queue => 'mail', priority => 7, countdown => 60, expires_in => 3600, \
             max_retries => 2, retry_delay => 5, retry_backoff => 2, retry_backoff_max => 30, \
             retry_jitter => false, soft_time_limit => 10, time_limit => 20, \
             ignore_result => true, headers => '{\"h\": \"v\"}')",
        )
        .await;
    let row = sqlx::query("SELECT * FROM celeriac.tasks WHERE id = $1")
        .bind(id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "emails.send");
    assert_eq!(row.get::<String, _>("queue"), "mail");
    assert_eq!(row.get::<String, _>("state"), "SCHEDULED");
    assert_eq!(row.get::<i16, _>("priority"), 7);
    assert_eq!(row.get::<Value, _>("args"), json!(["a@example.com"]));
    assert_eq!(row.get::<Value, _>("headers"), json!({"h": "v"}));
    assert_eq!(row.get::<Option<i32>, _>("max_retries"), Some(2));
    assert_eq!(row.get::<Option<f64>, _>("time_limit"), Some(20.0));
    assert!(row.get::<bool, _>("ignore_result"));
    let delay: f64 = db
        .scalar(&format!(
            "SELECT extract(epoch FROM run_at - created_at)::float8 FROM celeriac.tasks WHERE id = '{id}'"
        ))
        .await;
    assert!(
        (59.0..61.0).contains(&delay),
        "countdown 60 → run_at {delay}s later"
    );
    // A supplied id is used; the Celery state of a waiting task is PENDING.
    let mine = uuid::Uuid::new_v4();
    let got: uuid::Uuid = db
        .scalar(&format!(
            "SELECT celeriac.enqueue('a', task_id => '{mine}')"
        ))
        .await;
    assert_eq!(got, mine);
    let rec = db.client.result(TaskId(id)).info().await.unwrap().unwrap();
    assert_eq!(rec.celery_state, "PENDING");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_enqueue_rejects_bad_input_with_clear_errors() {
    let db = TestDb::new().await;
    let cases = [
        ("SELECT celeriac.enqueue('')", "task_name must not be empty"),
        (
            "SELECT celeriac.enqueue('a', '{\"x\":1}')",
            "args must be a JSON array",
        ),
        (
            "SELECT celeriac.enqueue('a', '[]', '[]')",
            "kwargs must be a JSON object",
        ),
        (
            "SELECT celeriac.enqueue('a', priority => 300)",
            "priority must be between 0 and 255",
        ),
        (
            "SELECT celeriac.enqueue('a', countdown => 1, eta => now())",
            "countdown or eta, not both",
        ),
        (
            "SELECT celeriac.enqueue('a', jsonb_build_array(repeat('x', 1100000)))",
            "exceeds the limit",
        ),
        (
            "SELECT celeriac.enqueue('a', '{bad')",
            "invalid input syntax for type json",
        ),
    ];
    for (sql, expected) in cases {
        let err = sqlx::raw_sql(sql)
            .execute(db.store.pool())
            .await
            .expect_err(sql);
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rolled_back_enqueue_never_runs() {
    let db = TestDb::new().await;
    let log = RunLog::default();
    let mut registry = Registry::new();
    let l = log.clone();
    registry.register("t.once", move |ctx: TaskContext| {
        let l = l.clone();
        async move {
            l.record(ctx.id);
            Ok(Value::Null)
        }
    });
    let w = RunningWorker::start(&db, registry, test_worker_config(&["celery"], 4));

    // SQL API inside a transaction, rolled back (as a Django transaction.atomic() would).
    let mut conn = db.conn().await;
    let mut tx = conn.begin().await.unwrap();
    let rolled: uuid::Uuid = sqlx::query_scalar("SELECT celeriac.enqueue('t.once')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Rust client inside the caller's transaction, rolled back.
    let mut tx = conn.begin().await.unwrap();
    let rolled2 = db
        .client
        .enqueue_with(&mut tx, NewTask::new("t.once"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Committed ones run.
    let mut tx = conn.begin().await.unwrap();
    let committed = db
        .client
        .enqueue_with(&mut tx, NewTask::new("t.once"))
        .await
        .unwrap();
    let committed2: uuid::Uuid = sqlx::query_scalar("SELECT celeriac.enqueue('t.once')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    committed.get(Duration::from_secs(10)).await.unwrap();
    db.client
        .result(TaskId(committed2))
        .get(Duration::from_secs(10))
        .await
        .unwrap();
    w.stop().await;
    assert_eq!(log.count(committed.id()), 1);
    assert_eq!(log.count(TaskId(committed2)), 1);
    assert_eq!(log.count(TaskId(rolled)), 0);
    assert_eq!(log.count(rolled2.id()), 0);
    assert_eq!(log.total(), 2);
    assert!(db.store.task_get(TaskId(rolled)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_stats_view_answers_depth_and_age() {
    let db = TestDb::new().await;
    db.exec(
        "SELECT celeriac.enqueue('a', queue => 'q1') FROM generate_series(1, 3); \
         SELECT celeriac.enqueue('a', queue => 'q2', countdown => 3600); \
         UPDATE celeriac.tasks SET run_at = now() - interval '90 seconds', \
                                   created_at = now() - interval '90 seconds' WHERE queue = 'q1';",
    )
    .await;
    let stats = db.client.queue_stats().await.unwrap();
    let q1 = stats.iter().find(|s| s.queue == "q1").unwrap();
    assert_eq!((q1.ready, q1.scheduled, q1.running), (3, 0, 0));
    let age = q1.oldest_ready_age_s.unwrap();
    assert!((89.0..120.0).contains(&age), "oldest age {age}");
    let q2 = stats.iter().find(|s| s.queue == "q2").unwrap();
    assert_eq!((q2.ready, q2.scheduled), (0, 1));
    assert!(q2.oldest_ready_age_s.is_none());
    // The view itself, from psql.
    let ready: i64 = db
        .scalar("SELECT ready FROM celeriac.queue_stats WHERE queue = 'q1'")
        .await;
    assert_eq!(ready, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_validates_before_the_database() {
    let db = TestDb::new().await;
    let too_big = NewTask::new("a").args(json!(["x".repeat(2 * 1024 * 1024)]));
    assert!(matches!(
        db.client.enqueue(too_big).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        db.client
            .enqueue(NewTask::new("a").kwargs(json!([1])))
            .await,
        Err(Error::Invalid(_))
    ));
    let id = TaskId::new();
    db.client.enqueue(NewTask::new("a").id(id)).await.unwrap();
    assert!(matches!(
        db.client.enqueue(NewTask::new("a").id(id)).await,
        Err(Error::DuplicateId(dup)) if dup == id
    ));
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_enqueue_keeps_order_and_options() {
    let db = TestDb::new().await;
    let tasks: Vec<NewTask> = (0..500)
        .map(|i| {
            NewTask::new("b")
                .args(json!([i]))
                .queue("bulk")
                .priority((i % 3) as u8)
        })
        .collect();
    let ids = db.client.enqueue_many(tasks).await.unwrap();
    assert_eq!(ids.len(), 500);
    let order: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM celeriac.tasks ORDER BY seq")
        .fetch_all(db.store.pool())
        .await
        .unwrap();
    assert_eq!(order, ids.iter().map(|i| i.0).collect::<Vec<_>>());
    // A bad task in the batch rejects the batch, naming it.
    let err = db
        .client
        .enqueue_many(vec![NewTask::new("ok"), NewTask::new("bad").args(json!(1))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("task 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_a_waiting_task_and_purge_a_queue() {
    let db = TestDb::new().await;
    let a = db
        .client
        .enqueue(NewTask::new("a").queue("q"))
        .await
        .unwrap();
    assert_eq!(db.client.revoke(a.id(), false).await.unwrap(), "REVOKED");
    let rec = a.info().await.unwrap().unwrap();
    assert_eq!(rec.revoked_reason.as_deref(), Some("revoked"));
    assert!(matches!(
        a.get(Duration::from_secs(1)).await,
        Err(Error::TaskFailed { state, .. }) if state == "REVOKED"
    ));
    assert!(matches!(
        db.client.revoke(TaskId::new(), false).await,
        Err(Error::NotFound(_))
    ));
    let sql_state: String = db
        .scalar(&format!("SELECT celeriac.revoke('{}')", a.id()))
        .await;
    assert_eq!(sql_state, "REVOKED");

    db.client
        .enqueue_many(
            (0..25)
                .map(|_| NewTask::new("p").queue("purge-me"))
                .collect(),
        )
        .await
        .unwrap();
    db.client
        .enqueue(NewTask::new("p").queue("purge-me").countdown(3600.0))
        .await
        .unwrap();
    db.client
        .enqueue(NewTask::new("p").queue("keep"))
        .await
        .unwrap();
    assert_eq!(db.client.purge("purge-me").await.unwrap(), 26);
    let left: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE queue = 'keep' AND state = 'PENDING'")
        .await;
    assert_eq!(left, 1);
    let purged: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE revoked_reason = 'purged'")
        .await;
    assert_eq!(purged, 26);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_times_out_and_unknown_ids_are_pending() {
    let db = TestDb::new().await;
    let r = db
        .client
        .enqueue(NewTask::new("nobody.runs.this"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        r.get(Duration::from_millis(300)).await,
        Err(Error::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        db.client.result(TaskId::new()).state().await.unwrap(),
        "PENDING"
    );
    assert!(!r.ready().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn eager_mode_runs_inline_with_retries() {
    let mut registry = Registry::new();
    registry.register("add", |ctx: TaskContext| async move {
        let a: i64 = ctx.arg(0)?;
        let b: i64 = ctx.arg(1)?;
        Ok(json!(a + b))
    });
    registry.register("flaky", |ctx: TaskContext| async move {
        if ctx.retries < 2 {
            return Err(ctx.retry(Some(3600.0)));
        }
        ctx.update_state("PROGRESS", json!({"done": 1})).await?;
        Ok(json!(ctx.retries))
    });
    registry.register("broken", |_ctx: TaskContext| async move {
        Err::<Value, _>(TaskError::fail("ValueError", "nope"))
    });
    let client = Client::eager(registry);
    let r = client
        .enqueue(NewTask::new("add").args(json!([2, 3])))
        .await
        .unwrap();
    assert_eq!(r.get(Duration::from_secs(1)).await.unwrap(), json!(5));
    let r = client.enqueue(NewTask::new("flaky")).await.unwrap();
    assert_eq!(r.get(Duration::from_secs(1)).await.unwrap(), json!(2));
    let rec = r.info().await.unwrap().unwrap();
    assert_eq!((rec.retries, rec.attempt), (2, 3));
    assert_eq!(rec.progress, Some(json!({"done": 1})));
    let r = client.enqueue(NewTask::new("broken")).await.unwrap();
    assert!(r.failed().await.unwrap());
    assert!(matches!(
        r.get(Duration::from_secs(1)).await,
        Err(Error::TaskFailed { error_type, .. }) if error_type == "ValueError"
    ));
    let r = client.enqueue(NewTask::new("missing")).await.unwrap();
    assert!(matches!(
        r.get(Duration::from_secs(1)).await,
        Err(Error::TaskFailed { error_type, .. }) if error_type == "NotRegistered"
    ));
    let r = client
        .enqueue(NewTask::new("add").args(json!(["x", 1])))
        .await
        .unwrap();
    assert!(matches!(
        r.get(Duration::from_secs(1)).await,
        Err(Error::TaskFailed { error_type, .. }) if error_type == "TypeError"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_deletes_old_finished_rows_in_chunks_without_blocking_claims() {
    let db = TestDb::new().await;
    db.exec(
        "INSERT INTO celeriac.tasks (id, name, queue, state, created_at, finished_at, result) \
         SELECT gen_random_uuid(), 'old', 'celery', \
                (ARRAY['SUCCESS','FAILURE','REVOKED'])[1 + i % 3], \
                now() - interval '3 days', now() - interval '2 days', '1' \
         FROM generate_series(1, 10000) i; \
         INSERT INTO celeriac.tasks (id, name, queue, state, finished_at) \
         SELECT gen_random_uuid(), 'recent', 'celery', 'SUCCESS', now() - interval '1 hour' \
         FROM generate_series(1, 50);",
    )
    .await;
    // No maintenance in this worker: the pruner measured below is the only one.
    let w = RunningWorker::start_with(
        &db.config,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 8),
        None,
    );
    // Hold a lock on some old rows: pruning must skip them, not wait.
    let mut blocker = db.conn().await;
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT id FROM celeriac.tasks WHERE name = 'old' LIMIT 10 FOR UPDATE")
        .fetch_all(&mut *tx)
        .await
        .unwrap();

    let maintenance = celeriac::maintenance::Maintenance::new(
        db.store.clone(),
        celeriac::config::MaintenanceConfig {
            retention: Duration::from_secs(24 * 3600),
            prune_chunk: 500,
            ..celeriac::config::MaintenanceConfig::default()
        },
        5,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let prune = tokio::spawn(async move { maintenance.prune_once(&stop).await });
    // Claims carry on meanwhile.
    let results: Vec<_> = futures_util::future::join_all((0..20).map(|i| {
        let c = db.client.clone();
        async move {
            c.enqueue(NewTask::new("celeriac.echo").args(json!([i])))
                .await
                .unwrap()
                .get(Duration::from_secs(15))
                .await
        }
    }))
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let pruned = tokio::time::timeout(Duration::from_secs(30), prune)
        .await
        .expect("pruning blocked")
        .unwrap()
        .unwrap();
    assert_eq!(
        pruned,
        10_000 - 10,
        "locked rows are skipped, every other old row goes"
    );
    tx.rollback().await.unwrap();
    let old: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE name = 'old'")
        .await;
    assert_eq!(old, 10);
    let recent: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE name = 'recent'")
        .await;
    assert_eq!(recent, 50, "rows within the retention stay");
    w.stop().await;
}
