//! What the HTTP executors share (`http.request` and webhooks): sending under the task's
//! cancellation, telling network trouble (retried) from a bad request (failed), reading
//! `Retry-After`, and which answers are worth a retry.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::registry::{TaskContext, TaskError};
use crate::task::ErrorInfo;

/// An answer: status, headers and the whole body.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Send `request` and read the answer, giving up when the task is cancelled. `what` (e.g.
/// `POST https://…`) prefixes error messages. Timeouts and connection trouble are retried; a
/// request that cannot even be built fails.
pub async fn send(
    ctx: &TaskContext,
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<Answer, TaskError> {
    let sent = tokio::select! {
        r = request.send() => r,
        _ = ctx.cancelled() => return Err(ctx.cancelled_error()),
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let info = ErrorInfo::new(kind_of(&e), format!("{what}: {}", error_chain(&e)));
            return Err(if e.is_builder() {
                TaskError::Failed(info)
            } else {
                TaskError::retry_because(None, info)
            });
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = tokio::select! {
        b = response.bytes() => b.map_err(|e| TaskError::retry_because(
            None,
            ErrorInfo::new(kind_of(&e), format!("{what}: reading the answer: {}", error_chain(&e))),
        ))?,
        _ = ctx.cancelled() => return Err(ctx.cancelled_error()),
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "Timeout"
    } else if e.is_connect() {
        "ConnectionError"
    } else {
        "RequestError"
    }
}

impl Answer {
    /// Seconds the server asked to wait (`Retry-After`: seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<f64> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    }

    /// The error for a non-2xx answer: retried (honouring `Retry-After`) for 408, 429 and 5xx,
    /// failed otherwise.
    pub fn failure(&self, info: ErrorInfo) -> TaskError {
        let code = self.status.as_u16();
        if self.status.is_server_error() || code == 408 || code == 429 {
            TaskError::retry_because(self.retry_after(), info)
        } else {
            TaskError::Failed(info)
        }
    }
}

/// `Retry-After` as seconds: a number, or an HTTP date (seconds from now, at least 0).
pub fn parse_retry_after(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then_some(s);
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delay =
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
    Some(delay.max(0.0))
}

/// An error with its causes, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
