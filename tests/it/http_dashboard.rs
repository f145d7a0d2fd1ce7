//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by scripts/test-env.sh): log in with the admin token, find a failed task, click
//! retry, confirm, and see the re-run succeed; then the periodic tasks page, on a phone and a
//! laptop: disable a periodic task, confirm, and see it disabled. Screenshots are kept under
//! target/.

use std::process::Stdio;
use std::time::Duration;

use celeriac::task::NewTask;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::*;
use crate::http::{ADMIN, TestServer, registry};

/// A chromedriver on a free local port, killed on drop.
struct Chromedriver {
    url: String,
    _child: tokio::process::Child,
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let driver = std::env::var("CELERIAC_TEST_CHROMEDRIVER")
            .ok()
            .filter(|p| !p.is_empty())
            .expect(
                "CELERIAC_TEST_CHROMEDRIVER is not set: run the tests through scripts/test, which \
                 installs chromium and chromium-driver",
            );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually(Duration::from_secs(30), "chromedriver ready", || async {
            let r = reqwest::get(&status).await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        Chromedriver { url, _child: child }
    }
}

fn capabilities(profile: &std::path::Path) -> serde_json::Map<String, Value> {
    let chromium = std::env::var("CELERIAC_TEST_CHROMIUM")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    let caps = json!({
        "browserName": "chrome",
        // Leave confirm() dialogs for the test to answer.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    caps.as_object().unwrap().clone()
}

fn artifact(name: &str) -> std::path::PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: keep the screenshots one level up, in target/.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_retry_of_a_failed_task_in_headless_chromium() {
    let db = TestDb::new().await;
    let w = RunningWorker::start(&db, registry(), test_worker_config(&["celery"], 2));
    // Some history, and the failed task to find.
    for i in 0..3 {
        db.client
            .enqueue(NewTask::new("celeriac.echo").args(json!([i])))
            .await
            .unwrap();
    }
    let failed = db
        .client
        .enqueue(NewTask::new("t.flaky").args(json!(["invoice-42"])))
        .await
        .unwrap();
    let _ = failed.get(Duration::from_secs(20)).await;
    assert_eq!(db.state(failed.id()).await, "FAILURE");
    let srv = TestServer::start(&db).await;
    // A periodic task (django-celery-beat's tables created as `celeriac migrate` does).
    db.store
        .beat_tables("public")
        .unwrap()
        .install()
        .await
        .unwrap();
    let (s, _) = srv
        .post(
            "/api/v1/periodic-tasks",
            Some(json!({"name": "nightly-cleanup", "task": "app.cleanup",
                        "schedule": {"kind": "crontab", "minute": "0", "hour": "3",
                                     "timezone": "Europe/Berlin"},
                        "description": "drop old sessions"})),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED);

    let driver = Chromedriver::start().await;
    let profile = tempfile::tempdir().unwrap();
    // Plain HTTP to the local chromedriver: no TLS stack needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(capabilities(profile.path()))
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    let outcome = async {
        let wait = || browser.wait().at_most(Duration::from_secs(30));
        browser.goto(&srv.url("/tasks?state=FAILURE")).await?;
        // The server has tokens: the page asks for one.
        wait()
            .for_element(Locator::Css("#login-token"))
            .await?
            .send_keys(ADMIN)
            .await?;
        browser
            .find(Locator::Css("#login-form button[type=submit]"))
            .await?
            .click()
            .await?;
        // The failed task is listed; open it.
        let row = format!("tr[data-task-id='{}'] td:nth-child(2) a", failed.id());
        wait()
            .for_element(Locator::Css(&row))
            .await?
            .click()
            .await?;
        let state = wait()
            .for_element(Locator::Css("#task-state[data-state='FAILURE']"))
            .await?;
        assert_eq!(state.text().await?, "FAILURE");
        let error = browser
            .find(Locator::Css("#error-line"))
            .await?
            .text()
            .await?;
        assert_eq!(error, "Flaky: fails until retried by hand");
        std::fs::write(
            artifact("dashboard-failed-task.png"),
            browser.screenshot().await?,
        )
        .unwrap();
        // Retry, and confirm.
        wait()
            .for_element(Locator::Css("#action-retry:not([hidden])"))
            .await?
            .click()
            .await?;
        let mut accepted = false;
        for _ in 0..50 {
            if browser.accept_alert().await.is_ok() {
                accepted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(accepted, "no confirmation was asked");
        // The page moves to the copy, which succeeds.
        wait()
            .for_element(Locator::Css("#task-state[data-state='SUCCESS']"))
            .await?;
        let url = browser.current_url().await?;
        assert!(!url.path().ends_with(&failed.id().to_string()), "{url}");
        let facts = browser.find(Locator::Css("#facts")).await?.text().await?;
        assert!(facts.contains(&failed.id().to_string()), "{facts}");
        std::fs::write(
            artifact("dashboard-retry-succeeded.png"),
            browser.screenshot().await?,
        )
        .unwrap();
        // The overview, phone-sized.
        browser.set_window_size(390, 844).await?;
        browser.goto(&srv.url("/")).await?;
        wait()
            .for_element(Locator::Css("#queues tr[data-queue='celery']"))
            .await?;
        std::fs::write(
            artifact("dashboard-overview-phone.png"),
            browser.screenshot().await?,
        )
        .unwrap();

        // Periodic tasks: one card per row on the phone...
        browser.goto(&srv.url("/periodic")).await?;
        let row = "tr[data-name='nightly-cleanup']";
        wait()
            .for_element(Locator::Css(&format!("{row}[data-enabled='true']")))
            .await?;
        let words = browser
            .find(Locator::Css(&format!("{row} .words")))
            .await?
            .text()
            .await?;
        assert_eq!(words, "at 03:00 (Europe/Berlin)");
        // No beat runs in this test, and the page says so.
        let beat = wait()
            .for_element(Locator::Css("#beat-state:not(:empty)"))
            .await?
            .text()
            .await?;
        assert_eq!(beat, "NOT RUNNING");
        std::fs::write(
            artifact("dashboard-periodic-phone.png"),
            browser.screenshot().await?,
        )
        .unwrap();
        // ...and a table on a laptop: disable it, with confirmation.
        browser.set_window_size(1280, 900).await?;
        let disable = format!("{row} button[data-action='disable']");
        let mut clicked = false;
        for _ in 0..20 {
            // The list refreshes itself: a button replaced under the click is clicked again.
            match wait()
                .for_element(Locator::Css(&disable))
                .await?
                .click()
                .await
            {
                Ok(_) => {
                    clicked = true;
                    break;
                }
                Err(e) if e.to_string().contains("stale") => continue,
                Err(e) => return Err(e),
            }
        }
        assert!(clicked, "could not click Disable");
        let mut accepted = false;
        for _ in 0..50 {
            if browser.accept_alert().await.is_ok() {
                accepted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(accepted, "disabling asked no confirmation");
        wait()
            .for_element(Locator::Css(&format!(
                "{row}[data-enabled='false'] button[data-action='enable']"
            )))
            .await?;
        let flash = browser.find(Locator::Css("#flash")).await?.text().await?;
        assert_eq!(flash, "Periodic task nightly-cleanup disabled.");
        std::fs::write(
            artifact("dashboard-periodic-disabled.png"),
            browser.screenshot().await?,
        )
        .unwrap();
        Ok::<_, fantoccini::error::CmdError>(url)
    }
    .await;
    let _ = browser.close().await;
    let url = outcome.expect("browser steps");

    // What the browser showed is what the database says.
    let copy: uuid::Uuid = url.path().rsplit('/').next().unwrap().parse().unwrap();
    let (s, orig) = srv.get(&format!("/api/v1/tasks/{}", failed.id())).await;
    assert_eq!(s, reqwest::StatusCode::OK);
    assert_eq!(orig["state"], "FAILURE");
    assert_eq!(orig["retried_as"], json!(copy));
    let (_, c) = srv.get(&format!("/api/v1/tasks/{copy}")).await;
    assert_eq!(
        (c["state"].as_str(), c["result"].as_str()),
        (Some("SUCCESS"), Some("fixed"))
    );
    assert!(artifact("dashboard-retry-succeeded.png").exists());
    // The click went through the API: the periodic task is disabled.
    let (_, p) = srv.get("/api/v1/periodic-tasks/nightly-cleanup").await;
    assert_eq!(p["enabled"], false, "{p}");
    w.stop().await;
    srv.stop().await;
}
