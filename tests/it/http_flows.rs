//! Issue 6 over HTTP: workflows, group results, limits, unique tasks.

use std::time::Duration;

use celeriac::{Registry, TaskContext};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;
use crate::http::{ADMIN, READ, TestServer};

fn math() -> Registry {
    let mut r = Registry::with_builtins();
    r.register("m.add", |ctx: TaskContext| async move {
        Ok(json!(ctx.arg::<i64>(0)? + ctx.arg::<i64>(1)?))
    });
    r.register("m.double", |ctx: TaskContext| async move {
        Ok(json!(ctx.arg::<i64>(0)? * 2))
    });
    r.register("m.sum", |ctx: TaskContext| async move {
        Ok(json!(ctx.arg::<Vec<i64>>(0)?.iter().sum::<i64>()))
    });
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_and_groups_over_http() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let w = RunningWorker::start(&db, math(), test_worker_config(&["celery"], 8));

    let (s, v) = srv
        .post(
            "/api/v1/workflows",
            Some(json!({"chain": [
                {"task": "m.add", "args": [20, 1]},
                {"chord": {"header": [{"task": "m.double"}, {"task": "m.add", "args": [1]}],
                           "body": {"task": "m.sum"}}}
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "task");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["url"], format!("/api/v1/tasks/{id}"));
    let done = srv.wait_state(&id, "SUCCESS").await;
    assert_eq!(done["result"], json!(64));

    let (s, v) = srv
        .post(
            "/api/v1/workflows",
            Some(json!({"group": [{"task": "m.double", "args": [1]}, {"task": "m.double", "args": [2]}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "group");
    let gid = v["id"].as_str().unwrap().to_string();
    let g = eventually(Duration::from_secs(20), "group done", || async {
        let (s, g) = srv
            .send(
                Method::GET,
                &format!("/api/v1/groups/{gid}"),
                Some(READ),
                None,
            )
            .await;
        (s == StatusCode::OK && g["state"] == "SUCCESS").then_some(g)
    })
    .await;
    assert_eq!(
        (g["results"].clone(), g["completed"].clone()),
        (json!([2, 4]), json!(2))
    );

    // Errors: a bad workflow names `canvas`; unknown groups are 404; reads need no admin.
    let (s, v) = srv
        .post("/api/v1/workflows", Some(json!({"chain": []})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "canvas");
    let (s, _) = srv
        .get(&format!("/api/v1/groups/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv.get("/api/v1/groups/not-a-uuid").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = srv
        .send(
            Method::POST,
            "/api/v1/workflows",
            Some(READ),
            Some(json!({"task": "m.add"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    w.stop().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_over_http() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let (s, v) = srv
        .send(
            Method::PUT,
            "/api/v1/limits/task/report.build",
            Some(ADMIN),
            Some(json!({"rate": "10/m", "concurrency": 3, "partition_by": "customer_id"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = srv
        .send(Method::GET, "/api/v1/limits", Some(READ), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["target"], "report.build");
    assert_eq!(v[0]["rate"], "10/m");
    assert_eq!(v[0]["concurrency"], 3);
    assert_eq!(v[0]["partition_by"], "customer_id");
    for (body, field) in [
        (json!({"rate": "10/d"}), "rate"),
        (json!({"concurrency": 0}), "concurrency"),
        (json!({}), "rate"),
    ] {
        let (s, v) = srv
            .send(
                Method::PUT,
                "/api/v1/limits/queue/mail",
                Some(ADMIN),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (s, _) = srv
        .send(
            Method::PUT,
            "/api/v1/limits/bucket/x",
            Some(ADMIN),
            Some(json!({"rate": "1/s"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = srv
        .send(
            Method::PUT,
            "/api/v1/limits/task/x",
            Some(READ),
            Some(json!({"rate": "1/s"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = srv
        .send(
            Method::DELETE,
            "/api/v1/limits/task/report.build",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = srv
        .send(
            Method::DELETE,
            "/api/v1/limits/task/report.build",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_tasks_over_http() {
    let db = TestDb::new().await;
    let srv = TestServer::start(&db).await;
    let body = json!({"task": "r.build", "countdown": 3600, "unique_key": "r:1", "unique_scope": "active"});
    let (s, first) = srv.post("/api/v1/tasks", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, second) = srv.post("/api/v1/tasks", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(second["existing"], true);
    assert_eq!(second["id"], first["id"]);
    let (s, v) = srv
        .post(
            "/api/v1/tasks",
            Some(json!({"task": "x", "unique_scope": "queued"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "unique_key");
    let (s, v) = srv
        .post(
            "/api/v1/tasks",
            Some(json!({"task": "x", "unique_key": "k", "unique_scope": "window"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "unique_window");
    let rows: i64 = db.scalar("SELECT count(*) FROM celeriac.tasks").await;
    assert_eq!(rows, 1);
    srv.stop().await;
}
