//! The HTTP webhook executor: runs a task by POSTing it to the route's URL.
//!
//! The request body is the JSON envelope
//!
//! ```json
//! {"id": "0190…", "task": "billing.charge", "args": [42], "kwargs": {"amount": 10},
//!  "retries": 0, "attempt": 1, "eta": null, "queue": "celery", "headers": {},
//!  "periodic_task_name": null, "created_at": "2026-01-01T12:00:00.000000Z", "timeout": 30.0}
//! ```
//!
//! signed with HMAC-SHA256 over `"<timestamp>.<body>"` with the shared secret from the route's
//! environment variable; headers `X-Celeriac-Timestamp` (Unix seconds) and
//! `X-Celeriac-Signature: v1=<hex>`, plus `X-Celeriac-Task-Id`, `X-Celeriac-Task` and
//! `X-Celeriac-Attempt`. The receiver recomputes the signature, rejects stale timestamps
//! (replays) and should treat `id` as an idempotency key (a retried task keeps its id).
//!
//! Answers: 2xx → SUCCESS with the response JSON as result (text if not JSON, `null` if empty);
//! 408, 429, 5xx, connection errors and timeouts → retry with the route's backoff, or after
//! `Retry-After` (seconds or an HTTP date) when given; other 4xx → FAILURE at once. The request
//! timeout is the task's hard time limit. Connections are pooled per host.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;

use super::routes::{eta_of, periodic_task_name};
use crate::registry::{BoxFuture, Handler, HandlerResult, TaskContext, TaskError};
use crate::task::ErrorInfo;

/// Header carrying the Unix timestamp (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-celeriac-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-celeriac-signature";

/// The HTTP client shared by every webhook route of a process (pooled keep-alive connections).
pub fn http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("celeriac/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .tcp_keepalive(Duration::from_secs(60))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// What a webhook route needs.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Name of the environment variable holding the shared secret.
    pub secret_env: String,
    /// Request timeout (and hard time limit).
    pub timeout: Duration,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// The (pooled) client.
    pub client: reqwest::Client,
}

/// A webhook route: a [`Handler`] that POSTs the envelope.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Arc<[u8]>,
    timeout: Duration,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Check the URL, read the secret from the environment, parse the headers.
    pub fn new(cfg: WebhookConfig) -> Result<Self, String> {
        let secret = std::env::var(&cfg.secret_env).unwrap_or_default();
        if secret.is_empty() {
            return Err(format!(
                "the webhook secret variable {} is not set (the receiver needs it to verify requests)",
                cfg.secret_env
            ));
        }
        Self::with_secret(cfg, secret.as_bytes())
    }

    /// Like [`Webhook::new`] with the secret given (`cfg.secret_env` is ignored).
    pub fn with_secret(cfg: WebhookConfig, secret: &[u8]) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        let url =
            reqwest::Url::parse(&cfg.url).map_err(|e| format!("bad url {:?}: {e}", cfg.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url {:?} must be http or https", cfg.url));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("bad header name {k:?}"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k}"))?;
            headers.insert(name, value);
        }
        Ok(Webhook {
            url,
            secret: Arc::from(secret.to_vec().into_boxed_slice()),
            timeout: cfg.timeout,
            headers,
            client: cfg.client,
        })
    }

    async fn run(self, ctx: TaskContext) -> HandlerResult {
        // The request must end before the worker's hard limit, so that a slow receiver is a
        // (retried) timeout rather than a (final) TimeLimitExceeded.
        let mut timeout = self.timeout;
        if let Some(limit) = ctx.time_limit {
            let cap = Duration::from_secs_f64((limit - 0.5).max(0.1));
            timeout = timeout.min(cap);
        }
        let envelope = envelope(&ctx, timeout);
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| TaskError::fail("EncodeError", e.to_string()))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string();
        let signature = sign(&self.secret, &timestamp, &body);
        let url = self.url.as_str();
        let request = self
            .client
            .post(self.url.clone())
            .timeout(timeout)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, format!("v1={signature}"))
            .header("x-celeriac-task-id", ctx.id.to_string())
            .header("x-celeriac-task", &ctx.name)
            .header("x-celeriac-attempt", ctx.attempt.to_string())
            .body(body);
        let answer = super::http::send(&ctx, request, &format!("POST {url}")).await?;
        let (status, bytes) = (answer.status, &answer.body);
        let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
        if status.is_success() {
            return Ok(match parsed {
                Some(v) => v,
                None if bytes.is_empty() => Value::Null,
                None => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            });
        }
        let snippet: String = String::from_utf8_lossy(bytes).chars().take(2000).collect();
        // A receiver may describe its error as {"type": …, "message": …} (or {"error": {…}}).
        let described = parsed.as_ref().and_then(|v| {
            let e = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
            let kind = e.get("type")?.as_str()?;
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            Some(ErrorInfo::new(kind, message))
        });
        let info = described
            .unwrap_or_else(|| ErrorInfo::new("HttpError", format!("POST {url} answered {status}")))
            .with_traceback(format!("HTTP {status}\n{snippet}"));
        Err(answer.failure(info))
    }
}

impl Handler for Webhook {
    fn call(&self, ctx: TaskContext) -> BoxFuture<HandlerResult> {
        Box::pin(self.clone().run(ctx))
    }
}

/// The JSON body POSTed for `ctx`.
pub fn envelope(ctx: &TaskContext, timeout: Duration) -> Value {
    json!({
        "id": ctx.id,
        "task": ctx.name,
        "args": ctx.args,
        "kwargs": ctx.kwargs,
        "retries": ctx.retries,
        "attempt": ctx.attempt,
        "eta": eta_of(ctx),
        "queue": ctx.queue,
        "headers": ctx.headers,
        "periodic_task_name": periodic_task_name(ctx),
        "created_at": ctx.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "timeout": timeout.as_secs_f64(),
    })
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::http::parse_retry_after;

    #[test]
    fn signature_matches_a_known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"s3cret", "1700000000", b"{}"),
            "97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
        let a = sign(b"k", "1", b"body");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign(b"k", "2", b"body"));
        assert_ne!(a, sign(b"k2", "1", b"body"));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(3.0));
        assert_eq!(parse_retry_after(" 1.5 "), Some(1.5));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0.0)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!((95.0..=100.0).contains(&d), "{d}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
