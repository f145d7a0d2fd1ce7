//! Tasks every worker can run from the bare binary:
//!
//! | name | arguments | result |
//! |---|---|---|
//! | `celeriac.noop` | anything | `null` |
//! | `celeriac.sleep` | `[seconds]` or `{"seconds": s}` | seconds slept; stops early when cancelled |
//! | `celeriac.echo` | anything | `{"args": [...], "kwargs": {...}}` |
//! | `celeriac.fail` | `{"message", "type", "retry": bool, "countdown"}` | always fails (or retries) |
//! | `http.request` | `{"method", "url", "headers", "json" or "body", "timeout"}` | `{"status", "headers", "json" or "text"}` |
//!
//! `http.request` fails on a non-2xx answer; 408, 429, 5xx, timeouts and connection errors
//! are retried (honouring `Retry-After`).

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::registry::{Registry, TaskContext, TaskError};
use crate::task::ErrorInfo;

/// Add the built-ins to `r`.
pub fn register(r: &mut Registry) {
    r.register("celeriac.noop", |_ctx: TaskContext| async {
        Ok(Value::Null)
    });
    r.register("celeriac.echo", |ctx: TaskContext| async move {
        Ok(json!({"args": ctx.args, "kwargs": ctx.kwargs}))
    });
    r.register("celeriac.sleep", sleep);
    r.register("celeriac.fail", fail);
    r.register("http.request", http_request);
}

async fn sleep(ctx: TaskContext) -> Result<Value, TaskError> {
    let seconds: f64 = match ctx.kwarg::<f64>("seconds")? {
        Some(s) => s,
        None => ctx.arg(0)?,
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(TaskError::fail(
            "ValueError",
            format!("celeriac.sleep: seconds must be a non-negative number, got {seconds}"),
        ));
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(seconds.min(1e9))) => Ok(json!(seconds)),
        _ = ctx.cancelled() => Err(ctx.cancelled_error()),
    }
}

async fn fail(ctx: TaskContext) -> Result<Value, TaskError> {
    let message = ctx
        .kwarg::<String>("message")?
        .unwrap_or_else(|| "celeriac.fail failed on purpose".into());
    let kind = ctx
        .kwarg::<String>("type")?
        .unwrap_or_else(|| "TaskFailure".into());
    let error = ErrorInfo::new(kind, message);
    if ctx.kwarg::<bool>("retry")?.unwrap_or(false) {
        let countdown = ctx.kwarg::<f64>("countdown")?;
        return Err(TaskError::retry_because(countdown, error));
    }
    Err(TaskError::Failed(error))
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("celeriac/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default()
    })
}

async fn http_request(ctx: TaskContext) -> Result<Value, TaskError> {
    let bad = |m: String| TaskError::fail("ValueError", format!("http.request: {m}"));
    let url: String = ctx
        .kwarg("url")?
        .ok_or_else(|| bad("kwargs.url is required".into()))?;
    let method: String = ctx.kwarg("method")?.unwrap_or_else(|| "GET".into());
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad(format!("bad method {method:?}")))?;
    let timeout = ctx
        .kwarg::<f64>("timeout")?
        .or(ctx.time_limit)
        .unwrap_or(30.0);
    if !timeout.is_finite() || timeout <= 0.0 {
        return Err(bad(format!("timeout must be positive, got {timeout}")));
    }
    let mut req = http_client()
        .request(method.clone(), &url)
        .timeout(Duration::from_secs_f64(timeout));
    if let Some(headers) = ctx.kwarg::<Map<String, Value>>("headers")? {
        for (k, v) in headers {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            req = req.header(k, v);
        }
    }
    if let Some(body) = ctx.kwargs.get("json") {
        req = req.json(body);
    } else if let Some(body) = ctx.kwarg::<String>("body")? {
        req = req.body(body);
    }
    let answer = super::http::send(&ctx, req, &format!("{method} {url}")).await?;
    let (status, bytes) = (answer.status, &answer.body);
    let headers: Map<String, Value> = answer
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.to_str().ok()?.to_string()))))
        .collect();
    let mut out = Map::new();
    out.insert("status".into(), json!(status.as_u16()));
    out.insert("headers".into(), Value::Object(headers));
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => out.insert("json".into(), v),
        Err(_) => out.insert(
            "text".into(),
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ),
    };
    if status.is_success() {
        return Ok(Value::Object(out));
    }
    let snippet: String = String::from_utf8_lossy(bytes).chars().take(500).collect();
    let info = ErrorInfo::new("HttpError", format!("{method} {url} answered {status}"))
        .with_traceback(snippet);
    Err(answer.failure(info))
}
