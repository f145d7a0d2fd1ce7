//! The JSON-lines protocol between the worker and a pool child (documented in the README,
//! "The child protocol"). One JSON object per line, UTF-8, `\n`-terminated, each with a
//! `"type"`.
//!
//! Worker → child (the child's stdin): `task`. Closing stdin asks the child to exit.
//! Child → worker (the child's stdout, which the child must keep for the protocol alone):
//! `ready` (once, when it can take tasks), `started`, `progress`, `log`, `result`. Any other
//! line is logged as noise and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::task::ErrorInfo;

/// Protocol version sent to children in `CELERIAC_PROTOCOL`.
pub const VERSION: u32 = 1;

/// Worker → child: run this task.
#[derive(Debug, Serialize)]
pub struct TaskMsg<'a> {
    /// Always `"task"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Task id (UUID).
    pub id: String,
    /// Task name (the child resolves it: registered name or dotted path).
    pub task: &'a str,
    /// Positional arguments.
    pub args: &'a Value,
    /// Keyword arguments.
    pub kwargs: &'a Value,
    /// Message headers.
    pub headers: &'a Value,
    /// Retries so far (Celery's `request.retries`).
    pub retries: u32,
    /// Attempt number (1 for the first run).
    pub attempt: i32,
    /// Queue it came from.
    pub queue: &'a str,
    /// RFC 3339, or null when the task ran as soon as it was enqueued.
    pub eta: Value,
    /// Enqueue time, RFC 3339.
    pub created_at: String,
    /// Celery's `periodic_task_name` header, or null.
    pub periodic_task_name: Value,
    /// Effective soft limit (s), or null.
    pub soft_time_limit: Option<f64>,
    /// Effective hard limit (s), or null.
    pub time_limit: Option<f64>,
    /// Effective retry budget.
    pub max_retries: u32,
}

/// `result.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Returned: `result` is the value.
    Success,
    /// Raised: `error` describes it.
    Failure,
    /// Asked to be run again (`countdown`, `max_retries`, `error` optional).
    Retry,
}

/// Child → worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromChild {
    /// The child finished starting and waits for tasks.
    Ready {
        /// Its process id (informational).
        #[serde(default)]
        pid: Option<u32>,
    },
    /// The child began running task `id`; `retry_on_worker_lost`: re-queue it if the child
    /// dies (Celery's `acks_late` + `reject_on_worker_lost`).
    Started {
        /// Task id.
        id: String,
        /// Re-queue on child death instead of FAILURE.
        #[serde(default)]
        retry_on_worker_lost: bool,
    },
    /// `update_state(state, meta)`.
    Progress {
        /// Task id.
        id: String,
        /// Custom state, e.g. `PROGRESS`.
        state: String,
        /// Its meta.
        #[serde(default)]
        meta: Value,
    },
    /// A log record of the task (or of the child).
    Log {
        /// Task id, when emitted while a task runs.
        #[serde(default)]
        id: Option<String>,
        /// `debug`, `info`, `warning`, `error` or `critical`.
        #[serde(default)]
        level: String,
        /// Logger name.
        #[serde(default)]
        logger: Option<String>,
        /// The formatted message.
        message: String,
    },
    /// How task `id` ended.
    Result {
        /// Task id.
        id: String,
        /// success, failure or retry.
        status: Status,
        /// success: the return value.
        #[serde(default)]
        result: Value,
        /// failure: the error; retry: its cause (optional).
        #[serde(default)]
        error: Option<ErrorInfo>,
        /// retry: seconds until the retry (null: the retry policy's delay).
        #[serde(default)]
        countdown: Option<f64>,
        /// retry: override of the retry budget.
        #[serde(default)]
        max_retries: Option<u32>,
    },
}

/// What one line from a child is.
#[derive(Debug)]
pub enum Line {
    /// A protocol message.
    Message(FromChild),
    /// JSON with a `type` this worker does not know (a newer child): ignored.
    Unknown(String),
    /// Anything else: stray output.
    Noise(String),
}

/// Classify one line read from a child's protocol channel.
pub fn parse_line(line: &str) -> Line {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return Line::Noise(trimmed.to_string());
    }
    match serde_json::from_str::<FromChild>(trimmed) {
        Ok(m) => Line::Message(m),
        Err(e) => match serde_json::from_str::<Value>(trimmed) {
            Ok(v) if v.get("type").and_then(Value::as_str).is_some() => {
                Line::Unknown(format!("{e}: {}", truncate(trimmed, 200)))
            }
            _ => Line::Noise(trimmed.to_string()),
        },
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        match parse_line(r#"{"type":"result","id":"x","status":"success","result":[1]}"#) {
            Line::Message(FromChild::Result { status, result, .. }) => {
                assert_eq!(status, Status::Success);
                assert_eq!(result, serde_json::json!([1]));
            }
            other => panic!("{other:?}"),
        }
        match parse_line(
            r#"{"type":"result","id":"x","status":"retry","countdown":2,"error":{"type":"E","message":"m"}}"#,
        ) {
            Line::Message(FromChild::Result {
                status,
                countdown,
                error,
                ..
            }) => {
                assert_eq!(status, Status::Retry);
                assert_eq!(countdown, Some(2.0));
                assert_eq!(error.unwrap().kind, "E");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_line("hello world"), Line::Noise(_)));
        assert!(matches!(parse_line("{not json"), Line::Noise(_)));
        assert!(matches!(
            parse_line(r#"{"type":"telemetry","x":1}"#),
            Line::Unknown(_)
        ));
        assert!(matches!(
            parse_line(r#"{"type":"ready"}"#),
            Line::Message(FromChild::Ready { pid: None })
        ));
    }
}
