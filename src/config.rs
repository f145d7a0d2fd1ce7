//! Typed settings with every default in one place. The CLI fills them from flags and
//! environment variables; library users build them in code.

use std::fmt;
use std::time::Duration;

use crate::task::RetryPolicy;

/// The queue tasks go to when none is given (Celery's `task_default_queue`).
pub const DEFAULT_QUEUE: &str = "celery";
/// The schema Celeriac's tables live in.
pub const DEFAULT_SCHEMA: &str = "celeriac";
/// Largest args + kwargs + headers accepted at enqueue (the SQL API enforces the same number).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Connection and schema settings shared by every component.
#[derive(Clone)]
pub struct Config {
    /// `postgres://…` URL. Holds a password: never printed (see the `Debug` impl).
    pub database_url: String,
    /// Schema of Celeriac's tables (`[a-z_][a-z0-9_]*`).
    pub schema: String,
    /// Queue for tasks enqueued without one.
    pub default_queue: String,
    /// Largest payload accepted at enqueue, in bytes.
    pub max_payload_bytes: usize,
    /// Connections in the pool of one process.
    pub pool_size: u32,
}

impl Config {
    /// Settings for `database_url` with every other value at its default.
    pub fn new(database_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            schema: DEFAULT_SCHEMA.into(),
            default_queue: DEFAULT_QUEUE.into(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            pool_size: 10,
        }
    }

    /// The same settings with another schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("schema", &self.schema)
            .field("default_queue", &self.default_queue)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URL with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}://{}:***{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
    }
    if let Some(i) = url.find("password=") {
        let end = url[i..]
            .find(['&', ' '])
            .map(|e| i + e)
            .unwrap_or(url.len());
        return format!("{}password=***{}", &url[..i], &url[end..]);
    }
    url.to_string()
}

/// How a worker claims, runs and reports tasks.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues consumed, in priority order for the claim.
    pub queues: Vec<String>,
    /// Tasks run at once (Celery's `-c`).
    pub concurrency: usize,
    /// Most tasks claimed by one statement.
    pub claim_batch: usize,
    /// Fallback poll when no notification arrives (jittered ±20 %).
    pub poll_interval: Duration,
    /// How often the worker renews its lease.
    pub heartbeat_interval: Duration,
    /// Lease length: a worker silent for this long is dead and its tasks are rescued.
    pub lease: Duration,
    /// After SIGTERM, how long running tasks may take before they are cancelled and handed back.
    pub shutdown_grace: Duration,
    /// Times a task may lose its worker before it ends FAILURE `WorkerLostError`.
    pub max_lost: u32,
    /// Retry policy of tasks that do not register their own.
    pub default_retry: RetryPolicy,
    /// Soft time limit of tasks that set none (seconds).
    pub default_soft_time_limit: Option<f64>,
    /// Hard time limit of tasks that set none (seconds).
    pub default_time_limit: Option<f64>,
    /// After a soft limit or a terminate request, how long the handler may take to wind down
    /// before it is aborted.
    pub cancel_grace: Duration,
    /// Commit claims asynchronously (`synchronous_commit = off`): saves a WAL flush per claim.
    /// A claim lost in a server crash only makes the task claimable again.
    pub async_claim_commit: bool,
    /// The hostname shown in `inspect`.
    pub hostname: String,
    /// How tasks run, as shown in `inspect` (`async`, `process`).
    pub pool: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: vec![DEFAULT_QUEUE.into()],
            concurrency: 10,
            claim_batch: 200,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            lease: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            max_lost: 5,
            default_retry: RetryPolicy::default(),
            default_soft_time_limit: None,
            default_time_limit: None,
            cancel_grace: Duration::from_secs(5),
            async_claim_commit: true,
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            pool: "async".into(),
        }
    }
}

/// Housekeeping done by the elected maintenance leader (and rescue by every worker).
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Finished tasks are deleted this long after they finished.
    pub retention: Duration,
    /// How often pruning runs.
    pub prune_interval: Duration,
    /// Rows deleted per statement while pruning.
    pub prune_chunk: u32,
    /// How often dead workers' tasks are looked for.
    pub rescue_interval: Duration,
    /// Leader lease length for the maintenance role.
    pub leader_ttl: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            retention: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(60),
            prune_chunk: 1000,
            rescue_interval: Duration::from_secs(5),
            leader_ttl: Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/app"),
            "postgres://bob:***@db:5432/app"
        );
        assert_eq!(redact_url("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(
            redact_url("host=db password=s3cret user=bob"),
            "host=db password=*** user=bob"
        );
        let c = Config::new("postgres://u:pw@h/d");
        assert!(!format!("{c:?}").contains("pw@"));
    }
}
