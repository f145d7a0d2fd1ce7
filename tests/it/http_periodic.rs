//! The periodic-task endpoints (`/api/v1/periodic-tasks`, `/api/v1/beat`) and beat's metrics,
//! against a real server on port 0, a real database with django-celery-beat's tables, and —
//! where it matters — a real beat: every endpoint's success and error paths and scopes, the
//! change tracker bumped by every change, problems as `celeriac beat --check` reports them,
//! a schedule created through the API fired by beat (and seen by it within 2 s), a disabled one
//! stopped within 2 s, run now, and the beat gauges of /metrics.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::beat::{RunningBeat, beat_db, test_beat_config};
use crate::common::*;
use crate::http::{ADMIN, READ, TestServer, python};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not an instant: {v}"))
        .parse()
        .unwrap()
}

/// `django_celery_beat_periodictasks.last_update` (None before the first change).
async fn last_update(db: &TestDb) -> Option<DateTime<Utc>> {
    db.scalar("SELECT max(last_update) FROM public.django_celery_beat_periodictasks")
        .await
}

async fn rows(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM public.django_celery_beat_periodictask")
        .await
}

async fn patch(srv: &TestServer, name: &str, body: Value) -> (StatusCode, Value) {
    srv.send(
        Method::PATCH,
        &format!("/api/v1/periodic-tasks/{name}"),
        Some(ADMIN),
        Some(body),
    )
    .await
}

/// Tasks sent for periodic task `name` (beat's sends and run-nows).
async fn sent(db: &TestDb, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM celeriac.tasks WHERE headers->>'periodic_task_name' = $1",
    )
    .bind(name)
    .fetch_one(db.store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_tasks_are_created_listed_updated_toggled_run_and_deleted() {
    let db = beat_db().await;
    let srv = TestServer::start(&db).await;
    let (s, v) = srv.get("/api/v1/periodic-tasks").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"periodic_tasks": []})));
    assert_eq!(last_update(&db).await, None);

    // A crontab with every option.
    let r = srv
        .http
        .post(srv.url("/api/v1/periodic-tasks"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "name": "report", "task": "app.report",
            "schedule": {"kind": "crontab", "minute": "0", "hour": "9",
                         "day_of_week": "mon-fri", "timezone": "Europe/Berlin"},
            "args": [1, "x"], "kwargs": {"to": "ops"}, "headers": {"trace": "t1"},
            "queue": "reports", "priority": 5, "expire_seconds": 3600,
            "start_time": "2031-01-01T00:00:00Z", "description": "weekday report"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"], "/api/v1/periodic-tasks/report");
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        report["schedule"],
        json!({"kind": "crontab", "minute": "0", "hour": "9", "day_of_month": "*",
               "month_of_year": "*", "day_of_week": "mon-fri", "timezone": "Europe/Berlin"})
    );
    assert_eq!(
        report["schedule_text"],
        "at 09:00 on Monday to Friday (Europe/Berlin)"
    );
    assert_eq!(report["args"], json!([1, "x"]));
    assert_eq!(report["kwargs"], json!({"to": "ops"}));
    assert_eq!(report["headers"], json!({"trace": "t1"}));
    assert_eq!(
        (
            &report["queue"],
            &report["priority"],
            &report["expire_seconds"]
        ),
        (&json!("reports"), &json!(5), &json!(3600))
    );
    assert_eq!(
        (report["enabled"].as_bool(), report["one_off"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(report["last_run_at"], Value::Null);
    assert_eq!(report["total_run_count"], 0);
    assert_eq!(report["problem"], Value::Null);
    // 2031-01-01 is a Wednesday: 09:00 in Berlin (CET) is 08:00Z.
    assert_eq!(
        at(&report["next_fire_at"]),
        at(&json!("2031-01-01T08:00:00Z"))
    );
    // The rows are what Django would have written.
    let (tz, dow): (String, String) = sqlx::query_as(
        "SELECT c.timezone, c.day_of_week FROM public.django_celery_beat_periodictask p
         JOIN public.django_celery_beat_crontabschedule c ON c.id = p.crontab_id WHERE p.name = 'report'",
    )
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!((tz.as_str(), dow.as_str()), ("Europe/Berlin", "mon-fri"));
    let mut bump = last_update(&db).await.expect("create bumped last_update");

    // The other kinds.
    for (body, text) in [
        (
            json!({"name": "ping", "task": "celeriac.noop",
                   "schedule": {"kind": "interval", "every": 30, "period": "seconds"},
                   "expires": "2031-01-01T00:00:00Z"}),
            "every 30 seconds",
        ),
        (
            json!({"name": "sunrise", "task": "app.lights",
                   "schedule": {"kind": "solar", "event": "sunrise", "latitude": 52.52, "longitude": 13.405}}),
            "at sunrise at 52.52°N, 13.405°E",
        ),
        (
            json!({"name": "launch", "task": "app.launch",
                   "schedule": {"kind": "clocked", "at": "2031-06-01T09:00:00Z"}}),
            "once at 2031-06-01 09:00:00 UTC",
        ),
    ] {
        let (s, v) = srv.post("/api/v1/periodic-tasks", Some(body.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{body}: {v}");
        assert_eq!(v["schedule_text"], text);
        assert!(v["next_fire_at"].is_string(), "{v}");
        assert_eq!(v["schedule"]["kind"], body["schedule"]["kind"]);
        let b = last_update(&db).await.unwrap();
        assert!(
            b > bump,
            "creating {} did not bump last_update",
            body["name"]
        );
        bump = b;
    }
    let (_, launch) = srv.get("/api/v1/periodic-tasks/launch").await;
    assert_eq!(launch["one_off"], true, "a clocked schedule is one-off");
    assert_eq!(
        at(&launch["next_fire_at"]),
        at(&json!("2031-06-01T09:00:00Z"))
    );

    // Refused creates name the field, and write nothing.
    let crontab = |fields: Value| {
        let mut s = json!({"kind": "crontab"});
        s.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!({"name": "bad", "task": "t", "schedule": s})
    };
    let long = "n".repeat(201);
    for (body, status, want_code, want_field) in [
        (
            json!({"name": "report", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}}),
            409,
            "conflict",
            "name",
        ),
        (
            crontab(json!({"day_of_week": "7"})),
            422,
            "invalid_field",
            "schedule.day_of_week",
        ),
        (
            crontab(json!({"hour": "24"})),
            422,
            "invalid_field",
            "schedule.hour",
        ),
        (
            crontab(json!({"timezone": "Mars/Olympus"})),
            422,
            "invalid_field",
            "schedule.timezone",
        ),
        (
            crontab(json!({"day_of_month": "30", "month_of_year": "2"})),
            422,
            "invalid_field",
            "schedule",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 0, "period": "seconds"}}),
            422,
            "invalid_field",
            "schedule.every",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "weeks"}}),
            422,
            "invalid_field",
            "schedule",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "solar", "event": "sunrise", "latitude": 91, "longitude": 0}}),
            422,
            "invalid_field",
            "schedule.latitude",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "solar", "event": "moonrise", "latitude": 1, "longitude": 0}}),
            422,
            "invalid_field",
            "schedule.event",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "weekly"}}),
            422,
            "invalid_field",
            "schedule.kind",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "clocked", "at": "2031-01-01T00:00:00Z"}, "one_off": false}),
            422,
            "invalid_field",
            "one_off",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"},
                   "expires": "2031-01-01T00:00:00Z", "expire_seconds": 60}),
            422,
            "invalid_field",
            "expire_seconds",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}, "args": {"a": 1}}),
            422,
            "invalid_field",
            "args",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}, "kwargs": [1]}),
            422,
            "invalid_field",
            "kwargs",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}, "priority": 300}),
            422,
            "invalid_field",
            "priority",
        ),
        (
            json!({"name": "", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}}),
            422,
            "invalid_field",
            "name",
        ),
        (
            json!({"name": long, "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}}),
            422,
            "invalid_field",
            "name",
        ),
        (
            json!({"name": "bad", "schedule": {"kind": "interval", "every": 1, "period": "days"}}),
            422,
            "invalid_field",
            "task",
        ),
        (
            json!({"name": "bad", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}, "colour": "red"}),
            422,
            "invalid_field",
            "colour",
        ),
    ] {
        let (s, e) = srv.post("/api/v1/periodic-tasks", Some(body.clone())).await;
        assert_eq!(
            (s.as_u16(), code(&e), field(&e)),
            (status, want_code, want_field),
            "{body}: {e}"
        );
    }
    let (_, e) = srv
        .post(
            "/api/v1/periodic-tasks",
            Some(crontab(json!({"day_of_week": "7"}))),
        )
        .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid end range: 7 > 6."),
        "Celery's message: {e}"
    );
    let raw = |body: &'static str, ctype: &'static str| {
        srv.http
            .post(srv.url("/api/v1/periodic-tasks"))
            .bearer_auth(ADMIN)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = raw(r#"{"name": "bad""#, "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&r.json::<Value>().await.unwrap()), "malformed_json");
    let r = raw("name=bad", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(rows(&db).await, 4, "a refused create wrote a row");
    assert_eq!(last_update(&db).await, Some(bump));

    // Listing and reading.
    let (s, list) = srv.get("/api/v1/periodic-tasks").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["periodic_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["report", "ping", "sunrise", "launch"]);
    let (_, enabled_only) = srv.get("/api/v1/periodic-tasks?enabled=false").await;
    assert_eq!(enabled_only["periodic_tasks"], json!([]));
    let (s, e) = srv.get("/api/v1/periodic-tasks?enabled=maybe").await;
    assert_eq!(
        (s, code(&e), field(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter", "enabled")
    );
    let (s, e) = srv.get("/api/v1/periodic-tasks?colour=red").await;
    assert_eq!((s, field(&e)), (StatusCode::BAD_REQUEST, "colour"));
    let (s, one) = srv.get("/api/v1/periodic-tasks/report").await;
    assert_eq!((s, &one), (StatusCode::OK, &report));
    let (s, e) = srv.get("/api/v1/periodic-tasks/nope").await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, e) = srv
        .get(&format!("/api/v1/periodic-tasks/{}", "n".repeat(201)))
        .await;
    assert_eq!(
        (s, code(&e), field(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter", "name")
    );
    // Any name works in a path, percent-encoded.
    let odd = "team/a b?é";
    let r = srv
        .http
        .post(srv.url("/api/v1/periodic-tasks"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": odd, "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "days"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, "/api/v1/periodic-tasks/team%2Fa%20b%3F%C3%A9");
    let (s, v) = srv.get(&location).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some(odd)));
    let (s, _) = srv.send(Method::DELETE, &location, Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    bump = last_update(&db).await.unwrap();

    // Partial updates keep the run history and what they do not name.
    db.exec(
        "UPDATE public.django_celery_beat_periodictask
         SET last_run_at = now() - interval '1 hour', total_run_count = 3 WHERE name = 'report'",
    )
    .await;
    let (s, v) = patch(
        &srv,
        "report",
        json!({"schedule": {"kind": "crontab", "minute": "30", "hour": "4"}, "queue": null, "priority": 7}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedule_text"], "at 04:30 (UTC)");
    assert_eq!((&v["queue"], &v["priority"]), (&Value::Null, &json!(7)));
    assert_eq!(
        (&v["kwargs"], &v["args"], &v["description"]),
        (
            &json!({"to": "ops"}),
            &json!([1, "x"]),
            &json!("weekday report")
        )
    );
    assert_eq!(v["total_run_count"], 3);
    assert!(v["last_run_at"].is_string(), "kept: {v}");
    let b = last_update(&db).await.unwrap();
    assert!(b > bump, "update did not bump last_update");
    bump = b;
    // The same values again change nothing.
    let (s, again) = patch(&srv, "report", json!({"priority": 7, "name": "report"})).await;
    assert_eq!((s, &again), (StatusCode::OK, &v));
    assert_eq!(last_update(&db).await, Some(bump));
    // Setting expires replaces expire_seconds (both cannot be set).
    let (_, v) = patch(&srv, "report", json!({"expires": "2032-01-01T00:00:00Z"})).await;
    assert_eq!(
        (&v["expire_seconds"], at(&v["expires"])),
        (&Value::Null, at(&json!("2032-01-01T00:00:00Z")))
    );
    for (name, body, status, want_field) in [
        ("report", json!({"name": "renamed"}), 422, "name"),
        (
            "report",
            json!({"schedule": {"kind": "crontab", "hour": "25"}}),
            422,
            "schedule.hour",
        ),
        ("report", json!({"args": "x"}), 422, "args"),
        ("report", json!({"enabled": "yes"}), 422, "enabled"),
        (
            "report",
            json!({"expires": "2032-01-01T00:00:00Z", "expire_seconds": 5}),
            422,
            "expire_seconds",
        ),
        ("nope", json!({"priority": 1}), 404, ""),
    ] {
        let (s, e) = patch(&srv, name, body.clone()).await;
        assert_eq!((s.as_u16(), field(&e)), (status, want_field), "{body}: {e}");
    }

    // Enable/disable: disabling clears last_run_at (as Django); repeating is a no-op.
    bump = last_update(&db).await.unwrap();
    let (s, v) = srv
        .post("/api/v1/periodic-tasks/report/disable", None)
        .await;
    assert_eq!((s, &v["enabled"]), (StatusCode::OK, &json!(false)));
    assert_eq!(
        (&v["last_run_at"], &v["next_fire_at"]),
        (&Value::Null, &Value::Null)
    );
    let b = last_update(&db).await.unwrap();
    assert!(b > bump, "disable did not bump last_update");
    let (s, v2) = srv
        .post("/api/v1/periodic-tasks/report/disable", None)
        .await;
    assert_eq!(
        (s, v2["date_changed"].clone()),
        (StatusCode::OK, v["date_changed"].clone())
    );
    assert_eq!(
        last_update(&db).await,
        Some(b),
        "a no-op bumped last_update"
    );
    let (s, v) = srv.post("/api/v1/periodic-tasks/report/enable", None).await;
    assert_eq!((s, &v["enabled"]), (StatusCode::OK, &json!(true)));
    assert!(v["next_fire_at"].is_string());
    assert!(last_update(&db).await.unwrap() > b, "enable did not bump");
    for verb in ["enable", "disable", "run"] {
        let (s, e) = srv
            .post(&format!("/api/v1/periodic-tasks/nope/{verb}"), None)
            .await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{verb}"
        );
    }

    // Run now: the task is sent with the row's options and periodic_task_name; the schedule is
    // not touched.
    let before = srv.get("/api/v1/periodic-tasks/report").await.1;
    let r = srv
        .http
        .post(srv.url("/api/v1/periodic-tasks/report/run"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["periodic_task"], "report");
    assert_eq!(location, run["url"].as_str().unwrap());
    let (s, task) = srv.get(&location).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(task["name"], "app.report");
    assert_eq!(task["headers"]["periodic_task_name"], "report");
    assert_eq!(task["headers"]["trace"], "t1");
    assert!(task["headers"].get("celery_beat_task").is_none(), "{task}");
    assert_eq!(
        (
            &task["args"],
            &task["kwargs"],
            &task["queue"],
            &task["priority"]
        ),
        (
            &json!([1, "x"]),
            &json!({"to": "ops"}),
            &json!("celery"),
            &json!(7)
        )
    );
    let after = srv.get("/api/v1/periodic-tasks/report").await.1;
    assert_eq!(before, after, "run now changed the schedule");
    assert_eq!(sent(&db, "report").await, 1);

    // Rows beat cannot use show their problem, as `celeriac beat --check` reports it.
    db.exec(
        "UPDATE public.django_celery_beat_periodictask SET headers = '[]' WHERE name = 'sunrise'",
    )
    .await;
    db.exec("UPDATE public.django_celery_beat_periodictask SET args = 'nope' WHERE name = 'ping'")
        .await;
    let (_, list) = srv.get("/api/v1/periodic-tasks").await;
    let problem = |name: &str| {
        list["periodic_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["problem"]
            .clone()
    };
    assert_eq!(
        problem("sunrise"),
        json!({"reason": "headers must be a JSON object, got []", "action": "skip"})
    );
    assert_eq!(problem("ping")["action"], "disable");
    assert_eq!(problem("report"), Value::Null);
    let (code_, out, _) = cli(&db, &["beat", "--check"]).await;
    assert_eq!(code_, 1, "{out}");
    for name in ["sunrise", "ping"] {
        let reason = problem(name)["reason"].as_str().unwrap().to_string();
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(&reason)),
            "{name}: {reason} not in\n{out}"
        );
    }
    // The stored args are not JSON: show them as they are.
    let (_, ping) = srv.get("/api/v1/periodic-tasks/ping").await;
    assert_eq!(ping["args"], "nope");
    // Run now refuses a row that cannot be sent; an update that gives the broken field fixes it.
    let (s, e) = srv.post("/api/v1/periodic-tasks/sunrise/run", None).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "conflict"), "{e}");
    let (s, e) = patch(&srv, "ping", json!({"priority": 1})).await;
    assert_eq!(
        (s, field(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "args"),
        "{e}"
    );
    let (s, v) = patch(&srv, "ping", json!({"args": [1]})).await;
    assert_eq!(
        (s, &v["problem"], &v["args"]),
        (StatusCode::OK, &Value::Null, &json!([1]))
    );

    // Delete.
    let b = last_update(&db).await.unwrap();
    let (s, body) = srv
        .send(
            Method::DELETE,
            "/api/v1/periodic-tasks/ping",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!((s, body), (StatusCode::NO_CONTENT, json!("")));
    assert!(last_update(&db).await.unwrap() > b, "delete did not bump");
    let (s, _) = srv
        .send(
            Method::DELETE,
            "/api/v1/periodic-tasks/ping",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv.get("/api/v1/periodic-tasks/ping").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(rows(&db).await, 3);

    // The CLI sees the same rows.
    let (c, out, err) = cli(&db, &["schedule", "list", "--json"]).await;
    assert_eq!(c, 0, "{err}");
    let cli_list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli_list.as_array().unwrap().len(), 3);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_endpoints_check_scopes_and_missing_tables() {
    let db = beat_db().await;
    let srv = TestServer::start(&db).await;
    let (s, _) = srv
        .post(
            "/api/v1/periodic-tasks",
            Some(json!({"name": "p", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "hours"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let bump = last_update(&db).await;
    for path in [
        "/api/v1/periodic-tasks",
        "/api/v1/periodic-tasks/p",
        "/api/v1/beat",
    ] {
        let (s, e) = srv.send(Method::GET, path, None, None).await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
        let (s, _) = srv
            .send(
                Method::GET,
                path,
                Some("wrong-token-0123456789abcdef"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        for token in [READ, ADMIN] {
            let (s, _) = srv.send(Method::GET, path, Some(token), None).await;
            assert_eq!(s, StatusCode::OK, "{path} with {token}");
        }
    }
    let create = json!({"name": "q", "task": "t", "schedule": {"kind": "interval", "every": 1, "period": "hours"}});
    let writes: [(Method, &str, Option<Value>); 6] = [
        (Method::POST, "/api/v1/periodic-tasks", Some(create)),
        (
            Method::PATCH,
            "/api/v1/periodic-tasks/p",
            Some(json!({"priority": 1})),
        ),
        (Method::DELETE, "/api/v1/periodic-tasks/p", None),
        (Method::POST, "/api/v1/periodic-tasks/p/enable", None),
        (Method::POST, "/api/v1/periodic-tasks/p/disable", None),
        (Method::POST, "/api/v1/periodic-tasks/p/run", None),
    ];
    for (method, path, body) in &writes {
        let (s, _) = srv.send(method.clone(), path, None, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
        let (s, e) = srv
            .send(method.clone(), path, Some(READ), body.clone())
            .await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
    }
    // The read-only token changed nothing.
    assert_eq!(rows(&db).await, 1);
    assert_eq!(last_update(&db).await, bump);
    assert_eq!(sent(&db, "p").await, 0);
    let (_, p) = srv.get("/api/v1/periodic-tasks/p").await;
    assert_eq!(
        (&p["enabled"], &p["priority"]),
        (&json!(true), &Value::Null)
    );
    // The page needs no token (it holds no data).
    let r = srv.http.get(srv.url("/periodic")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("href=\"/periodic\" aria-current=\"page\""),
        "{html}"
    );
    srv.stop().await;

    // A database without django-celery-beat's tables: a clear 503, nothing internal.
    let bare = TestDb::new().await;
    let srv = TestServer::start(&bare).await;
    let (s, e) = srv.get("/api/v1/periodic-tasks").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "beat_not_installed"),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("celeriac migrate")
    );
    assert!(!e.to_string().contains("relation"), "{e}");
    let (s, b) = srv.get("/api/v1/beat").await;
    assert_eq!((s, &b["leader_alive"]), (StatusCode::OK, &json!(false)));
    srv.stop().await;
}

/// Wait until the database clock has passed `t`.
async fn db_clock_past(db: &TestDb, t: DateTime<Utc>) {
    eventually(Duration::from_secs(30), "database clock", || async {
        let now: DateTime<Utc> = db.scalar("SELECT now()").await;
        (now > t).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beat_fires_what_the_api_creates_and_stops_what_it_disables() {
    let db = beat_db().await;
    let srv = TestServer::start(&db).await;
    let beat = RunningBeat::start(&db, test_beat_config());
    // Measure from a beat that leads already (the election is not what is measured).
    eventually(Duration::from_secs(20), "beat leads", || async {
        let (_, b) = srv.get("/api/v1/beat").await;
        (b["leader_alive"] == true && b["last_tick_at"].is_string()).then_some(())
    })
    .await;

    // Every second, first due at once (its start_time is past).
    let (s, created) = srv
        .post(
            "/api/v1/periodic-tasks",
            Some(
                json!({"name": "tick", "task": "celeriac.noop", "kwargs": {"n": 1},
                        "schedule": {"kind": "interval", "every": 1, "period": "seconds"},
                        "start_time": "2020-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let saved = at(&created["date_changed"]);
    let first: DateTime<Utc> = eventually(Duration::from_secs(20), "first send", || async {
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT min(created_at) FROM celeriac.tasks WHERE headers->>'periodic_task_name' = 'tick'",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap()
    })
    .await;
    assert!(
        first - saved < chrono::Duration::seconds(2),
        "beat saw the new task {} after it was saved",
        first - saved
    );
    // Beat writes the run back; the API shows it.
    let shown = eventually(Duration::from_secs(20), "3 runs shown", || async {
        let (_, v) = srv.get("/api/v1/periodic-tasks/tick").await;
        (v["total_run_count"].as_i64() >= Some(3)).then_some(v)
    })
    .await;
    assert!(shown["last_run_at"].is_string(), "{shown}");
    assert!(at(&shown["next_fire_at"]) > at(&shown["last_run_at"]));
    assert!(sent(&db, "tick").await >= 3);

    // /api/v1/beat and /metrics report the leader and the lag of its sends.
    let (_, b) = srv.get("/api/v1/beat").await;
    assert_eq!(b["leader_alive"], true);
    assert!(b["sent_5m"].as_i64().unwrap() >= 2, "{b}");
    assert!(b["lag_p99_s"].as_f64().unwrap() >= 0.0, "{b}");
    assert!(b["instances"].as_i64().unwrap() >= 1, "{b}");
    let (s, text) = srv.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    let (ok, out, err) = python("parse_metrics.py", &[], Some(&text)).await;
    assert!(ok, "Prometheus parser refused /metrics: {err}\n{text}");
    let samples: Vec<(String, serde_json::Map<String, Value>, Value)> =
        serde_json::from_str(&out).unwrap();
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, _, v)| v.as_f64())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert!(value("celeriac_beat_lag_seconds") >= 0.0);
    assert!(value("celeriac_beat_lag_max_seconds") >= value("celeriac_beat_lag_seconds"));
    assert!(value("celeriac_beat_sent_5m") >= 2.0);
    assert_eq!(value("celeriac_beat_leader"), 1.0);
    assert_eq!(value("celeriac_beat_schedules"), 1.0);
    assert_eq!(value("celeriac_beat_bad_rows"), 0.0);
    assert!(value("celeriac_beat_tick_age_seconds") < 60.0);
    assert!(value("celeriac_beat_instances") >= 1.0);

    // Disabled through the API: beat stops sending it within 2 s.
    let (s, v) = srv.post("/api/v1/periodic-tasks/tick/disable", None).await;
    assert_eq!(s, StatusCode::OK);
    let disabled_at = at(&v["date_changed"]);
    db_clock_past(&db, disabled_at + chrono::Duration::seconds(4)).await;
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM celeriac.tasks WHERE headers->>'periodic_task_name' = 'tick'
         AND created_at > $1",
    )
    .bind(disabled_at + chrono::Duration::seconds(2))
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!(late, 0, "beat kept sending a disabled task");
    let (_, v) = srv.get("/api/v1/periodic-tasks/tick").await;
    assert_eq!(
        (&v["enabled"], &v["last_run_at"]),
        (&json!(false), &Value::Null)
    );

    // Enabled again: sent again, from its next slot (a second after the change).
    let (_, v) = srv.post("/api/v1/periodic-tasks/tick/enable", None).await;
    let enabled_at = at(&v["date_changed"]);
    let again: DateTime<Utc> = eventually(Duration::from_secs(20), "sent again", || async {
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT min(created_at) FROM celeriac.tasks
             WHERE headers->>'periodic_task_name' = 'tick' AND created_at > $1",
        )
        .bind(enabled_at)
        .fetch_one(db.store.pool())
        .await
        .unwrap()
    })
    .await;
    assert!(
        again - enabled_at < chrono::Duration::seconds(3),
        "re-enabled task first sent {} after the change (slot: 1 s)",
        again - enabled_at
    );
    beat.stop().await;
    srv.stop().await;
}
