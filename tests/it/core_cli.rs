//! The `celeriac` binary: commands, error handling, and worker processes killed or stopped by
//! signals. Also the `http.request` built-in against a real local HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use celeriac::Registry;
use celeriac::task::{NewTask, TaskId};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn call_result_inspect_revoke_purge() {
    let db = TestDb::new().await;
    let (code, out, err) = cli(
        &db,
        &[
            "call",
            "celeriac.echo",
            "--args",
            "[1,2]",
            "--kwargs",
            "{\"a\":1}",
            "--queue",
            "q1",
            "--priority",
            "3",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let id: TaskId = out.trim().parse().unwrap();
    let (code, out, _) = cli(&db, &["result", &id.to_string()]).await;
    assert_eq!(code, 0);
    assert!(out.contains("state:    PENDING"), "{out}");

    let (code, out, _) = cli(&db, &["inspect", "queues", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let q1 = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "q1")
        .unwrap();
    assert_eq!(q1["ready"], 1);

    let mut worker = spawn_worker_process(&db, &["-Q", "q1,q2", "-c", "2"]);
    let (code, out, err) = cli(&db, &["result", &id.to_string(), "--wait", "10s", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["celery_state"], "SUCCESS");
    assert_eq!(rec["result"], json!({"args": [1, 2], "kwargs": {"a": 1}}));

    let (_, out, _) = cli(&db, &["inspect", "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["queues"], json!(["q1", "q2"]));
    assert_eq!(workers[0]["concurrency"], 2);
    let (_, out, _) = cli(&db, &["inspect"]).await;
    assert!(
        out.contains("QUEUE") && out.contains("WORKER") && out.contains("TASK"),
        "{out}"
    );

    // A failing task: result exits 1 and shows the error.
    let (_, out, _) = cli(&db, &["call", "celeriac.fail", "--queue", "q2"]).await;
    let (code, out, _) = cli(&db, &["result", out.trim(), "--wait", "10"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("TaskFailure"), "{out}");

    // Revoke a task that waits (countdown), running one with --terminate.
    let (_, out, _) = cli(
        &db,
        &[
            "call",
            "celeriac.noop",
            "--queue",
            "q1",
            "--countdown",
            "1h",
        ],
    )
    .await;
    let (code, out, _) = cli(&db, &["revoke", out.trim()]).await;
    assert_eq!(code, 0);
    assert!(out.trim().ends_with("REVOKED"), "{out}");
    let (_, out, _) = cli(
        &db,
        &["call", "celeriac.sleep", "--args", "[60]", "--queue", "q1"],
    )
    .await;
    let sleeper: TaskId = out.trim().parse().unwrap();
    eventually(Duration::from_secs(10), "sleeper running", || async {
        (db.state(sleeper).await == "STARTED").then_some(())
    })
    .await;
    let (code, _, _) = cli(&db, &["revoke", &sleeper.to_string(), "--terminate"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = cli(&db, &["result", &sleeper.to_string(), "--wait", "10"]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("REVOKED") && out.contains("terminated"),
        "{out}"
    );

    // Pause: nothing is claimed from a paused queue; resume wakes it.
    let (code, _, _) = cli(&db, &["pause", "q2"]).await;
    assert_eq!(code, 0);
    let (_, out, _) = cli(&db, &["call", "celeriac.noop", "--queue", "q2"]).await;
    let paused_task: TaskId = out.trim().parse().unwrap();
    let (code, _, _) = cli(
        &db,
        &["result", &paused_task.to_string(), "--wait", "1500ms"],
    )
    .await;
    assert_eq!(code, 1, "a paused queue's task ran");
    assert_eq!(db.state(paused_task).await, "PENDING");
    cli(&db, &["resume", "q2"]).await;
    let (code, _, _) = cli(&db, &["result", &paused_task.to_string(), "--wait", "10"]).await;
    assert_eq!(code, 0);

    signal(&worker, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    for _ in 0..3 {
        cli(&db, &["call", "celeriac.noop", "--queue", "drop-me"]).await;
    }
    let (code, out, _) = cli(&db, &["purge", "drop-me"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("purged 3 task(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_one_line_and_a_nonzero_exit() {
    let db = TestDb::new().await;
    let cases: &[&[&str]] = &[
        &["call", "x", "--args", "{bad"],
        &["call", "x", "--kwargs", "[1]"],
        &["call", "x", "--args", "{\"a\":1}"],
        &["call", "x", "--priority", "300"],
        &["call", "x", "--countdown", "soon"],
        &["call", "x", "--bogus"],
        &["result", "not-a-uuid"],
        &["result", &TaskId::new().to_string()],
        &["worker", "-c", "zero"],
        &["nonsense"],
    ];
    for args in cases {
        let (code, out, err) = cli(&db, args).await;
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(out.is_empty(), "{args:?} printed to stdout: {out}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?} → {err}");
        assert!(lines[0].starts_with("error"), "{args:?} → {err}");
    }
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks")
            .await,
        0
    );
    // No database configured at all.
    let out = tokio::process::Command::new(bin())
        .args(["call", "x"])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_task_then_the_task_runs_again_once() {
    let db = TestDb::new().await;
    let task = db
        .client
        .enqueue(NewTask::new("celeriac.sleep").kwargs(json!({"seconds": 1.5})))
        .await
        .unwrap();
    let mut doomed =
        spawn_worker_process(&db, &["-c", "1", "--heartbeat", "300ms", "--lease", "2s"]);
    eventually(
        Duration::from_secs(15),
        "the task started in the doomed worker",
        || async { (db.state(task.id()).await == "STARTED").then_some(()) },
    )
    .await;
    signal(&doomed, Signal::SIGKILL);
    doomed.wait().await.unwrap();
    let killed_at = std::time::Instant::now();
    // A surviving worker (with maintenance) rescues it once the lease is over and runs it.
    let survivor = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 2),
    );
    assert_eq!(task.get(Duration::from_secs(30)).await.unwrap(), json!(1.5));
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    let rec = task.info().await.unwrap().unwrap();
    assert_eq!((rec.attempt, rec.lost, rec.retries), (2, 1, 0));
    survivor.stop().await;
    let dead_rows: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE state <> 'SUCCESS'")
        .await;
    assert_eq!(dead_rows, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_running_tasks_finish_and_loses_nothing() {
    let db = TestDb::new().await;
    let ids = db
        .client
        .enqueue_many(
            (0..12)
                .map(|_| NewTask::new("celeriac.sleep").args(json!([0.8])))
                .collect(),
        )
        .await
        .unwrap();
    let mut worker = spawn_worker_process(&db, &["-c", "4"]);
    eventually(Duration::from_secs(15), "4 tasks running", || async {
        let running: i64 = db
            .scalar("SELECT count(*) FROM celeriac.tasks WHERE state = 'STARTED'")
            .await;
        (running == 4).then_some(())
    })
    .await;
    signal(&worker, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let done: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE state = 'SUCCESS'")
        .await;
    let waiting: i64 = db
        .scalar("SELECT count(*) FROM celeriac.tasks WHERE state = 'PENDING'")
        .await;
    assert!(done >= 4, "the running tasks finished ({done})");
    assert_eq!(
        done + waiting,
        12,
        "nothing lost: {done} done + {waiting} waiting"
    );
    let workers: i64 = db.scalar("SELECT count(*) FROM celeriac.workers").await;
    assert_eq!(workers, 0, "the worker deregistered");
    // Another worker finishes the rest.
    let w = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 8),
    );
    for id in ids {
        db.client
            .result(id)
            .get(Duration::from_secs(20))
            .await
            .unwrap();
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_after_the_grace_period_hands_tasks_back() {
    let db = TestDb::new().await;
    let long = db
        .client
        .enqueue(NewTask::new("celeriac.sleep").args(json!([120])))
        .await
        .unwrap();
    let mut worker = spawn_worker_process(&db, &["-c", "2", "--grace", "500ms"]);
    eventually(Duration::from_secs(15), "task running", || async {
        (db.state(long.id()).await == "STARTED").then_some(())
    })
    .await;
    signal(&worker, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let rec = long.info().await.unwrap().unwrap();
    assert_eq!(
        rec.celery_state, "PENDING",
        "handed back, not lost or failed"
    );
    assert_eq!((rec.retries, rec.lost), (0, 0));
    // Twice SIGTERM stops at once (second signal = hard stop).
    let mut worker = spawn_worker_process(&db, &["-c", "2", "--grace", "60s"]);
    eventually(Duration::from_secs(15), "task running again", || async {
        (db.state(long.id()).await == "STARTED").then_some(())
    })
    .await;
    signal(&worker, Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&worker, Signal::SIGINT);
    let status = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(long.state().await.unwrap(), "PENDING");
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_starts_a_private_postgres_and_runs_tasks() {
    // Under the system temporary directory, not target/: the server runs as `postgres` when
    // the tests run as root, and the checkout may sit in a directory it cannot enter.
    let dir = tempfile::Builder::new().prefix("dev").tempdir().unwrap();
    crate::core_worker::make_traversable(dir.path());
    let data = dir.path().join("pgdata");
    let mut dev = tokio::process::Command::new(bin())
        .args(["dev", "--data-dir", data.to_str().unwrap(), "-c", "2"])
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        let mut url = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("celeriac dev: private PostgreSQL at ") {
                url = rest.split_whitespace().next().map(str::to_string);
            }
            if line.contains("worker started") {
                break;
            }
        }
        url
    })
    .await
    .expect("dev did not start within 60 s")
    .expect("dev did not print its database URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let out = tokio::process::Command::new(bin())
        .args(["call", "celeriac.echo", "--args", "[\"dev\"]"])
        .env("DATABASE_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = tokio::process::Command::new(bin())
        .args(["result", &id, "--wait", "20s", "--json"])
        .env("DATABASE_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["result"]["args"], json!(["dev"]));
    signal(&dev, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        !data.join("postmaster.pid").exists(),
        "dev left its PostgreSQL running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_prints_one_json_line_per_measure() {
    let db = TestDb::new().await;
    let (code, out, err) = cli(
        &db,
        &[
            "bench",
            "--tasks",
            "300",
            "--singles",
            "20",
            "--latency-tasks",
            "5",
            "--latency-gap",
            "5ms",
            "--raw-duration",
            "200ms",
            "--concurrency",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let measures: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["measure"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for m in [
        "insert_commit",
        "single_enqueue",
        "bulk_enqueue",
        "drain",
        "worker_rss",
        "raw_claim_delete_100",
        "latency",
    ] {
        assert!(measures.iter().any(|x| x == m), "missing {m} in {out}");
    }
    let schemas: i64 = db
        .scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'celeriac_bench'")
        .await;
    assert_eq!(schemas, 0, "the scratch schema is dropped");
}

/// A local HTTP server for `http.request`: /ok answers JSON, /missing 404, /flaky 503 twice
/// then 200 (with Retry-After: 0), /slow answers after 5 s.
async fn http_server() -> (SocketAddr, Arc<AtomicU32>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    let flaky = Arc::new(AtomicU32::new(0));
    let f = flaky.clone();
    let app = axum::Router::new()
        .route(
            "/ok",
            post(|headers: HeaderMap, body: axum::Json<Value>| async move {
                axum::Json(json!({"got": body.0, "auth": headers.get("x-token").and_then(|v| v.to_str().ok())}))
            }),
        )
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no such thing") }))
        .route(
            "/flaky",
            get(move || {
                let f = f.clone();
                async move {
                    if f.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "later").into_response()
                    } else {
                        (StatusCode::OK, [("retry-after", "0")], "{\"fine\":true}").into_response()
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, flaky)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_request_builtin_against_a_real_server() {
    let db = TestDb::new().await;
    let (addr, flaky) = http_server().await;
    let w = RunningWorker::start(
        &db,
        Registry::with_builtins(),
        test_worker_config(&["celery"], 4),
    );
    let base = format!("http://{addr}");
    let ok = db
        .client
        .enqueue(NewTask::new("http.request").kwargs(json!({
            "method": "POST", "url": format!("{base}/ok"), "json": {"n": 1},
            "headers": {"x-token": "secret"}
        })))
        .await
        .unwrap();
    let v = ok.get(Duration::from_secs(10)).await.unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["json"], json!({"got": {"n": 1}, "auth": "secret"}));

    let missing = db
        .client
        .enqueue(NewTask::new("http.request").kwargs(json!({"url": format!("{base}/missing")})))
        .await
        .unwrap();
    let err = missing.get(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, celeriac::Error::TaskFailed { error_type, message, .. } if error_type == "HttpError" && message.contains("404")),
        "{err}"
    );
    assert_eq!(
        missing.info().await.unwrap().unwrap().retries,
        0,
        "4xx is not retried"
    );

    let flaky_task = db
        .client
        .enqueue(
            NewTask::new("http.request")
                .kwargs(json!({"url": format!("{base}/flaky")}))
                .max_retries(5),
        )
        .await
        .unwrap();
    let v = flaky_task.get(Duration::from_secs(10)).await.unwrap();
    assert_eq!(v["json"], json!({"fine": true}));
    assert_eq!(flaky_task.info().await.unwrap().unwrap().retries, 2);
    assert_eq!(flaky.load(Ordering::SeqCst), 3);

    let slow = db
        .client
        .enqueue(
            NewTask::new("http.request")
                .kwargs(json!({"url": format!("{base}/slow"), "timeout": 0.2}))
                .max_retries(1)
                .retry_delay(0.0),
        )
        .await
        .unwrap();
    let err = slow.get(Duration::from_secs(15)).await.unwrap_err();
    assert!(
        matches!(&err, celeriac::Error::TaskFailed { error_type, .. } if error_type == "Timeout"),
        "{err}"
    );
    assert_eq!(
        slow.info().await.unwrap().unwrap().retries,
        1,
        "timeouts are retried"
    );
    w.stop().await;
}
