//! The dashboard: server-rendered pages (layout, navigation, forms, empty tables) and one
//! vanilla-JS file, `app.js`, that fills them from the API. No front-end build step.
//!
//! Auth: the pages themselves hold no data and need no token; every number on them comes from
//! `/api/v1` through `fetch`, with the same bearer token and scopes as any API client. When the
//! server has tokens, the page asks for one (a login form) and keeps it in `sessionStorage`
//! (forgotten when the tab closes; "remember" keeps it in `localStorage`). The token travels
//! only in the `Authorization` header, never in a cookie, so other sites cannot make the
//! browser act with it (no CSRF); a strict Content-Security-Policy (scripts from this server
//! only, no inline script) keeps injected markup from running, and the JS writes data with
//! `textContent`, never as HTML.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Navigation: (path, label, page id).
const NAV: &[(&str, &str, &str)] = &[
    ("/", "Overview", "overview"),
    ("/tasks", "Tasks", "tasks"),
    ("/workers", "Workers", "workers"),
    ("/periodic", "Periodic tasks", "periodic"),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task))
        .route("/workers", get(workers))
        .route("/periodic", get(periodic))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style_css))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn style_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

/// Escape text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `main` (already-escaped HTML).
fn page(state: &AppState, title: &str, page_id: &str, attrs: &str, main: &str) -> Response {
    let nav: String = NAV
        .iter()
        .map(|(href, label, id)| {
            let current = if *id == page_id {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{current}>{label}</a>")
        })
        .collect();
    let auth = if state.auth().is_open() {
        "open"
    } else {
        "token"
    };
    let html = format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Celeriac</title>
<link rel="stylesheet" href="/static/style.css?v={VERSION}">
<script src="/static/app.js?v={VERSION}" defer></script>
</head>
<body data-page="{page_id}" data-auth="{auth}"{attrs}>
<header class="top">
  <a class="brand" href="/">Celeriac</a>
  <nav>{nav}</nav>
  <button type="button" id="logout" class="link" hidden>Log out</button>
</header>
<section id="login" class="card" hidden>
  <h2>API token</h2>
  <p>This server needs a token. The admin token can act (retry, revoke, purge, pause); the
  read-only token can look.</p>
  <form id="login-form">
    <input id="login-token" type="password" autocomplete="current-password" placeholder="token" required>
    <label><input id="login-remember" type="checkbox"> remember on this device</label>
    <button type="submit">Log in</button>
  </form>
</section>
<div id="flash" role="status" aria-live="polite" hidden></div>
<main>
{main}
</main>
<footer>Celeriac {VERSION} · <a href="/api/v1/openapi.json">API (OpenAPI)</a> · <a href="/metrics">metrics</a></footer>
</body>
</html>
"##,
        title = esc(title),
    );
    let mut r = Html(html).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

async fn overview(State(state): State<AppState>) -> Response {
    page(
        &state,
        "Overview",
        "overview",
        "",
        r#"<h1>Overview</h1>
<section class="cards" id="totals" aria-label="totals"></section>
<section class="card">
  <h2>Throughput, last hour <small>(finished per minute)</small></h2>
  <div id="chart" class="chart" role="img" aria-label="finished tasks per minute"></div>
  <p class="legend"><span class="sw ok"></span>succeeded <span class="sw bad"></span>failed
  <span class="sw warn"></span>retried <span class="sw rev"></span>revoked</p>
</section>
<section class="card">
  <h2>Queues</h2>
  <div class="scroll"><table id="queues">
    <thead><tr><th>Queue</th><th class="n">Ready</th><th class="n">Scheduled</th>
    <th class="n">Running</th><th class="n" title="Waiting for a concurrency slot of a limit">Throttled</th>
    <th class="n">Oldest ready</th><th class="n">Workers</th>
    <th class="n">Rate/s</th><th>State</th><th>Actions</th></tr></thead>
    <tbody></tbody>
  </table></div>
</section>"#,
    )
}

async fn tasks(State(state): State<AppState>) -> Response {
    let states = [
        "SCHEDULED",
        "PENDING",
        "THROTTLED",
        "STARTED",
        "RETRY",
        "SUCCESS",
        "FAILURE",
        "REVOKED",
    ]
    .iter()
    .map(|s| format!("<option value=\"{s}\">{s}</option>"))
    .collect::<String>();
    let main = format!(
        r#"<h1>Tasks</h1>
<section class="card">
  <form id="find" class="inline">
    <input id="find-id" name="id" placeholder="task id (UUID)" aria-label="task id" required>
    <button type="submit">Open</button>
  </form>
  <form id="filters" class="filters" method="get" action="/tasks">
    <label>State <select name="state" id="f-state"><option value="">any</option>{states}</select></label>
    <label>Task <input name="name" id="f-name" placeholder="emails.send"></label>
    <label>Queue <input name="queue" id="f-queue" placeholder="celery"></label>
    <label>Since <input name="since" id="f-since" type="datetime-local" step="1"></label>
    <button type="submit">Filter</button> <a href="/tasks">clear</a>
  </form>
</section>
<section class="card">
  <div class="scroll"><table id="task-list">
    <thead><tr><th>Received</th><th>Task</th><th>State</th><th>Queue</th>
    <th class="n">Retries</th><th class="n">Runtime</th><th>Error</th><th>Id</th></tr></thead>
    <tbody></tbody>
  </table></div>
  <p class="pager"><a id="newest" href="/tasks">« newest</a> <button type="button" id="older" hidden>older »</button></p>
</section>"#
    );
    page(&state, "Tasks", "tasks", "", &main)
}

async fn task(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let attrs = format!(" data-task-id=\"{}\"", esc(&id));
    let main = format!(
        r#"<h1><span id="task-name">Task</span> <span id="task-state" class="badge"></span></h1>
<p class="muted mono" id="task-id">{id}</p>
<section class="card actions" id="actions">
  <button type="button" id="action-retry" hidden>Retry</button>
  <button type="button" id="action-revoke" class="danger" hidden>Revoke</button>
  <button type="button" id="action-terminate" class="danger" hidden>Terminate</button>
  <span id="links"></span>
</section>
<div class="grid">
  <section class="card"><h2>Details</h2><dl id="facts"></dl></section>
  <section class="card"><h2>Timeline</h2><ol id="timeline" class="timeline"></ol></section>
</div>
<section class="card" id="error-card" hidden><h2>Error</h2>
  <p id="error-line" class="error"></p><pre id="traceback"></pre></section>
<section class="card" id="result-card" hidden><h2>Result</h2><pre id="result"></pre></section>
<section class="card" id="progress-card" hidden><h2>Progress</h2><pre id="progress"></pre></section>
<div class="grid">
  <section class="card"><h2>Args</h2><pre id="args"></pre></section>
  <section class="card"><h2>Kwargs</h2><pre id="kwargs"></pre></section>
</div>
<section class="card"><h2>Headers and options</h2><pre id="headers"></pre></section>"#,
        id = esc(&id)
    );
    page(&state, "Task", "task", &attrs, &main)
}

async fn workers(State(state): State<AppState>) -> Response {
    page(
        &state,
        "Workers",
        "workers",
        "",
        r#"<h1>Workers</h1>
<section class="card">
  <div class="scroll"><table id="workers">
    <thead><tr><th>Host</th><th class="n">PID</th><th>Queues</th><th class="n">Concurrency</th>
    <th class="n">Running</th><th>Last heartbeat</th><th>State</th><th>Started</th>
    <th>Version</th></tr></thead>
    <tbody></tbody>
  </table></div>
</section>"#,
    )
}

async fn periodic(State(state): State<AppState>) -> Response {
    page(
        &state,
        "Periodic tasks",
        "periodic",
        "",
        r#"<h1>Periodic tasks</h1>
<section class="card" id="beat">
  <h2>Beat <span id="beat-state" class="badge"></span></h2>
  <p id="beat-line" class="muted"></p>
</section>
<section class="card">
  <form id="p-filters" class="filters">
    <label>Show <select id="p-show">
      <option value="">all</option><option value="enabled">enabled</option>
      <option value="disabled">disabled</option><option value="problems">with problems</option>
    </select></label>
    <label>Search <input id="p-search" type="search" placeholder="name or task"></label>
  </form>
  <div class="scroll"><table id="periodic" class="stack">
    <thead><tr><th>Name</th><th>Task</th><th>Schedule</th><th>Enabled</th><th>Last run</th>
    <th class="n">Runs</th><th>Next run</th><th>Actions</th></tr></thead>
    <tbody></tbody>
  </table></div>
  <p class="muted small">Schedules live in django-celery-beat's tables: edit them in Django
  admin, with <code>celeriac schedule</code>, or through <code>/api/v1/periodic-tasks</code>.
  Run now sends the task once and leaves its schedule as it is.</p>
</section>"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }
}
