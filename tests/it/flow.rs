//! Issue 6: workflows (chain / group / chord), unique tasks, named locks.

use std::collections::HashSet;
use std::time::Duration;

use celeriac::canvas::{Signature, chain, chord, group};
use celeriac::task::{NewTask, TaskId, UniqueScope};
use celeriac::{Error, Registry, TaskContext, TaskError};
use serde_json::{Value, json};

use crate::common::*;

/// add(a, b), double(x), sum(list), fail(), record_error(id), echo_all(*args).
fn math_registry(log: RunLog) -> Registry {
    let mut r = Registry::with_builtins();
    r.register("m.add", |ctx: TaskContext| async move {
        Ok(json!(ctx.arg::<i64>(0)? + ctx.arg::<i64>(1)?))
    });
    r.register("m.double", |ctx: TaskContext| async move {
        Ok(json!(ctx.arg::<i64>(0)? * 2))
    });
    r.register("m.sum", |ctx: TaskContext| async move {
        let xs: Vec<i64> = ctx.arg(0)?;
        Ok(json!(xs.iter().sum::<i64>()))
    });
    r.register(
        "m.args",
        |ctx: TaskContext| async move { Ok(ctx.args.clone()) },
    );
    r.register("m.fail", |_ctx: TaskContext| async move {
        Err::<Value, _>(TaskError::fail("ValueError", "member broke"))
    });
    let l = log.clone();
    r.register("m.count", move |ctx: TaskContext| {
        let l = l.clone();
        async move {
            l.record(ctx.id);
            Ok(ctx.args.clone())
        }
    });
    r
}

fn t(name: &str, args: Value) -> NewTask {
    NewTask::new(name).args(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn chains_groups_and_chords_nest() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(
        &db,
        math_registry(RunLog::default()),
        test_worker_config(&["celery"], 8),
    );
    let get = |id: TaskId| {
        let c = db.client.clone();
        async move { c.result(id).get(Duration::from_secs(20)).await.unwrap() }
    };

    // chain: ((2 + 3) * 2) * 2, the result id is known before anything ran.
    let applied = db
        .client
        .apply(&chain([
            t("m.add", json!([2, 3])).into(),
            t("m.double", json!([])).into(),
            t("m.double", json!([])).into(),
        ]))
        .await
        .unwrap();
    assert_eq!(get(applied.id).await, json!(20));
    let last = db.client.result(applied.id).info().await.unwrap().unwrap();
    assert_eq!(
        last.args,
        json!([10]),
        "the previous result is the first argument"
    );
    assert_eq!(
        db.client
            .result(applied.root_id)
            .info()
            .await
            .unwrap()
            .unwrap()
            .name,
        "m.add"
    );

    // immutable signatures ignore the previous result.
    let applied = db
        .client
        .apply(&chain([
            t("m.add", json!([1, 1])).into(),
            Signature::from(t("m.add", json!([10, 10])))
                .immutable()
                .into(),
        ]))
        .await
        .unwrap();
    assert_eq!(get(applied.id).await, json!(20));

    // group: results in order.
    let applied = db
        .client
        .apply(&group((0..5).map(|i| t("m.double", json!([i])).into())))
        .await
        .unwrap();
    let g = db.client.group(applied.id);
    assert_eq!(
        g.get(Duration::from_secs(20)).await.unwrap(),
        vec![json!(0), json!(2), json!(4), json!(6), json!(8)]
    );
    let info = g.info().await.unwrap().unwrap();
    assert_eq!(
        (info.state.as_str(), info.size, info.completed, info.failed),
        ("SUCCESS", 5, 5, 0)
    );

    // chord whose header holds chains; a chain holding a group (-> implicit chord) and a chord.
    let flow = chain([
        t("m.add", json!([1, 2])).into(), // 3
        group([
            t("m.double", json!([])).into(), // 6
            chain([
                t("m.double", json!([])).into(),
                t("m.double", json!([])).into(),
            ]), // 12
        ]),
        t("m.sum", json!([])).into(), // 18
        chord(
            [
                chain([
                    t("m.add", json!([1])).into(),
                    t("m.double", json!([])).into(),
                ]), // (18+1)*2 = 38
                t("m.double", json!([])).into(), // 36
            ],
            t("m.sum", json!([])).into(), // 74
        ),
    ]);
    let applied = db.client.apply(&flow).await.unwrap();
    assert_eq!(get(applied.id).await, json!(74));

    // A group of chords inside a chain.
    let applied = db
        .client
        .apply(&chain([
            group([
                chord(
                    [
                        t("m.add", json!([1, 1])).into(),
                        t("m.add", json!([2, 2])).into(),
                    ],
                    t("m.sum", json!([])).into(),
                ),
                chord(
                    [t("m.add", json!([3, 3])).into()],
                    t("m.sum", json!([])).into(),
                ),
            ]),
            t("m.sum", json!([])).into(),
        ]))
        .await
        .unwrap();
    assert_eq!(get(applied.id).await, json!(12));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_member_chord_on_two_workers_calls_back_once() {
    let db = TestDb::new().await;
    let log = RunLog::default();
    let a = RunningWorker::start(
        &db,
        math_registry(log.clone()),
        test_worker_config(&["celery"], 16),
    );
    let b = RunningWorker::start(
        &db,
        math_registry(log.clone()),
        test_worker_config(&["celery"], 16),
    );
    let applied = db
        .client
        .apply(&chord(
            (0..1000).map(|i| t("m.double", json!([i])).into()),
            Signature::from(t("m.count", json!([]))).into(),
        ))
        .await
        .unwrap();
    let out = db
        .client
        .result(applied.id)
        .get(Duration::from_secs(120))
        .await
        .unwrap();
    let list = out[0].as_array().unwrap();
    assert_eq!(list.len(), 1000);
    assert!(
        list.iter().enumerate().all(|(i, v)| v == &json!(2 * i)),
        "results in order"
    );
    a.stop().await;
    b.stop().await;
    assert_eq!(log.total(), 1, "the callback ran exactly once");
    let callbacks: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE name = 'm.count'")
        .await;
    assert_eq!(callbacks, 1);
    let info = db.client.group(
        db.scalar::<uuid::Uuid>("SELECT id FROM celeriac.groups WHERE kind = 'chord'")
            .await
            .into(),
    );
    let info = info.info().await.unwrap().unwrap();
    assert_eq!((info.completed, info.state.as_str()), (1000, "SUCCESS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_propagate_and_error_callbacks_run() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(
        &db,
        math_registry(RunLog::default()),
        test_worker_config(&["celery"], 8),
    );

    // A chain stops at the failing member; later members end FAILURE with its error.
    let applied = db
        .client
        .apply(
            &chain([
                t("m.add", json!([1, 1])).into(),
                t("m.fail", json!([])).into(),
                t("m.double", json!([])).into(),
            ])
            .on_error(t("m.args", json!(["errback"]))),
        )
        .await
        .unwrap();
    let err = db
        .client
        .result(applied.id)
        .get(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, message, .. } if error_type == "ValueError" && message == "member broke"),
        "{err}"
    );
    let never = db.client.result(applied.id).info().await.unwrap().unwrap();
    assert_eq!(never.attempt, 0, "the member after the failure never ran");
    // The error callback ran once, with the failed task's id first.
    let errback = eventually(Duration::from_secs(20), "errback finished", || async {
        let v: Option<Value> = sqlx::query_scalar(
            "SELECT result FROM celeriac.tasks WHERE name = 'm.args' AND state = 'SUCCESS'",
        )
        .fetch_optional(db.store.pool())
        .await
        .unwrap();
        v
    })
    .await;
    let failed_id: uuid::Uuid = db
        .scalar("SELECT id FROM celeriac.tasks WHERE name = 'm.fail'")
        .await;
    assert_eq!(errback, json!([failed_id.to_string(), "errback"]));
    let errbacks: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE name = 'm.args'")
        .await;
    assert_eq!(errbacks, 1);

    // A chord with a failing header member: the body never runs and fails with the error.
    let applied = db
        .client
        .apply(&chord(
            [
                t("m.double", json!([1])).into(),
                t("m.fail", json!([])).into(),
                t("m.double", json!([2])).into(),
            ],
            t("m.sum", json!([])).into(),
        ))
        .await
        .unwrap();
    let err = db
        .client
        .result(applied.id)
        .get(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "ValueError"),
        "{err}"
    );
    let body = db.client.result(applied.id).info().await.unwrap().unwrap();
    assert_eq!(body.attempt, 0);
    assert!(body.error.unwrap().traceback.unwrap().contains("m.fail"));
    let chord_id: uuid::Uuid = db
        .scalar("SELECT id FROM celeriac.groups WHERE kind = 'chord'")
        .await;
    let g = db.client.group(chord_id.into());
    let e = g.get(Duration::from_secs(20)).await.unwrap_err();
    assert!(matches!(e, Error::TaskFailed { .. }));
    let info = eventually(
        Duration::from_secs(20),
        "all header members reported",
        || async {
            let info = g.info().await.unwrap().unwrap();
            (info.completed == 3).then_some(info)
        },
    )
    .await;
    assert_eq!((info.state.as_str(), info.failed), ("FAILURE", 1));
    assert_eq!(info.results[0], json!(2));

    // A revoked member fails its chain too.
    let applied = db
        .client
        .apply(&chain([
            t("celeriac.noop", json!([])).countdown(3600.0).into(),
            t("m.double", json!([])).into(),
        ]))
        .await
        .unwrap();
    let root = applied.root_id;
    db.client.revoke(root, false).await.unwrap();
    let err = db
        .client
        .result(applied.id)
        .get(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { error_type, .. } if error_type == "TaskRevokedError"),
        "{err}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_from_the_sql_api_and_in_a_rolled_back_transaction() {
    let db = TestDb::new().await;
    let applied: Value = db
        .scalar(
            r#"SELECT celeriac.apply('{"chain": [
                 {"task": "m.add", "args": [20, 1]},
                 {"chord": {"header": [{"task": "m.double"}, {"task": "m.add", "args": [1]}],
                            "body": {"task": "m.sum", "options": {"queue": "celery", "priority": 9}}}}
               ]}')"#,
        )
        .await;
    let id: TaskId = applied["id"].as_str().unwrap().parse().unwrap();
    assert!(
        applied["canvas"]["chain"][0]["id"].is_string(),
        "ids are assigned up front"
    );
    // Bad shapes are refused with a clear error, and nothing is inserted.
    for bad in [
        r#"{"chain": []}"#,
        r#"{"tsk": "x"}"#,
        r#"{"task": "x", "args": {"a": 1}}"#,
        r#"[1]"#,
    ] {
        let err = sqlx::query("SELECT celeriac.apply($1::jsonb)")
            .bind(bad)
            .execute(db.store.pool())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("canvas:"), "{bad}: {err}");
    }
    let bad = db.client.apply(&chain([])).await.unwrap_err();
    assert!(
        matches!(bad, Error::Invalid(ref m) if m.contains("non-empty")),
        "{bad}"
    );

    let mut conn = db.conn().await;
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    let rolled = db
        .client
        .apply_with(&mut tx, &chain([t("m.add", json!([1, 1])).into()]))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(db.client.result(rolled.id).info().await.unwrap().is_none());

    let w = RunningWorker::start(
        &db,
        math_registry(RunLog::default()),
        test_worker_config(&["celery"], 4),
    );
    // 21 → [42, 22] → 64
    assert_eq!(
        db.client
            .result(id)
            .get(Duration::from_secs(20))
            .await
            .unwrap(),
        json!(64)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_unique_enqueues_make_one_task() {
    let db = TestDb::new().await;
    let results = futures_util::future::join_all((0..50).map(|i| {
        let c = db.client.clone();
        async move {
            c.enqueue(t("report.build", json!([i])).unique("report:7", UniqueScope::Queued))
                .await
                .unwrap()
                .id()
        }
    }))
    .await;
    let distinct: HashSet<TaskId> = results.iter().copied().collect();
    assert_eq!(distinct.len(), 1, "every caller got the same task");
    let rows: i64 = db.scalar("SELECT count(*) FROM celeriac.tasks").await;
    assert_eq!(rows, 1);
    // And through the SQL API, concurrently, from separate connections.
    let sql_ids = futures_util::future::join_all((0..20).map(|_| {
        let pool = db.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT celeriac.enqueue('report.build', unique_key => 'report:7')",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    }))
    .await;
    assert!(sql_ids.iter().all(|id| TaskId(*id) == results[0]));
    // Bulk enqueue with repeated keys: one row per key.
    let ids = db
        .client
        .enqueue_many(vec![
            t("b", json!([])).unique("k1", UniqueScope::Queued),
            t("b", json!([])).unique("k1", UniqueScope::Queued),
            t("b", json!([])).unique("k2", UniqueScope::Queued),
        ])
        .await
        .unwrap();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_scopes_queued_active_and_window() {
    let db = TestDb::new().await;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut r = Registry::new();
    r.register("u.hold", move |_ctx: TaskContext| {
        let mut go = go_rx.clone();
        async move {
            let _ = go.wait_for(|g| *g).await;
            Ok(Value::Null)
        }
    });
    let queued = db
        .client
        .enqueue(t("u.hold", json!([])).unique("q", UniqueScope::Queued))
        .await
        .unwrap();
    let active = db
        .client
        .enqueue(t("u.hold", json!([])).unique("a", UniqueScope::Active))
        .await
        .unwrap();
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 4));
    eventually(Duration::from_secs(10), "both running", || async {
        (db.state(queued.id()).await == "STARTED" && db.state(active.id()).await == "STARTED")
            .then_some(())
    })
    .await;
    // 'queued': a running task no longer holds the key. 'active': it does.
    let q2 = db
        .client
        .enqueue(t("u.hold", json!([])).unique("q", UniqueScope::Queued))
        .await
        .unwrap();
    assert_ne!(q2.id(), queued.id());
    let a2 = db
        .client
        .enqueue(t("u.hold", json!([])).unique("a", UniqueScope::Active))
        .await
        .unwrap();
    assert_eq!(a2.id(), active.id());
    go_tx.send(true).unwrap();
    active.get(Duration::from_secs(10)).await.unwrap();
    // Finished: the key is free again.
    let a3 = db
        .client
        .enqueue(t("u.hold", json!([])).unique("a", UniqueScope::Active))
        .await
        .unwrap();
    assert_ne!(a3.id(), active.id());
    w.stop().await;

    // 'window': one per key per window, even after the first finished.
    let w1 = db
        .client
        .enqueue(t("x", json!([])).unique("w", UniqueScope::Window(3600.0)))
        .await
        .unwrap();
    db.client.revoke(w1.id(), false).await.unwrap();
    let w2 = db
        .client
        .enqueue(t("x", json!([])).unique("w", UniqueScope::Window(3600.0)))
        .await
        .unwrap();
    assert_eq!(w1.id(), w2.id());
    // A supplied id that exists is still an error.
    let id = TaskId::new();
    db.client.enqueue(t("x", json!([])).id(id)).await.unwrap();
    assert!(matches!(
        db.client.enqueue(t("x", json!([])).id(id)).await,
        Err(Error::DuplicateId(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_fence_expire_and_refuse_stale_holders() {
    let db = TestDb::new().await;
    let c = &db.client;
    let first = c
        .lock("res", Duration::from_millis(400))
        .unwrap()
        .acquire()
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.lock("res", Duration::from_secs(5))
            .unwrap()
            .acquire()
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(first.extend(Duration::from_millis(400)).await.unwrap());
    // Wait for it to expire: the waiter gets it once the TTL runs out, with a larger token.
    let t0 = std::time::Instant::now();
    let second = c
        .lock("res", Duration::from_secs(5))
        .unwrap()
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap()
        .expect("acquired after expiry");
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(second.token() > first.token());
    // The expired holder can neither extend nor release what it lost.
    assert!(!first.extend(Duration::from_secs(5)).await.unwrap());
    assert!(!first.release().await.unwrap());
    // A waiter is woken by the release (well before the 5 s TTL).
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.lock("res", Duration::from_secs(5))
            .unwrap()
            .wait(Duration::from_secs(10))
            .acquire()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released_at = std::time::Instant::now();
    let t2 = second.token();
    assert!(second.release().await.unwrap());
    let third = waiter.await.unwrap().unwrap().unwrap();
    assert!(
        released_at.elapsed() < Duration::from_secs(2),
        "woken by the release"
    );
    assert!(third.token() > t2);
    // SQL API.
    let tok: Option<i64> = db.scalar("SELECT celeriac.lock_acquire('res', 10)").await;
    assert!(tok.is_none(), "still held by `third`");
    assert!(third.release().await.unwrap());
    let tok: i64 = db
        .scalar("SELECT celeriac.lock_acquire('res', 10, wait => 1)")
        .await;
    assert!(tok > t2);
    let ok: bool = db
        .scalar(&format!("SELECT celeriac.lock_release('res', {})", tok - 1))
        .await;
    assert!(!ok, "an old token cannot release");
    let ok: bool = db
        .scalar(&format!("SELECT celeriac.lock_release('res', {tok})"))
        .await;
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_exclude_across_processes() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE held (token bigint, who int, at timestamptz DEFAULT clock_timestamp(), what text)").await;
    // Waiting out the 30 s without the lock is the failure this test looks for: say so.
    db.exec(
        "CREATE FUNCTION must_acquire() RETURNS bigint LANGUAGE plpgsql AS $$ \
         DECLARE t bigint := celeriac.lock_acquire('shared', 30, wait => 30); \
         BEGIN IF t IS NULL THEN RAISE EXCEPTION 'lock not acquired within 30 s'; END IF; \
         RETURN t; END $$",
    )
    .await;
    // Eight psql processes contend for one lock, each holding it for 100 ms.
    let script = |who: u32| {
        format!(
            "SELECT must_acquire() AS tok \\gset\n\
             INSERT INTO held (token, who, what) VALUES (:tok, {who}, 'in');\n\
             SELECT pg_sleep(0.1);\n\
             INSERT INTO held (token, who, what) VALUES (:tok, {who}, 'out');\n\
             SELECT celeriac.lock_release('shared', :tok);\n"
        )
    };
    let procs: Vec<_> = (0..8)
        .map(|who| {
            tokio::process::Command::new("psql")
                .args(["-v", "ON_ERROR_STOP=1", "-q", &db.url, "-f", "-"])
                .env("PGOPTIONS", "-c client_min_messages=warning")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map(|mut child| {
                    let mut stdin = child.stdin.take().unwrap();
                    let s = script(who);
                    (
                        child,
                        tokio::spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            stdin.write_all(s.as_bytes()).await.unwrap();
                        }),
                    )
                })
                .expect("psql must be installed (it comes with PostgreSQL)")
        })
        .collect();
    for (child, feed) in procs {
        feed.await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows: Vec<(i64, i32, String)> =
        sqlx::query_as("SELECT token, who, what FROM held ORDER BY at, what")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 16);
    // Strictly alternating in/out by the same holder: no overlap; tokens increase.
    let tokens: Vec<i64> = rows
        .chunks(2)
        .map(|p| {
            assert_eq!(
                (p[0].2.as_str(), p[1].2.as_str()),
                ("in", "out"),
                "overlap: {rows:?}"
            );
            assert_eq!((p[0].0, p[0].1), (p[1].0, p[1].1));
            p[0].0
        })
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
}

/// A failed attempt inside a longer transaction must not keep the lock row locked: in READ
/// COMMITTED an UPDATE that waited for a concurrent acquirer locks the row's new version before
/// re-checking it, and (before V7) kept that lock when the re-check failed, so the winner could
/// not release until the loser's transaction ended (which stalled `lock_acquire`'s waiters).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_race_leaves_no_row_lock_behind() {
    let db = TestDb::new().await;
    let mut winner = db.conn().await;
    let mut loser = db.conn().await;
    // The row exists and is free.
    let t: i64 = db.scalar("SELECT celeriac.lock_try('race', 30)").await;
    let _: bool = db
        .scalar(&format!("SELECT celeriac.lock_release('race', {t})"))
        .await;

    sqlx::query("BEGIN").execute(&mut winner).await.unwrap();
    let won: i64 = sqlx::query_scalar("SELECT celeriac.lock_try('race', 30)")
        .fetch_one(&mut winner)
        .await
        .unwrap();
    let loser_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut loser)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut loser).await.unwrap();
    let attempt = tokio::spawn(async move {
        let got: Option<i64> = sqlx::query_scalar("SELECT celeriac.lock_try('race', 30)")
            .fetch_one(&mut loser)
            .await
            .unwrap();
        (got, loser)
    });
    // The loser's UPDATE waits for the winner's transaction.
    let waiting = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {loser_pid} AND wait_event_type = 'Lock')"
    );
    eventually(Duration::from_secs(10), "the loser to wait", || async {
        db.scalar::<bool>(&waiting).await.then_some(())
    })
    .await;
    sqlx::query("COMMIT").execute(&mut winner).await.unwrap();
    let (got, mut loser) = attempt.await.unwrap();
    assert_eq!(got, None, "the lock was taken");
    // The loser's transaction is still open; the winner must still be able to release.
    sqlx::query("SET lock_timeout = '5s'")
        .execute(&mut winner)
        .await
        .unwrap();
    let released: bool = sqlx::query_scalar("SELECT celeriac.lock_release('race', $1)")
        .bind(won)
        .fetch_one(&mut winner)
        .await
        .expect("release blocked by the loser's open transaction");
    assert!(released);
    sqlx::query("ROLLBACK").execute(&mut loser).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_can_use_locks() {
    let db = TestDb::new().await;
    let mut r = Registry::new();
    r.register("l.critical", |ctx: TaskContext| async move {
        let guard = ctx
            .lock("critical", Duration::from_secs(30))?
            .wait(Duration::from_secs(30))
            .acquire()
            .await
            .map_err(|e| TaskError::fail("LockError", e.to_string()))?
            .ok_or_else(|| TaskError::fail("LockTimeout", "no lock"))?;
        let token = guard.token();
        tokio::time::sleep(Duration::from_millis(30)).await;
        guard
            .release()
            .await
            .map_err(|e| TaskError::fail("LockError", e.to_string()))?;
        Ok(json!(token))
    });
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 8));
    let ids = db
        .client
        .enqueue_many((0..8).map(|_| NewTask::new("l.critical")).collect())
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for id in ids {
        tokens.push(
            db.client
                .result(id)
                .get(Duration::from_secs(30))
                .await
                .unwrap()
                .as_i64()
                .unwrap(),
        );
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 8, "each task held the lock in its own tenure");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_does_workflows_unique_tasks_and_locks() {
    let db = TestDb::new().await;
    let python = std::env::var("CELERIAC_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("CELERIAC_TEST_PYTHON is not set: run the tests through scripts/test")
    });
    let w = RunningWorker::start(
        &db,
        math_registry(RunLog::default()),
        test_worker_config(&["celery"], 8),
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/flow_check.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("CELERIAC_DATABASE_URL", &db.url)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(v["chain"], json!(20));
    assert_eq!(v["pipe"], json!(4));
    assert_eq!(v["immutable"], json!(10));
    assert_eq!(v["group"], json!([0, 2, 4]));
    assert_eq!(v["group_state"], json!(["SUCCESS", 3]));
    assert_eq!(v["chord"], json!(6));
    assert_eq!(v["nested"], json!(18));
    assert_eq!(v["failure"], json!("ValueError"));
    assert_eq!(v["unique_same"], json!(true));
    assert_eq!(v["lock_busy"], json!(false));
    assert_eq!(v["lock_waited"], json!(true));
    assert_eq!(v["tokens_grow"], json!(true));
    assert_eq!(v["stale_extend"], json!(false));
    assert_eq!(v["stale_release"], json!(false));
    assert_eq!(v["not_acquired"], json!(true));
    w.stop().await;
}
