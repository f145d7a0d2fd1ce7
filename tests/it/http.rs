//! The HTTP API, metrics and health endpoints against a real server on port 0 and a real
//! database: every endpoint's success and error paths, token scopes, the body limit, keyset
//! pagination while tasks are being inserted, the OpenAPI document (validated, and every
//! documented operation called), and the `serve` / `dev` commands.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use celeriac::http::{self, AppState, Secret, ServerConfig};
use celeriac::registry::{TaskContext, TaskError};
use celeriac::task::{ErrorInfo, NewTask, TaskId};
use celeriac::{Client, Registry};
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::common::*;

pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const READ: &str = "read-token-for-tests-0123456789";

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<celeriac::Result<()>>,
    pub http: reqwest::Client,
}

pub fn tokens() -> ServerConfig {
    ServerConfig {
        admin_token: Some(Secret::new(ADMIN)),
        read_token: Some(Secret::new(READ)),
        ..ServerConfig::default()
    }
}

impl TestServer {
    /// A server with both tokens on `db`.
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db.client.clone(), tokens()).await
    }

    pub async fn start_with(client: Client, cfg: ServerConfig) -> TestServer {
        let state = AppState::new(client, &cfg).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(http::serve(listener, state, stop.clone()));
        TestServer {
            addr,
            base: format!("http://{addr}"),
            stop,
            handle,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, Some(ADMIN), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(ADMIN), body)
            .await
    }

    /// Wait until task `id` has lifecycle state `state`; returns its detail.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        eventually(
            Duration::from_secs(20),
            &format!("task {id} {state}"),
            || async {
                let (s, v) = self.get(&format!("/api/v1/tasks/{id}")).await;
                (s == StatusCode::OK && v["state"] == state).then_some(v)
            },
        )
        .await
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Handlers the tests need besides the built-ins.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register("t.boom", |_ctx: TaskContext| async move {
        Err::<Value, _>(TaskError::Failed(
            ErrorInfo::new("ValueError", "boom").with_traceback(
                "Traceback (most recent call last):\n  File \"app.py\", line 3, in boom\nValueError: boom",
            ),
        ))
    });
    // Fails, except when it is a manual retry (its headers carry retry_of).
    r.register("t.flaky", |ctx: TaskContext| async move {
        if ctx.headers.get("retry_of").is_some() {
            Ok(json!("fixed"))
        } else {
            Err(TaskError::fail("Flaky", "fails until retried by hand"))
        }
    });
    r.register("t.retry_once", |ctx: TaskContext| async move {
        if ctx.retries == 0 {
            Err(ctx.retry(Some(0.0)))
        } else {
            Ok(json!({"retries": ctx.retries}))
        }
    });
    r
}

/// POST `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw connection;
/// returns the status code.
async fn chunked_post(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(64 * 1024) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and close before everything is sent.
        if s.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_takes_every_option_and_get_shows_them() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let id = uuid::Uuid::new_v4();
    let r = srv
        .http
        .post(srv.url("/api/v1/tasks"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "task": "emails.send", "args": [1, "two"], "kwargs": {"to": "a@example.com"},
            "headers": {"trace": "t1"}, "queue": "mail", "priority": 7, "countdown": 3600,
            "expires": 7200, "task_id": id, "max_retries": 4, "retry_delay": 2.5,
            "retry_backoff": 1.5, "retry_backoff_max": 60, "retry_jitter": false,
            "soft_time_limit": 10, "time_limit": 20, "ignore_result": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["url"], json!(format!("/api/v1/tasks/{id}")));
    assert_eq!(location, format!("/api/v1/tasks/{id}"));

    let (s, t) = srv.get(&location).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["name"], "emails.send");
    assert_eq!(t["queue"], "mail");
    assert_eq!(t["state"], "SCHEDULED");
    assert_eq!(t["celery_state"], "PENDING");
    assert_eq!(t["priority"], 7);
    assert_eq!(t["args"], json!([1, "two"]));
    assert_eq!(t["kwargs"], json!({"to": "a@example.com"}));
    assert_eq!(t["headers"], json!({"trace": "t1"}));
    assert_eq!(
        t["options"],
        json!({"max_retries": 4, "retry_delay": 2.5, "retry_backoff": 1.5,
               "retry_backoff_max": 60.0, "retry_jitter": false, "soft_time_limit": 10.0,
               "time_limit": 20.0, "ignore_result": true})
    );
    let received =
        chrono::DateTime::parse_from_rfc3339(t["received_at"].as_str().unwrap()).unwrap();
    let eta = chrono::DateTime::parse_from_rfc3339(t["eta"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((eta - received).num_seconds(), 3600);
    assert_eq!((expires - received).num_seconds(), 7200);
    assert!(t["started_at"].is_null() && t["finished_at"].is_null());

    // eta and expires as instants; defaults for everything else.
    let (s, b) = srv
        .post(
            "/api/v1/tasks",
            Some(json!({"task": "x", "eta": "2099-01-01T00:00:00Z", "expires": "2099-01-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, t) = srv.get(b["url"].as_str().unwrap()).await;
    assert_eq!(t["eta"], "2099-01-01T00:00:00Z");
    assert_eq!(t["expires_at"], "2099-01-02T00:00:00Z");
    assert_eq!(t["queue"], "celery");
    assert_eq!(t["args"], json!([]));

    // The same id twice: 409 naming task_id.
    let (s, e) = srv
        .post("/api/v1/tasks", Some(json!({"task": "x", "task_id": id})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!((code(&e), field(&e)), ("conflict", "task_id"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_get_400_413_415_422_naming_the_field() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let raw = |body: &'static str, ct: Option<&'static str>| {
        let mut r = srv
            .http
            .post(srv.url("/api/v1/tasks"))
            .bearer_auth(ADMIN)
            .body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let json_ct = Some("application/json");
    let (s, e) = raw(r#"{"task": "x""#, json_ct).await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let (s, e) = raw("not json", json_ct).await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let (s, e) = raw(r#"{"task": "x"}"#, None).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (s, _) = raw(r#"{"task": "x"}"#, Some("text/plain")).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for (body, want) in [
        (r#"{"task": "x", "priority": "high"}"#, "priority"),
        (r#"{"task": "x", "priority": 300}"#, "priority"),
        (r#"{"task": "x", "args": {"a": 1}}"#, "args"),
        (r#"{"task": "x", "kwargs": [1]}"#, "kwargs"),
        (r#"{"task": "x", "headers": "h"}"#, "headers"),
        (r#"{"task": "x", "task_id": "nope"}"#, "task_id"),
        (r#"{"task": "x", "max_retries": -1}"#, "max_retries"),
        (r#"{"task": "x", "eta": "tomorrow"}"#, "eta"),
        (r#"{"task": "x", "ignore_result": "yes"}"#, "ignore_result"),
        (r#"{"task": "x", "bogus": 1}"#, "bogus"),
        (r#"{"args": []}"#, "task"),
        (r#"{"task": ""}"#, "task"),
        (r#"{"task": "x", "queue": ""}"#, "queue"),
        (r#"{"task": "x", "countdown": -5}"#, "countdown"),
        (
            r#"{"task": "x", "countdown": 5, "eta": "2099-01-01T00:00:00Z"}"#,
            "eta",
        ),
        (r#"{"task": "x", "time_limit": 0}"#, "time_limit"),
        (r#"[1, 2]"#, "body"),
    ] {
        let (s, e) = raw(body, json_ct).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(
            (code(&e), field(&e)),
            ("invalid_field", want),
            "{body}: {e}"
        );
    }
    // Nothing of that was enqueued.
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks")
            .await,
        0
    );

    // Over the body limit (1 MiB by default): 413, with and without a Content-Length.
    let big = format!(
        r#"{{"task": "x", "args": ["{}"]}}"#,
        "a".repeat(1024 * 1024 + 10)
    );
    let r = srv
        .http
        .post(srv.url("/api/v1/tasks"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&r.json::<Value>().await.unwrap()), "payload_too_large");
    // Chunked, no Content-Length: the limit applies while reading.
    let status = chunked_post(srv.addr, "/api/v1/tasks", big.as_bytes()).await;
    assert_eq!(status, 413);
    srv.stop().await;

    // The limit is configurable.
    let srv = TestServer::start_with(
        db.client.clone(),
        ServerConfig {
            body_limit: 2048,
            ..tokens()
        },
    )
    .await;
    let (s, _) = srv
        .post(
            "/api/v1/tasks",
            Some(json!({"task": "x", "args": ["a".repeat(3000)]})),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = srv
        .post(
            "/api/v1/tasks",
            Some(json!({"task": "x", "args": ["a".repeat(100)]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_detail_shows_result_error_traceback_progress_retries_and_timestamps() {
    let db = TestDb::new().await;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut r = registry();
    r.register("t.progress", move |ctx: TaskContext| {
        let mut go = go_rx.clone();
        async move {
            ctx.update_state("PROGRESS", json!({"done": 3, "total": 10}))
                .await?;
            go.wait_for(|g| *g)
                .await
                .map_err(|e| TaskError::fail("Closed", e.to_string()))?;
            Ok(json!("done"))
        }
    });
    let w = RunningWorker::start(&db, r, test_worker_config(&["celery"], 4));
    let srv = TestServer::start(&db).await;
    let enqueue = |task: &'static str, args: Value| {
        let srv = &srv;
        async move {
            let (s, b) = srv
                .post("/api/v1/tasks", Some(json!({"task": task, "args": args})))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            b["id"].as_str().unwrap().to_string()
        }
    };
    let ok = enqueue("celeriac.echo", json!([1])).await;
    let boom = enqueue("t.boom", json!([])).await;
    let again = enqueue("t.retry_once", json!([])).await;
    let prog = enqueue("t.progress", json!([])).await;

    let t = srv.wait_state(&ok, "SUCCESS").await;
    assert_eq!(t["result"], json!({"args": [1], "kwargs": {}}));
    assert!(t["error"].is_null());
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(t[k].as_str().unwrap()).unwrap();
    assert!(at("received_at") <= at("started_at") && at("started_at") <= at("finished_at"));
    assert!(t["runtime_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(t["attempt"], 1);

    let t = srv.wait_state(&boom, "FAILURE").await;
    assert_eq!(t["error"]["type"], "ValueError");
    assert_eq!(t["error"]["message"], "boom");
    assert!(
        t["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("line 3, in boom")
    );
    assert!(t["result"].is_null());

    let t = srv.wait_state(&again, "SUCCESS").await;
    assert_eq!(t["retries"], 1);
    assert_eq!(t["attempt"], 2);
    assert_eq!(t["result"], json!({"retries": 1}));

    let t = eventually(Duration::from_secs(20), "PROGRESS", || async {
        let (_, t) = srv.get(&format!("/api/v1/tasks/{prog}")).await;
        (t["celery_state"] == "PROGRESS").then_some(t)
    })
    .await;
    assert_eq!(t["state"], "STARTED");
    assert_eq!(
        t["progress"],
        json!({"state": "PROGRESS", "meta": {"done": 3, "total": 10}})
    );
    assert!(t["worker_id"].is_string());
    go_tx.send(true).unwrap();
    srv.wait_state(&prog, "SUCCESS").await;
    w.stop().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_routes_and_methods() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let missing = uuid::Uuid::new_v4();
    for (method, path) in [
        ("GET", format!("/api/v1/tasks/{missing}")),
        ("POST", format!("/api/v1/tasks/{missing}/revoke")),
        ("POST", format!("/api/v1/tasks/{missing}/retry")),
        ("GET", "/api/v1/nothing".to_string()),
        ("GET", "/api/v2/tasks".to_string()),
    ] {
        let (s, e) = srv
            .send(method.parse().unwrap(), &path, Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {e}");
        assert_eq!(code(&e), "not_found");
    }
    let (s, e) = srv.get("/api/v1/tasks/not-a-uuid").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!((code(&e), field(&e)), ("invalid_parameter", "id"));
    let (s, e) = srv
        .send(reqwest::Method::DELETE, "/api/v1/tasks", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&e), "method_not_allowed");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_waiting_running_and_finished_tasks() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(&db, registry(), test_worker_config(&["celery"], 2));
    let srv = TestServer::start(&db).await;
    // Waiting (scheduled later): REVOKED at once, without a body.
    let waiting = db
        .client
        .enqueue(NewTask::new("celeriac.noop").countdown(3600.0))
        .await
        .unwrap()
        .id();
    let r = srv
        .http
        .post(srv.url(&format!("/api/v1/tasks/{waiting}/revoke")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["celery_state"], "REVOKED");
    assert_eq!(b["terminate_requested"], false);
    let t = srv.wait_state(&waiting.to_string(), "REVOKED").await;
    assert_eq!(t["revoked_reason"], "revoked");

    // Running: terminate=true stops it.
    let running = db
        .client
        .enqueue(NewTask::new("celeriac.sleep").args(json!([60])))
        .await
        .unwrap()
        .id();
    srv.wait_state(&running.to_string(), "STARTED").await;
    let (s, e) = srv
        .post(
            &format!("/api/v1/tasks/{running}/revoke"),
            Some(json!({"terminate": "yes"})),
        )
        .await;
    assert_eq!(
        (s, field(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "terminate")
    );
    let (s, b) = srv
        .post(
            &format!("/api/v1/tasks/{running}/revoke"),
            Some(json!({"terminate": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["terminate_requested"], true);
    let t = srv.wait_state(&running.to_string(), "REVOKED").await;
    assert_eq!(t["revoked_reason"], "terminated");

    // Finished: unchanged.
    let done = db
        .client
        .enqueue(NewTask::new("celeriac.noop"))
        .await
        .unwrap();
    done.get(Duration::from_secs(20)).await.unwrap();
    let (s, b) = srv
        .post(
            &format!("/api/v1/tasks/{}/revoke", done.id()),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, b["celery_state"].as_str()),
        (StatusCode::OK, Some("SUCCESS"))
    );
    w.stop().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_reruns_a_failed_task_as_a_linked_copy_once() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(&db, registry(), test_worker_config(&["celery"], 2));
    let srv = TestServer::start(&db).await;
    let failed = db
        .client
        .enqueue(
            NewTask::new("t.flaky")
                .args(json!([1]))
                .kwargs(json!({"k": "v"}))
                .priority(3)
                .max_retries(0),
        )
        .await
        .unwrap()
        .id();
    let orig = srv.wait_state(&failed.to_string(), "FAILURE").await;
    assert_eq!(orig["error"]["type"], "Flaky");

    // Not retryable while it is not FAILURE/REVOKED; a success is not retryable either.
    let ok = db
        .client
        .enqueue(NewTask::new("celeriac.noop"))
        .await
        .unwrap();
    ok.get(Duration::from_secs(20)).await.unwrap();
    let (s, e) = srv
        .post(&format!("/api/v1/tasks/{}/retry", ok.id()), None)
        .await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "conflict"));

    // Two concurrent retries: exactly one copy.
    let url = format!("/api/v1/tasks/{failed}/retry");
    let (a, b) = tokio::join!(srv.post(&url, None), srv.post(&url, None));
    let mut answers = [a, b];
    answers.sort_by_key(|(s, _)| s.as_u16());
    assert_eq!(answers[0].0, StatusCode::CREATED, "{:?}", answers);
    assert_eq!(answers[1].0, StatusCode::CONFLICT, "{:?}", answers);
    let copy = answers[0].1["id"].as_str().unwrap().to_string();
    assert_eq!(answers[0].1["retry_of"], json!(failed));
    assert!(
        answers[1].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&copy)
    );

    // The copy runs (and succeeds: its headers say it is a manual retry); the original keeps
    // its failure and points to the copy.
    let c = srv.wait_state(&copy, "SUCCESS").await;
    assert_eq!(c["result"], "fixed");
    assert_eq!(c["retry_of"], json!(failed));
    assert_eq!(c["args"], json!([1]));
    assert_eq!(c["kwargs"], json!({"k": "v"}));
    assert_eq!(c["priority"], 3);
    assert_eq!(c["options"]["max_retries"], 0);
    assert_eq!(c["retries"], 0);
    let (_, o) = srv.get(&format!("/api/v1/tasks/{failed}")).await;
    assert_eq!(o["state"], "FAILURE");
    assert_eq!(o["error"], orig["error"]);
    assert_eq!(o["finished_at"], orig["finished_at"]);
    assert_eq!(o["retried_as"], json!(copy));
    let (s, _) = srv.post(&url, None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A revoked task can be retried too.
    let revoked = db
        .client
        .enqueue(NewTask::new("celeriac.noop").countdown(3600.0))
        .await
        .unwrap()
        .id();
    db.client.revoke(revoked, false).await.unwrap();
    let (s, b) = srv
        .post(&format!("/api/v1/tasks/{revoked}/retry"), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    srv.wait_state(b["id"].as_str().unwrap(), "SUCCESS").await;
    w.stop().await;
    srv.stop().await;
}

/// Insert tasks straight into the table with chosen states (no worker needed).
async fn seed(db: &TestDb, n: usize, name: &str, queue: &str, state: &str) {
    sqlx::query(
        "INSERT INTO celeriac.tasks (id, name, queue, state, finished_at, error)
         SELECT gen_random_uuid(), $2, $3, $4,
                CASE WHEN $4 IN ('SUCCESS','FAILURE','REVOKED') THEN now() END,
                CASE WHEN $4 = 'FAILURE' THEN '{\"type\": \"E\", \"message\": \"m\"}'::jsonb END
         FROM generate_series(1, $1)",
    )
    .bind(n as i32)
    .bind(name)
    .bind(queue)
    .bind(state)
    .execute(db.store.pool())
    .await
    .unwrap();
}

async fn page_ids(srv: &TestServer, query: &str) -> (Vec<String>, Option<String>) {
    let (s, p) = srv.get(&format!("/api/v1/tasks?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{query}: {p}");
    let ids = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    (ids, p["next_cursor"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_keyset_pages_stay_stable_while_tasks_are_inserted() {
    let db = TestDb::new().await;
    seed(&db, 60, "a.ok", "qa", "SUCCESS").await;
    seed(&db, 15, "a.bad", "qa", "FAILURE").await;
    seed(&db, 10, "b.wait", "qb", "PENDING").await;
    seed(&db, 5, "b.later", "qb", "SCHEDULED").await;
    seed(&db, 7, "b.gone", "qb", "REVOKED").await;
    let before: Vec<String> = sqlx::query_scalar("SELECT id::text FROM celeriac.tasks")
        .fetch_all(db.store.pool())
        .await
        .unwrap();
    let srv = TestServer::start(&db).await;

    // Page through everything while another task keeps inserting new tasks.
    let stop = CancellationToken::new();
    let inserter = {
        let client = db.client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() && n < 500 {
                client
                    .enqueue(NewTask::new("c.new").queue("qc"))
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let (mut ids, mut cursor) = page_ids(&srv, "limit=10").await;
    seen.append(&mut ids);
    let mut pages = 1;
    while let Some(c) = cursor {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (mut ids, next) = page_ids(&srv, &format!("limit=10&cursor={c}")).await;
        seen.append(&mut ids);
        cursor = next;
        pages += 1;
        assert!(pages < 200, "pagination does not end");
    }
    stop.cancel();
    let inserted = inserter.await.unwrap();
    assert!(inserted > 0);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "a task appeared on two pages");
    for id in &before {
        assert!(seen.contains(id), "task {id} was skipped");
    }

    // Newest first: the first page starts with the newest task.
    let newest: String = db
        .scalar("SELECT id::text FROM celeriac.tasks ORDER BY created_at DESC, seq DESC LIMIT 1")
        .await;
    let (ids, _) = page_ids(&srv, "limit=1").await;
    assert_eq!(ids, vec![newest]);

    // Filters.
    let count = |q: &'static str| {
        let srv = &srv;
        async move {
            let (s, p) = srv.get(&format!("/api/v1/tasks?limit=500&{q}")).await;
            assert_eq!(s, StatusCode::OK, "{q}: {p}");
            p["tasks"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("state=FAILURE").await, 15);
    assert_eq!(count("state=failure,revoked").await, 22);
    assert_eq!(count("state=PENDING&queue=qb").await, 10);
    assert_eq!(count("state=SCHEDULED").await, 5);
    assert_eq!(count("name=a.ok").await, 60);
    assert_eq!(count("queue=qb").await, 22);
    assert_eq!(count("name=a.ok&queue=qb").await, 0);
    assert_eq!(count("since=2999-01-01T00:00:00Z").await, 0);
    assert!(count("since=2000-01-01T00:00:00Z").await >= 97);
    // Filters are data: quotes and SQL in them match nothing and break nothing.
    assert_eq!(count("name=x%27%20OR%20%271%27%3D%271").await, 0);
    let (s, p) = srv.get("/api/v1/tasks?state=FAILURE&limit=5").await;
    assert_eq!(s, StatusCode::OK);
    let t = &p["tasks"][0];
    assert_eq!(
        (t["error_type"].as_str(), t["error_message"].as_str()),
        (Some("E"), Some("m"))
    );
    // Paging with a filter.
    let (a, c) = page_ids(&srv, "state=FAILURE&limit=10").await;
    let (b, c2) = page_ids(
        &srv,
        &format!("state=FAILURE&limit=10&cursor={}", c.unwrap()),
    )
    .await;
    assert_eq!((a.len(), b.len(), c2), (10, 5, None));
    // A page that ends exactly at the last row says there is no next one.
    let (all, none) = page_ids(&srv, "state=FAILURE&limit=15").await;
    assert_eq!((all.len(), none), (15, None));
    assert!(a.iter().all(|x| !b.contains(x)));

    // Bad parameters: 400 naming them.
    for (q, want) in [
        ("state=BOGUS", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("cursor=zzz", "cursor"),
        ("colour=red", "colour"),
        ("state=FAILURE&state=SUCCESS", "state"),
    ] {
        let (s, e) = srv.get(&format!("/api/v1/tasks?{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!((code(&e), field(&e)), ("invalid_parameter", want), "{q}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_show_depth_age_running_and_rate_and_can_be_paused_resumed_purged() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    db.client
        .enqueue_many(
            (0..5)
                .map(|i| NewTask::new("celeriac.noop").queue("work").args(json!([i])))
                .collect(),
        )
        .await
        .unwrap();
    // Paused before any worker looks at it: nothing is claimed.
    let (s, b) = srv.post("/api/v1/queues/work/pause", None).await;
    assert_eq!(
        (s, b),
        (StatusCode::OK, json!({"queue": "work", "paused": true}))
    );
    let mut wcfg = test_worker_config(&["work"], 2);
    wcfg.heartbeat_interval = Duration::from_millis(200);
    let w = RunningWorker::start(&db, registry(), wcfg);
    let q = eventually(Duration::from_secs(20), "queue with a consumer", || async {
        let (_, l) = srv.get("/api/v1/queues").await;
        let q = l["queues"]
            .as_array()?
            .iter()
            .find(|q| q["name"] == "work")?
            .clone();
        (q["workers"] == 1).then_some(q)
    })
    .await;
    assert_eq!(q["paused"], true);
    assert_eq!(q["ready"], 5);
    assert!(q["oldest_ready_age_s"].as_f64().unwrap() >= 0.0);
    assert!(q["oldest_ready_at"].is_string());
    assert_eq!(db.unfinished().await, 5);

    // Resume: everything runs, and the rate shows up once a full 10 s window has passed.
    let (s, b) = srv.post("/api/v1/queues/work/resume", None).await;
    assert_eq!((s, b["paused"].clone()), (StatusCode::OK, json!(false)));
    eventually(Duration::from_secs(20), "queue drained", || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;
    let q = eventually(
        Duration::from_secs(40),
        "a rate over the last minute",
        || async {
            let (_, l) = srv.get("/api/v1/queues").await;
            let q = l["queues"]
                .as_array()?
                .iter()
                .find(|q| q["name"] == "work")?
                .clone();
            (q["last_minute"]["succeeded"] == 5).then_some(q)
        },
    )
    .await;
    assert!((q["rate_per_s"].as_f64().unwrap() - 5.0 / 60.0).abs() < 1e-9);
    assert_eq!(q["ready"], 0);

    // Running shows; purge revokes waiting tasks only.
    let running = db
        .client
        .enqueue(
            NewTask::new("celeriac.sleep")
                .queue("work")
                .args(json!([30])),
        )
        .await
        .unwrap()
        .id();
    eventually(Duration::from_secs(20), "running", || async {
        let (_, l) = srv.get("/api/v1/queues").await;
        let q = l["queues"]
            .as_array()?
            .iter()
            .find(|q| q["name"] == "work")?
            .clone();
        (q["running"] == 1).then_some(())
    })
    .await;
    db.client
        .enqueue_many(
            (0..3)
                .map(|_| NewTask::new("celeriac.noop").queue("work").countdown(600.0))
                .collect(),
        )
        .await
        .unwrap();
    let (s, b) = srv.post("/api/v1/queues/work/purge", None).await;
    assert_eq!(
        (s, b),
        (StatusCode::OK, json!({"queue": "work", "purged": 3}))
    );
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks WHERE revoked_reason = 'purged'")
            .await,
        3
    );
    assert_eq!(db.state(running).await, "STARTED");
    db.client.revoke(running, true).await.unwrap();

    // Queue names are data: odd characters go through the path encoded.
    let odd = "we'ird; DROP TABLE x/y";
    let enc = odd
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('\'', "%27")
        .replace(';', "%3B")
        .replace('/', "%2F");
    let (s, b) = srv.post(&format!("/api/v1/queues/{enc}/pause"), None).await;
    assert_eq!((s, b["queue"].as_str()), (StatusCode::OK, Some(odd)));
    let paused: bool = db
        .scalar(&format!(
            "SELECT paused FROM celeriac.queues WHERE name = '{}'",
            odd.replace('\'', "''")
        ))
        .await;
    assert!(paused);
    w.stop().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_show_host_pid_queues_concurrency_running_and_heartbeat() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let mut wcfg = test_worker_config(&["w1", "w2"], 3);
    wcfg.hostname = "box-7".into();
    let w = RunningWorker::start(&db, registry(), wcfg);
    db.client
        .enqueue(NewTask::new("celeriac.sleep").queue("w1").args(json!([30])))
        .await
        .unwrap();
    let worker = eventually(
        Duration::from_secs(20),
        "worker running one task",
        || async {
            let (_, l) = srv.get("/api/v1/workers").await;
            let x = l["workers"].as_array()?.first()?.clone();
            (x["running"] == 1).then_some(x)
        },
    )
    .await;
    assert_eq!(worker["id"], json!(w.id));
    assert_eq!(worker["hostname"], "box-7");
    assert_eq!(worker["pid"], json!(std::process::id()));
    assert_eq!(worker["queues"], json!(["w1", "w2"]));
    assert_eq!(worker["concurrency"], 3);
    assert_eq!(worker["alive"], true);
    assert_eq!(worker["stopping"], false);
    assert!(worker["heartbeat_age_s"].as_f64().unwrap() < 5.0);
    assert!(worker["heartbeat_at"].is_string());
    w.shutdown.now();
    let _ = w.handle.await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_read_only_and_admin_tokens() {
    let db = TestDb::new().await;
    let failed = db
        .client
        .enqueue(NewTask::new("x").countdown(600.0))
        .await
        .unwrap()
        .id();
    let srv = TestServer::start(&db).await;
    let reads = [
        "/api/v1/tasks",
        &format!("/api/v1/tasks/{failed}"),
        "/api/v1/queues",
        "/api/v1/workers",
        "/api/v1/stats/throughput",
        "/metrics",
    ];
    for path in reads {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let r = srv.http.get(srv.url(path));
            let r = match token {
                Some(t) => r.header("authorization", format!("Bearer {t}")),
                None => r,
            };
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            assert_eq!(code(&r.json::<Value>().await.unwrap()), "unauthorized");
        }
        for token in [READ, ADMIN] {
            let (s, _) = srv
                .send(reqwest::Method::GET, path, Some(token), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{path} with {token}");
        }
    }
    let writes = [
        ("/api/v1/tasks", Some(json!({"task": "x"}))),
        (&format!("/api/v1/tasks/{failed}/revoke") as &str, None),
        ("/api/v1/queues/q/pause", None),
        ("/api/v1/queues/q/resume", None),
        ("/api/v1/queues/q/purge", None),
        (&format!("/api/v1/tasks/{failed}/retry"), None),
    ];
    for (path, body) in writes {
        let (s, _) = srv
            .send(reqwest::Method::POST, path, None, body.clone())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        let (s, e) = srv
            .send(reqwest::Method::POST, path, Some(READ), body.clone())
            .await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{path}"
        );
    }
    // The read-only token changed nothing.
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM celeriac.tasks")
            .await,
        1
    );
    assert_eq!(db.state(failed).await, "SCHEDULED");
    // Admin can; the scheme name is case-insensitive.
    let r = srv
        .http
        .post(srv.url("/api/v1/queues/q/pause"))
        .header("authorization", format!("bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Health, the document and the dashboard's pages need no token (the pages hold no data).
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/",
        "/tasks",
        "/workers",
        "/static/app.js",
        "/static/style.css",
    ] {
        let r = srv.http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let page = srv.http.get(srv.url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(page.text().await.unwrap().contains("data-auth=\"token\""));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_tokens_refuses_non_loopback_addresses() {
    let db = TestDb::new().await;
    let open = AppState::new(db.client.clone(), &ServerConfig::default()).unwrap();
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = http::serve(any, open.clone(), CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without an API token"), "{err}");
    // On loopback, without tokens, everyone is admin.
    let srv = TestServer::start_with(db.client.clone(), ServerConfig::default()).await;
    let (s, _) = srv
        .send(reqwest::Method::POST, "/api/v1/queues/q/pause", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    srv.stop().await;
    // With a token, any address is fine.
    let secured = AppState::new(db.client.clone(), &tokens()).unwrap();
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = any.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let h = tokio::spawn(http::serve(any, secured, stop.clone()));
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    stop.cancel();
    h.await.unwrap().unwrap();
    // Weak tokens are refused.
    let weak = ServerConfig {
        admin_token: Some(Secret::new("short")),
        ..ServerConfig::default()
    };
    assert!(AppState::new(db.client.clone(), &weak).is_err());

    // The command line says so in one line and exits non-zero.
    let (code, _, err) = cli(&db, &["serve", "--bind", "0.0.0.0:0"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("without an API token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_do_not_leak_sql_or_internals() {
    let db = TestDb::new().await;
    let id = db.client.enqueue(NewTask::new("x")).await.unwrap().id();
    let srv = TestServer::start(&db).await;
    // A broken schema: the statement fails inside PostgreSQL.
    db.exec("ALTER TABLE celeriac.tasks RENAME COLUMN retried_as TO secret_column_name")
        .await;
    let (s, e) = srv.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&e), "internal");
    assert!(e["error"]["request_id"].is_string());
    let text = e.to_string().to_lowercase();
    for leak in [
        "secret_column_name",
        "select",
        "column",
        "sqlx",
        "postgres",
        "celeriac.",
    ] {
        assert!(!text.contains(leak), "{leak} leaked: {e}");
    }
    srv.stop().await;

    // The database is away: 503, and nothing about it.
    let gone = celeriac::Config::new("postgres://postgres@127.0.0.1:1/nowhere");
    let client = Client::connect(&gone).unwrap();
    let srv = TestServer::start_with(client, tokens()).await;
    let (s, e) = srv.get("/api/v1/queues").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(!e.to_string().contains("127.0.0.1:1"), "{e}");
    let (s, h) = srv.get("/readyz").await;
    assert_eq!(
        (s, h["reason"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("database unreachable")
        )
    );
    let (s, _) = srv.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_checks_the_database_and_migrations() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let (s, h) = srv.get("/readyz").await;
    assert_eq!((s, h), (StatusCode::OK, json!({"status": "ready"})));
    srv.stop().await;
    let empty = TestDb::empty().await;
    let srv = TestServer::start(&empty).await;
    let (s, h) = srv.get("/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h["reason"].as_str().unwrap().contains("migrations pending"));
    srv.stop().await;
}

/// Run a Python helper from tests/py with the test venv's interpreter.
pub async fn python(script: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let py = std::env::var("CELERIAC_TEST_PYTHON").expect(
        "CELERIAC_TEST_PYTHON is not set: run the tests through scripts/test (it creates \
         target/venv with tests/requirements.txt)",
    );
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(py)
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.unwrap();
        }
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_validates_and_every_documented_operation_answers_as_documented() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(&db, registry(), test_worker_config(&["celery"], 2));
    let failed = db.client.enqueue(NewTask::new("t.boom")).await.unwrap();
    let _ = failed.get(Duration::from_secs(20)).await;
    // A periodic task for the operations on one (django-celery-beat's tables created as
    // `celeriac migrate` does).
    db.store
        .beat_tables("public")
        .unwrap()
        .install()
        .await
        .unwrap();
    let admin = celeriac::beat::admin::Admin::with_client(db.client.clone(), "public").unwrap();
    admin
        .add(&celeriac::beat::admin::ScheduleRequest::new(
            "openapi-periodic",
            "celeriac.noop",
            celeriac::beat::admin::ScheduleSpec::crontab("0 3 * * *", "UTC").unwrap(),
        ))
        .await
        .unwrap();
    let srv = TestServer::start(&db).await;
    let g = db
        .client
        .apply(&celeriac::canvas::group([NewTask::new("celeriac.echo")
            .args(json!([1, 2]))
            .into()]))
        .await
        .unwrap();
    let fixtures = json!({
        "id": failed.id(),
        "name": "openapi-queue",
        "kind": "queue",
        "target": "openapi-queue",
        "/api/v1/groups/{id}": {"id": g.id},
        "/api/v1/periodic-tasks/": {"name": "openapi-periodic"},
    })
    .to_string();
    let (ok, out, err) = python(
        "openapi_check.py",
        &[&srv.base, ADMIN, READ, &fixtures],
        None,
    )
    .await;
    assert!(ok, "OpenAPI check failed:\n{err}\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(report["openapi"].as_str().unwrap().starts_with("3."));
    let ops: Vec<&str> = report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    // Every endpoint of the issue is documented (and so was called).
    for want in [
        "POST /api/v1/tasks",
        "GET /api/v1/tasks",
        "GET /api/v1/tasks/{id}",
        "POST /api/v1/tasks/{id}/revoke",
        "POST /api/v1/tasks/{id}/retry",
        "GET /api/v1/queues",
        "POST /api/v1/queues/{name}/pause",
        "POST /api/v1/queues/{name}/resume",
        "POST /api/v1/queues/{name}/purge",
        "GET /api/v1/workers",
        "GET /api/v1/stats/throughput",
        "GET /metrics",
        "GET /healthz",
        "GET /readyz",
        "GET /api/v1/openapi.json",
        "GET /api/v1/periodic-tasks",
        "POST /api/v1/periodic-tasks",
        "GET /api/v1/periodic-tasks/{name}",
        "PATCH /api/v1/periodic-tasks/{name}",
        "DELETE /api/v1/periodic-tasks/{name}",
        "POST /api/v1/periodic-tasks/{name}/enable",
        "POST /api/v1/periodic-tasks/{name}/disable",
        "POST /api/v1/periodic-tasks/{name}/run",
        "GET /api/v1/beat",
    ] {
        assert!(ops.contains(&want), "{want} is not documented: {ops:?}");
    }
    // The operations on the periodic task really happened (the delete last).
    assert_eq!(
        db.scalar::<i64>(
            "SELECT count(*) FROM public.django_celery_beat_periodictask WHERE name = 'openapi-periodic'"
        )
        .await,
        0
    );
    assert_eq!(
        db.scalar::<i64>(
            "SELECT count(*) FROM celeriac.tasks WHERE headers->>'periodic_task_name' = 'openapi-periodic'"
        )
        .await,
        1
    );
    // The document served is the one the library builds.
    let served: Value = srv.get("/api/v1/openapi.json").await.1;
    assert_eq!(served, serde_json::to_value(http::openapi()).unwrap());
    w.stop().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_sum_every_worker_process_and_never_go_down() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let args = [
        "-Q",
        "celery",
        "-c",
        "4",
        "--heartbeat",
        "300ms",
        "--lease",
        "3s",
    ];
    let mut w1 = spawn_worker_process(&db, &args);
    let mut w2 = spawn_worker_process(&db, &args);
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(NewTask::new("celeriac.echo").args(json!([i])));
    }
    for _ in 0..4 {
        tasks.push(NewTask::new("celeriac.fail").kwargs(json!({"type": "ValueError"})));
    }
    for _ in 0..3 {
        tasks.push(
            NewTask::new("celeriac.fail")
                .kwargs(json!({"retry": true, "countdown": 0}))
                .max_retries(1),
        );
    }
    db.client.enqueue_many(tasks).await.unwrap();
    eventually(Duration::from_secs(30), "all tasks done", || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;

    let scrape = || async {
        let (s, text) = srv.get("/metrics").await;
        assert_eq!(s, StatusCode::OK);
        let text = text.as_str().unwrap().to_string();
        let (ok, out, err) = python("parse_metrics.py", &[], Some(&text)).await;
        assert!(ok, "Prometheus parser refused /metrics: {err}\n{text}");
        let samples: Vec<(String, serde_json::Map<String, Value>, Value)> =
            serde_json::from_str(&out).unwrap();
        samples
    };
    let value = |samples: &[(String, serde_json::Map<String, Value>, Value)],
                 name: &str,
                 labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(v))
            })
            .and_then(|(_, _, v)| v.as_f64())
    };
    // echo: 20 started, 20 succeeded; fail: 4 failed at once, 3 retried once then failed.
    let samples = eventually(Duration::from_secs(20), "metrics flushed", || async {
        let s = scrape().await;
        let done = value(
            &s,
            "celeriac_task_succeeded_total",
            &[("task", "celeriac.echo")],
        ) == Some(20.0)
            && value(
                &s,
                "celeriac_task_failed_total",
                &[("task", "celeriac.fail")],
            ) == Some(7.0);
        done.then_some(s)
    })
    .await;
    let v = |name: &str, task: &str| value(&samples, name, &[("task", task)]).unwrap();
    assert_eq!(v("celeriac_task_started_total", "celeriac.echo"), 20.0);
    assert_eq!(v("celeriac_task_started_total", "celeriac.fail"), 10.0);
    assert_eq!(v("celeriac_task_retried_total", "celeriac.fail"), 3.0);
    assert_eq!(v("celeriac_task_succeeded_total", "celeriac.fail"), 0.0);
    assert_eq!(
        v("celeriac_task_runtime_seconds_count", "celeriac.echo"),
        20.0
    );
    assert_eq!(
        v("celeriac_task_start_latency_seconds_count", "celeriac.fail"),
        10.0
    );
    assert_eq!(
        value(
            &samples,
            "celeriac_task_runtime_seconds_bucket",
            &[("task", "celeriac.echo"), ("le", "+Inf")]
        ),
        Some(20.0)
    );
    assert_eq!(value(&samples, "celeriac_workers_alive", &[]), Some(2.0));
    assert_eq!(
        value(&samples, "celeriac_queue_depth", &[("queue", "celery")]),
        Some(0.0)
    );
    assert!(
        value(
            &samples,
            "celeriac_queue_oldest_ready_age_seconds",
            &[("queue", "celery")]
        )
        .is_some()
    );
    // A worker stops (final flush) and is forgotten: the sums stay, and keep growing.
    signal(&w1, Signal::SIGTERM);
    assert!(w1.wait().await.unwrap().success());
    db.client
        .enqueue_many((0..5).map(|_| NewTask::new("celeriac.echo")).collect())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "5 more succeeded", || async {
        let s = scrape().await;
        (value(
            &s,
            "celeriac_task_succeeded_total",
            &[("task", "celeriac.echo")],
        ) == Some(25.0))
        .then_some(())
    })
    .await;
    // A worker killed outright: its row goes, its counts up to its last heartbeat stay.
    signal(&w2, Signal::SIGKILL);
    let _ = w2.wait().await;
    db.exec("DELETE FROM celeriac.workers").await;
    let s = scrape().await;
    assert_eq!(
        value(
            &s,
            "celeriac_task_succeeded_total",
            &[("task", "celeriac.echo")]
        ),
        Some(25.0)
    );
    assert_eq!(value(&s, "celeriac_workers_alive", &[]), Some(0.0));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throughput_series_counts_finished_attempts_per_minute() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let mut wcfg = test_worker_config(&["celery"], 4);
    wcfg.heartbeat_interval = Duration::from_millis(200);
    let w = RunningWorker::start(&db, registry(), wcfg);
    db.client
        .enqueue_many((0..6).map(|_| NewTask::new("celeriac.noop")).collect())
        .await
        .unwrap();
    db.client.enqueue(NewTask::new("t.boom")).await.unwrap();
    let points = eventually(Duration::from_secs(20), "throughput", || async {
        let (_, s) = srv.get("/api/v1/stats/throughput?minutes=5").await;
        let pts = s["points"].as_array()?.clone();
        let sum = |k: &str| pts.iter().map(|p| p[k].as_i64().unwrap()).sum::<i64>();
        (sum("succeeded") == 6 && sum("failed") == 1).then_some(pts)
    })
    .await;
    assert_eq!(points.len(), 5);
    let (_, s) = srv.get("/api/v1/stats/throughput?queue=other").await;
    assert_eq!(s["points"].as_array().unwrap().len(), 60);
    assert!(
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["succeeded"] == 0)
    );
    let (st, e) = srv.get("/api/v1/stats/throughput?minutes=0").await;
    assert_eq!((st, field(&e)), (StatusCode::BAD_REQUEST, "minutes"));
    w.stop().await;
    srv.stop().await;
}

/// Read a child's stderr until it prints where it serves; returns the base URL.
async fn served_at(child: &mut tokio::process::Child, who: &str) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let prefix = format!("{who}: dashboard and API at ");
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(&prefix) {
                return Some(rest.trim().trim_end_matches('/').to_string());
            }
        }
        None
    })
    .await
    .expect("no address printed within 60 s")
    .expect("exited without serving");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_command_reads_tokens_from_env_and_config_file() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("celeriac.toml");
    std::fs::write(
        &conf,
        format!("[server]\nbind = \"127.0.0.1:0\"\ntoken = \"{ADMIN}\"\nread_token = \"{READ}\"\nbody_limit = 4096\n"),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args(["serve", "--config", conf.to_str().unwrap()])
        .env("DATABASE_URL", &db.url)
        .env_remove("CELERIAC_API_TOKEN")
        .env_remove("CELERIAC_API_READ_TOKEN")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = served_at(&mut child, "celeriac serve").await;
    let http = reqwest::Client::new();
    let st = |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().status() };
    assert_eq!(
        st(http.get(format!("{base}/api/v1/queues"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        st(http.get(format!("{base}/api/v1/queues")).bearer_auth(READ)).await,
        StatusCode::OK
    );
    let big = json!({"task": "x", "args": ["a".repeat(5000)]});
    assert_eq!(
        st(http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(ADMIN)
            .json(&big))
        .await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().await.unwrap().success());

    // The environment wins over the file.
    let env_token = "env-admin-token-0123456789abcdef";
    let mut child = tokio::process::Command::new(bin())
        .args([
            "serve",
            "--config",
            conf.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", &db.url)
        .env("CELERIAC_API_TOKEN", env_token)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = served_at(&mut child, "celeriac serve").await;
    assert_eq!(
        st(http
            .post(format!("{base}/api/v1/queues/q/pause"))
            .bearer_auth(ADMIN))
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        st(http
            .post(format!("{base}/api/v1/queues/q/pause"))
            .bearer_auth(env_token))
        .await,
        StatusCode::OK
    );
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_runs_the_server_next_to_its_worker() {
    let db = TestDb::new().await;
    let mut dev = tokio::process::Command::new(bin())
        .args(["dev", "--bind", "127.0.0.1:0", "-c", "2"])
        .env("DATABASE_URL", &db.url)
        .env_remove("CELERIAC_API_TOKEN")
        .env_remove("CELERIAC_API_READ_TOKEN")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = served_at(&mut dev, "celeriac dev").await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/v1/tasks"))
        .json(&json!({"task": "celeriac.echo", "args": ["dev"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: TaskId = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let out = db
        .client
        .result(id)
        .get(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(out["args"], json!(["dev"]));
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    signal(&dev, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_that_runs_too_long_is_cancelled_with_a_503() {
    let db = TestDb::new().await;
    seed(&db, 30_000, "bulk", "q", "SUCCESS").await;
    let srv = TestServer::start_with(
        db.client.clone(),
        ServerConfig {
            query_timeout: Duration::from_millis(1),
            ..tokens()
        },
    )
    .await;
    // A name that matches nothing walks the whole history: longer than 1 ms.
    let (s, e) = srv.get("/api/v1/tasks?name=nothing-like-this").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "query_timeout"),
        "{e}"
    );
    assert!(!e.to_string().contains("statement"), "{e}");
    // The pool is fine afterwards: the timeout was local to that transaction.
    let (s, _) = srv.get("/api/v1/queues").await;
    assert_eq!(s, StatusCode::OK);
    srv.stop().await;
}
