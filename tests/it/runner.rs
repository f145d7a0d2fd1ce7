//! Issue 4: routing, the HTTP webhook executor (against real local HTTP servers), and the
//! supervised process pool running the Django project in tests/djapp through the Python
//! package (python/), with real child processes and real PostgreSQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use celeriac::conffile::ConfigFile;
use celeriac::executor::process::{PoolConfig, ProcessPool};
use celeriac::executor::routes::{PoolFlags, RoutesSection, Routing};
use celeriac::executor::webhook::{Webhook, WebhookConfig, http_client};
use celeriac::registry::TaskOptions;
use celeriac::task::{RetryPolicy, TaskRecord};
use celeriac::{NewTask, Registry, TaskId};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::*;

const SECRET: &str = "test-secret-1";

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

/// The test venv's Python (scripts/test-env.sh). Missing → fail loudly, never skip.
fn python() -> String {
    std::env::var("CELERIAC_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CELERIAC_TEST_PYTHON is not set: run the tests through scripts/test, which creates \
             target/venv (Python >= 3.12 with Django 6, Celery, psycopg and ./python installed)"
        )
    })
}

fn djapp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/djapp")
}

/// Run `python tests/djapp/<script> args…` against `db`; the last stdout line as JSON.
async fn py(db: &TestDb, script: &str, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(djapp().join(script))
        .args(args)
        .current_dir(djapp())
        .env("CELERIAC_DJANGO_DB", &db.url)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {stderr}\n{stdout}"
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} {args:?}: {e}: {stdout}\n{stderr}"))
}

async fn drive(db: &TestDb, args: &[&str]) -> Value {
    py(db, "drive.py", args).await
}

/// Create the Django project's tables in the test database (beside Celeriac's schema).
async fn django_migrate(db: &TestDb) {
    let out = tokio::process::Command::new(python())
        .args(["manage.py", "migrate", "-v0"])
        .current_dir(djapp())
        .env("CELERIAC_DJANGO_DB", &db.url)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "manage.py migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pool child command for the test project on `db`.
fn runner_command(db: &TestDb) -> String {
    format!(
        "env CELERIAC_DJANGO_DB='{}' '{}' -m celeriac.runner --path '{}' --django djapp.settings",
        db.url,
        python(),
        djapp().display()
    )
}

fn routes(toml: &str) -> Option<RoutesSection> {
    ConfigFile::parse(toml).unwrap().section("routes").unwrap()
}

/// An in-process worker whose unrouted tasks run in a pool of `processes` children.
async fn pool_worker(
    db: &TestDb,
    processes: usize,
    section: Option<RoutesSection>,
) -> (RunningWorker, Routing) {
    let routing = Routing::build(
        Registry::with_builtins(),
        section,
        PoolFlags {
            process_default: true,
            exec: Some(runner_command(db)),
            concurrency: processes,
            ..PoolFlags::default()
        },
    )
    .await
    .expect("starting the process pool");
    let worker = RunningWorker::start(
        db,
        routing.registry.clone(),
        test_worker_config(&["celery", "default"], processes),
    );
    (worker, routing)
}

async fn finished(db: &TestDb, id: TaskId) -> TaskRecord {
    let r = db.client.result(id);
    let _ = r.get(Duration::from_secs(60)).await;
    let rec = r.info().await.unwrap().expect("task row");
    assert!(
        rec.state.is_finished(),
        "task {id} ({}) did not finish: {rec:?}",
        rec.name
    );
    rec
}

async fn run(db: &TestDb, task: NewTask) -> TaskRecord {
    let id = db.client.enqueue(task).await.unwrap().id();
    finished(db, id).await
}

fn id_of(v: &Value, key: &str) -> TaskId {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .parse()
        .unwrap()
}

fn error_type(rec: &TaskRecord) -> String {
    rec.error
        .as_ref()
        .map(|e| e.kind.clone())
        .unwrap_or_default()
}

fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

// ─── HTTP webhooks ──────────────────────────────────────────────────────────────────────────────

#[derive(Default)]
struct Receiver {
    /// Requests per path.
    hits: HashMap<String, u32>,
    /// When each request arrived, per path.
    times: HashMap<String, Vec<Instant>>,
    /// Peer addresses of the /ok requests (to see connection reuse).
    peers: Vec<SocketAddr>,
    /// Requests rejected for a bad signature.
    bad_signatures: u32,
    /// Envelopes received on /ok.
    envelopes: Vec<Value>,
}

fn verify(headers: &axum::http::HeaderMap, body: &[u8], secret: &str) -> bool {
    let ts = headers
        .get("x-celeriac-timestamp")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sig = headers
        .get("x-celeriac-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("v1="))
        .unwrap_or("");
    let Ok(ts_n) = ts.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts_n).abs() > 300 {
        return false; // a replay
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    mac.verify_slice(&sig).is_ok()
}

/// A receiver on 127.0.0.1:<port> verifying every request's signature.
async fn start_receiver() -> (String, Arc<Mutex<Receiver>>) {
    use axum::extract::{ConnectInfo, Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    type S = Arc<Mutex<Receiver>>;
    async fn handle(
        State(s): State<S>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        if !verify(&headers, &body, SECRET) {
            s.lock().unwrap().bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
        let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let n = {
            let mut r = s.lock().unwrap();
            let n = r.hits.entry(path.clone()).or_default();
            *n += 1;
            let n = *n;
            r.times
                .entry(path.clone())
                .or_default()
                .push(Instant::now());
            if path == "ok" {
                r.peers.push(peer);
                r.envelopes.push(envelope.clone());
            }
            n
        };
        match path.as_str() {
            "ok" => axum::Json(json!({"received": envelope})).into_response(),
            "text" => "plain answer".into_response(),
            "reject" => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(
                    json!({"type": "ValidationError", "message": "amount must be positive"}),
                ),
            )
                .into_response(),
            "flaky" if n <= 2 => {
                (StatusCode::SERVICE_UNAVAILABLE, "down for a moment").into_response()
            }
            "flaky" => axum::Json(json!({"after": n})).into_response(),
            "limited" if n == 1 => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response(),
            "limited" => axum::Json(json!({"after": n})).into_response(),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::Json(json!("too late")).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let state: S = Arc::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (format!("http://{addr}"), state)
}

fn hook(url: &str, secret: &str, timeout: f64) -> Webhook {
    Webhook::with_secret(
        WebhookConfig {
            url: url.into(),
            secret_env: String::new(),
            timeout: Duration::from_secs_f64(timeout),
            headers: Default::default(),
            client: http_client(),
        },
        secret.as_bytes(),
    )
    .unwrap()
}

fn retry(max_retries: u32, delay: f64, backoff: f64) -> TaskOptions {
    TaskOptions {
        retry: Some(RetryPolicy {
            max_retries,
            delay,
            backoff,
            backoff_max: 1.0,
            jitter: false,
        }),
        ..TaskOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_answers_map_to_outcomes() {
    init_logs();
    let db = TestDb::new().await;
    let (base, recv) = start_receiver().await;
    let mut reg = Registry::with_builtins();
    reg.register_with(
        "hook.ok",
        retry(0, 0.0, 0.0),
        hook(&format!("{base}/ok"), SECRET, 5.0),
    );
    reg.register_with(
        "hook.text",
        retry(0, 0.0, 0.0),
        hook(&format!("{base}/text"), SECRET, 5.0),
    );
    reg.register_with(
        "hook.reject",
        retry(5, 0.0, 0.0),
        hook(&format!("{base}/reject"), SECRET, 5.0),
    );
    reg.register_with(
        "hook.flaky",
        retry(5, 0.0, 0.1),
        hook(&format!("{base}/flaky"), SECRET, 5.0),
    );
    // The policy alone would wait 5 minutes: only Retry-After explains a retry within seconds.
    reg.register_with(
        "hook.limited",
        retry(3, 300.0, 0.0),
        hook(&format!("{base}/limited"), SECRET, 5.0),
    );
    reg.register_with(
        "hook.slow",
        retry(1, 0.0, 0.0),
        hook(&format!("{base}/slow"), SECRET, 0.3),
    );
    reg.register_with(
        "hook.badsig",
        retry(5, 0.0, 0.0),
        hook(&format!("{base}/ok"), "wrong-secret", 5.0),
    );
    reg.register_with(
        "hook.down",
        retry(1, 0.0, 0.0),
        hook("http://127.0.0.1:9/ok", SECRET, 2.0),
    );
    let worker = RunningWorker::start(&db, reg, test_worker_config(&["celery"], 8));

    // 2xx → SUCCESS with the answer's JSON; the envelope carries everything the issue lists.
    let ok = run(
        &db,
        NewTask::new("hook.ok")
            .args(json!([1, "two"]))
            .kwargs(json!({"k": true}))
            .headers(json!({"periodic_task_name": "nightly-report", "x": 1})),
    )
    .await;
    assert_eq!(ok.state.as_str(), "SUCCESS", "{ok:?}");
    let env = &ok.result.as_ref().unwrap()["received"];
    assert_eq!(env["id"], json!(ok.id.to_string()));
    assert_eq!(env["task"], json!("hook.ok"));
    assert_eq!(env["args"], json!([1, "two"]));
    assert_eq!(env["kwargs"], json!({"k": true}));
    assert_eq!(env["retries"], json!(0));
    assert_eq!(env["attempt"], json!(1));
    assert_eq!(env["eta"], Value::Null);
    assert_eq!(env["headers"]["x"], json!(1));
    assert_eq!(env["periodic_task_name"], json!("nightly-report"));
    // A countdown gives an eta.
    let later = run(&db, NewTask::new("hook.ok").countdown(0.2)).await;
    assert!(
        later.result.as_ref().unwrap()["received"]["eta"].is_string(),
        "{later:?}"
    );
    // Pooled connections: sequential requests reuse one connection.
    run(&db, NewTask::new("hook.ok")).await;
    {
        let r = recv.lock().unwrap();
        assert_eq!(r.peers.len(), 3);
        assert!(
            r.peers.windows(2).any(|w| w[0] == w[1]),
            "no connection was reused: {:?}",
            r.peers
        );
    }
    let text = run(&db, NewTask::new("hook.text")).await;
    assert_eq!(text.result, Some(json!("plain answer")));

    // 4xx → FAILURE at once (no retry), with the receiver's own error description.
    let rejected = run(&db, NewTask::new("hook.reject")).await;
    assert_eq!(rejected.state.as_str(), "FAILURE");
    assert_eq!((rejected.attempt, rejected.retries), (1, 0));
    assert_eq!(error_type(&rejected), "ValidationError");
    assert!(
        rejected
            .error
            .as_ref()
            .unwrap()
            .traceback
            .as_ref()
            .unwrap()
            .contains("422")
    );

    // 5xx twice, then 200 → SUCCESS after two retries.
    let flaky = run(&db, NewTask::new("hook.flaky")).await;
    assert_eq!(flaky.state.as_str(), "SUCCESS", "{flaky:?}");
    assert_eq!(flaky.retries, 2);
    assert_eq!(flaky.result, Some(json!({"after": 3})));

    // 429 + Retry-After: 1 → retried after about a second, not after the policy's 5 minutes.
    let limited = run(&db, NewTask::new("hook.limited")).await;
    assert_eq!(limited.state.as_str(), "SUCCESS", "{limited:?}");
    assert_eq!(limited.retries, 1);
    {
        let r = recv.lock().unwrap();
        let t = &r.times["limited"];
        let gap = t[1] - t[0];
        assert!(
            gap >= Duration::from_millis(900),
            "retried after {gap:?}, before Retry-After"
        );
    }

    // Timeout → retried; out of retries → FAILURE Timeout (not a hard TimeLimitExceeded).
    let slow = run(&db, NewTask::new("hook.slow")).await;
    assert_eq!(slow.state.as_str(), "FAILURE");
    assert_eq!(error_type(&slow), "Timeout", "{slow:?}");
    assert_eq!(slow.retries, 1);

    // A bad signature is rejected by the receiver (401): FAILURE, no retry.
    let bad = run(&db, NewTask::new("hook.badsig")).await;
    assert_eq!(bad.state.as_str(), "FAILURE");
    assert_eq!((bad.attempt, bad.retries), (1, 0));
    assert!(
        bad.error.as_ref().unwrap().message.contains("401"),
        "{bad:?}"
    );
    assert_eq!(recv.lock().unwrap().bad_signatures, 1);

    // Connection refused → retried, then FAILURE ConnectionError.
    let down = run(&db, NewTask::new("hook.down")).await;
    assert_eq!(error_type(&down), "ConnectionError", "{down:?}");
    assert_eq!(down.retries, 1);

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_to_the_documented_django_view() {
    init_logs();
    let db = TestDb::new().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new(python())
        .args(["manage.py", "runserver", "--noreload", "--skip-checks"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(djapp())
        .env("CELERIAC_DJANGO_DB", &db.url)
        .env("CELERIAC_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "Django's runserver to listen",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/celeriac/");
    let mut reg = Registry::new();
    reg.register_with("view.good", retry(3, 0.0, 0.0), hook(&url, SECRET, 10.0));
    reg.register_with(
        "view.forged",
        retry(3, 0.0, 0.0),
        hook(&url, "not-the-secret", 10.0),
    );
    let worker = RunningWorker::start(&db, reg, test_worker_config(&["celery"], 2));
    let good = run(&db, NewTask::new("view.good").args(json!([42]))).await;
    assert_eq!(good.state.as_str(), "SUCCESS", "{good:?}");
    assert_eq!(
        good.result,
        Some(json!({"handled": "view.good", "args": [42]}))
    );
    let forged = run(&db, NewTask::new("view.forged")).await;
    assert_eq!(forged.state.as_str(), "FAILURE");
    assert_eq!((forged.attempt, forged.retries), (1, 0));
    assert!(
        forged.error.as_ref().unwrap().message.contains("403"),
        "{forged:?}"
    );
    worker.stop().await;
    let _ = server.kill().await;
}

// ─── the process pool ───────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_runs_django_orm_tasks_enqueued_in_transactions() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let (worker, routing) = pool_worker(&db, 2, None).await;

    let rolled_back = drive(&db, &["atomic", "rollback"]).await;
    let committed = drive(&db, &["atomic", "commit"]).await;
    let done = finished(&db, id_of(&committed, "task_id")).await;
    assert_eq!(done.state.as_str(), "SUCCESS", "{done:?}");
    let order_id = committed["order_id"].to_string();
    // The child's ORM write is visible.
    let order = drive(&db, &["order", &order_id]).await;
    assert_eq!(order["exists"], json!(true));
    let pid = done.result.as_ref().unwrap()["pid"].as_i64().unwrap();
    assert_eq!(order["processed_by"], json!(format!("pid:{pid}")));
    assert!(
        routing
            .pool
            .as_ref()
            .unwrap()
            .idle_pids()
            .contains(&(pid as u32))
    );
    // The Python client's AsyncResult.get waits (LISTEN) and returns the result.
    let got = drive(&db, &["get", committed["task_id"].as_str().unwrap(), "30"]).await;
    assert_eq!(got["state"], json!("SUCCESS"));
    assert_eq!(got["result"]["order"], committed["order_id"]);

    // The rolled-back enqueue never existed: no row, no run, no order.
    let rid = id_of(&rolled_back, "task_id");
    let rows: i64 = db
        .scalar(&format!(
            "SELECT count(*) FROM celeriac.tasks WHERE id = '{rid}'"
        ))
        .await;
    assert_eq!(rows, 0);
    let gone = drive(&db, &["order", &rolled_back["order_id"].to_string()]).await;
    assert_eq!(gone["exists"], json!(false));
    let ran = drive(
        &db,
        &["events", &format!("processed:{}", rolled_back["order_id"])],
    )
    .await;
    assert_eq!(ran["count"], json!(0));

    worker.stop().await;
    routing.shutdown().await;
    assert!(!pid_alive(pid), "child {pid} outlived the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_survives_hard_limits_crashes_and_noisy_tasks() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let section = routes(
        r#"
[[routes.task]]
match = "shop.jobs.crash_and_retry"
executor = "process"
on_worker_lost = "retry"
max_retries = 1
retry_delay = 0
"#,
    );
    // One child: whatever happens to it, the next task must still run.
    let (worker, routing) = pool_worker(&db, 1, section).await;
    let pid_of = |r: &TaskRecord| r.result.as_ref().and_then(Value::as_i64).unwrap();

    let first = run(&db, NewTask::new("shop.jobs.pid")).await;
    let pid0 = pid_of(&first);

    // A runaway task is killed at its hard limit; its child is replaced.
    let runaway = run(&db, NewTask::new("shop.jobs.runaway").time_limit(1.0)).await;
    assert_eq!(runaway.state.as_str(), "FAILURE");
    assert_eq!(error_type(&runaway), "TimeLimitExceeded", "{runaway:?}");
    eventually(
        Duration::from_secs(10),
        "the runaway's child to be killed",
        || async { (!pid_alive(pid0)).then_some(()) },
    )
    .await;
    let after = run(&db, NewTask::new("shop.jobs.pid")).await;
    assert_eq!(after.state.as_str(), "SUCCESS");
    let pid1 = pid_of(&after);
    assert_ne!(pid1, pid0);

    // A child that dies mid-task: FAILURE WorkerLostError (default policy), ran once, and the
    // pool goes on with a fresh child.
    let crash = run(
        &db,
        NewTask::new("shop.jobs.crash").args(json!(["crash-1"])),
    )
    .await;
    assert_eq!(crash.state.as_str(), "FAILURE");
    assert_eq!(error_type(&crash), "WorkerLostError", "{crash:?}");
    assert!(
        crash
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("exited with code 1"),
        "{crash:?}"
    );
    assert_eq!((crash.attempt, crash.retries), (1, 0));
    assert_eq!(drive(&db, &["events", "crash-1"]).await["count"], json!(1));
    let next = run(&db, NewTask::new("shop.jobs.pid")).await;
    assert_eq!(next.state.as_str(), "SUCCESS");
    assert_ne!(pid_of(&next), pid1);

    // The same with on_worker_lost = "retry": run again (once, per max_retries), then FAILURE.
    let again = run(
        &db,
        NewTask::new("shop.jobs.crash_and_retry").args(json!(["crash-2"])),
    )
    .await;
    assert_eq!(error_type(&again), "WorkerLostError", "{again:?}");
    assert_eq!((again.attempt, again.retries), (2, 1));
    assert_eq!(drive(&db, &["events", "crash-2"]).await["count"], json!(2));

    // Soft limit: the task catches SoftTimeLimitExceeded, cleans up and returns.
    let soft = run(
        &db,
        NewTask::new("shop.jobs.soft_limited")
            .args(json!(["soft-1"]))
            .soft_time_limit(0.5)
            .time_limit(20.0),
    )
    .await;
    assert_eq!(soft.state.as_str(), "SUCCESS", "{soft:?}");
    assert_eq!(soft.result, Some(json!("cleaned up")));
    assert_eq!(drive(&db, &["events", "soft-1"]).await["count"], json!(1));

    // stdout noise (print, a forged protocol line, a raw write to fd 1) cannot corrupt the
    // protocol.
    let noisy = run(&db, NewTask::new("shop.jobs.noisy")).await;
    assert_eq!(noisy.state.as_str(), "SUCCESS", "{noisy:?}");
    assert_eq!(noisy.result, Some(json!("quiet result")));

    // A result that is not JSON, and names no child knows.
    let enc = run(&db, NewTask::new("shop.jobs.not_json")).await;
    assert_eq!(error_type(&enc), "EncodeError");
    for name in ["shop.jobs.nope", "nowhere.at.all", "plain"] {
        let nr = run(&db, NewTask::new(name)).await;
        assert_eq!(error_type(&nr), "NotRegistered", "{nr:?}");
    }
    // The built-ins still run in the worker itself.
    let echo = run(&db, NewTask::new("celeriac.echo").args(json!([1]))).await;
    assert_eq!(echo.state.as_str(), "SUCCESS");

    worker.stop().await;
    routing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn existing_celery_task_module_runs_unchanged() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let (worker, routing) = pool_worker(&db, 2, None).await;
    // Enqueued through the unchanged call sites (`.delay()`, `.apply_async()`) routed to Celeriac.
    let ids = drive(&db, &["celery"]).await;

    let add = finished(&db, id_of(&ids, "add")).await;
    assert_eq!(add.result, Some(json!(5)), "{add:?}");

    // bind=True: self.request.retries/args, update_state, self.retry(exc=, countdown=).
    let flaky = finished(&db, id_of(&ids, "flaky")).await;
    assert_eq!(flaky.state.as_str(), "SUCCESS", "{flaky:?}");
    assert_eq!(flaky.retries, 2);
    assert_eq!(
        flaky.result,
        Some(json!({"retries": 2, "args": ["flaky-1"], "name": "shop.tasks.flaky"}))
    );
    assert_eq!(flaky.progress, Some(json!({"retries": 2})));
    let events = drive(&db, &["events", "flaky-1"]).await;
    assert_eq!(events["count"], json!(3));
    assert_eq!(events["data"][0]["id"], json!(flaky.id.to_string()));

    // A task registered under a custom name (found in Celery's registry, not by path).
    let renamed = finished(&db, id_of(&ids, "renamed")).await;
    assert_eq!(renamed.result, Some(json!("renamed:x")), "{renamed:?}");

    // autoretry_for + retry_kwargs: retried once, then FAILURE with the original exception.
    let auto = finished(&db, id_of(&ids, "auto")).await;
    assert_eq!(auto.state.as_str(), "FAILURE");
    assert_eq!(error_type(&auto), "KeyError");
    assert_eq!(auto.retries, 1);
    assert_eq!(drive(&db, &["events", "auto-1"]).await["count"], json!(2));

    // The Python client reads results back like Celery's AsyncResult.
    let got = drive(&db, &["get", ids["flaky"].as_str().unwrap()]).await;
    assert_eq!(got["result"]["retries"], json!(2));
    let failed = drive(&db, &["get", ids["auto"].as_str().unwrap()]).await;
    assert_eq!(failed["error"], json!("KeyError"));

    worker.stop().await;
    routing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn django_tasks_round_trip() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let (worker, routing) = pool_worker(&db, 2, None).await;
    let ids = drive(&db, &["django-enqueue"]).await;
    assert_eq!(ids["status"], json!("READY"));
    for key in ["total", "with_context", "fails"] {
        finished(&db, id_of(&ids, key)).await;
    }
    let total = drive(
        &db,
        &["django-result", "total", ids["total"].as_str().unwrap()],
    )
    .await;
    assert_eq!(total["status"], json!("SUCCESSFUL"), "{total}");
    assert_eq!(total["value"], json!(5));
    assert_eq!(total["attempts"], json!(1));
    assert_eq!(total["finished"], json!(true));
    let ctx = drive(
        &db,
        &[
            "django-result",
            "with_context",
            ids["with_context"].as_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        ctx["value"],
        json!({"attempt": 1, "id": ids["with_context"], "x": 7})
    );
    let fails = drive(
        &db,
        &["django-result", "fails", ids["fails"].as_str().unwrap()],
    )
    .await;
    assert_eq!(fails["status"], json!("FAILED"));
    assert_eq!(
        fails["errors"],
        json!([{"path": "builtins.ValueError", "class": "ValueError"}])
    );
    worker.stop().await;
    routing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_recycles_children_over_their_memory_budget() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let pool = ProcessPool::start(PoolConfig {
        command: runner_command(&db),
        processes: 1,
        // Any Python process is bigger than 1 KiB: recycled after every task.
        max_memory_per_child_kib: Some(1),
        ..PoolConfig::default()
    })
    .await
    .unwrap();
    let mut reg = Registry::new();
    reg.insert(
        "*".into(),
        Arc::new(pool.executor(Default::default())),
        TaskOptions::default(),
    );
    let worker = RunningWorker::start(&db, reg, test_worker_config(&["celery"], 1));
    let a = run(&db, NewTask::new("shop.jobs.pid")).await;
    let b = run(&db, NewTask::new("shop.jobs.pid")).await;
    assert_eq!((a.state.as_str(), b.state.as_str()), ("SUCCESS", "SUCCESS"));
    assert_ne!(a.result, b.result, "the child was not recycled");
    worker.stop().await;
    pool.shutdown().await;
}

/// `celeriac worker --config routes.toml --pool process -c 1 --max-tasks-per-child 2`, as a
/// real process: webhook, built-in and pool routes from the file; unknown names NotRegistered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_worker_uses_the_routing_file_and_the_pool() {
    init_logs();
    let db = TestDb::new().await;
    django_migrate(&db).await;
    let (base, _recv) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("celeriac.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[routes.pool]
exec = "{exec}"

[[routes.task]]
match = "hooks.*"
executor = "http"
url = "{base}/ok"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[[routes.task]]
match = "celeriac.echo"
executor = "builtin"

[[routes.task]]
match = "shop.*"
executor = "process"
"#,
            exec = runner_command(&db)
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args([
            "worker",
            "-c",
            "2",
            "--max-tasks-per-child",
            "2",
            "--config",
        ])
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .env("TEST_HOOK_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let hooked = run(&db, NewTask::new("hooks.billing").args(json!([7]))).await;
    assert_eq!(hooked.state.as_str(), "SUCCESS", "{hooked:?}");
    assert_eq!(
        hooked.result.as_ref().unwrap()["received"]["args"],
        json!([7])
    );
    let echo = run(&db, NewTask::new("celeriac.echo").args(json!([1]))).await;
    assert_eq!(echo.state.as_str(), "SUCCESS");
    let unknown = run(&db, NewTask::new("billing.refund")).await;
    assert_eq!(error_type(&unknown), "NotRegistered", "{unknown:?}");
    // One task at a time, so both children serve in turn; each is replaced after 2 tasks.
    let mut pids = Vec::new();
    for _ in 0..6 {
        let r = run(&db, NewTask::new("shop.jobs.pid")).await;
        assert_eq!(r.state.as_str(), "SUCCESS", "{r:?}");
        pids.push(r.result.unwrap().as_i64().unwrap());
    }
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for p in &pids {
        *counts.entry(*p).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n <= 2),
        "a child ran more than 2 tasks: {pids:?}"
    );
    assert!(counts.len() >= 3, "children were not recycled: {pids:?}");

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("worker did not stop")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Orphans are reaped asynchronously: allow a moment.
    for p in pids {
        eventually(
            Duration::from_secs(10),
            &format!("child {p} to be gone with its worker"),
            || async { (!pid_alive(p)).then_some(()) },
        )
        .await;
    }
}
