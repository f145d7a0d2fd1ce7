//! The library's error type. The CLI wraps it with context (anyhow); the HTTP API maps it to
//! status codes.

use crate::task::TaskId;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a statement, or the connection was lost. (The cause is
    /// part of the message, not a separate source, so it is printed once.)
    #[error("database error: {0}")]
    Database(sqlx::Error),

    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),

    /// The input was rejected before it reached the database (bad JSON shape, bad option).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// Like [`Error::Invalid`], naming the request field at fault (`schedule.minute`, `args`),
    /// so the HTTP API can say which one. The message reads on its own.
    #[error("invalid input: {message}")]
    InvalidField {
        /// The field, as a path in the request (`name`, `schedule.timezone`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// args + kwargs + headers are larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Serialized size of args, kwargs and headers together.
        size: usize,
        /// The configured `max_payload_bytes`.
        limit: usize,
    },

    /// A task with the caller-supplied id already exists.
    #[error("a task with id {0} already exists")]
    DuplicateId(TaskId),

    /// No task with this id (never existed, or pruned after the retention).
    #[error("no task with id {0}")]
    NotFound(TaskId),

    /// No periodic task with this name (beat's schedule tables).
    #[error("no periodic task named {0:?}")]
    ScheduleNotFound(String),

    /// A periodic task with this name already exists.
    #[error("a periodic task named {0:?} already exists")]
    ScheduleExists(String),

    /// `AsyncResult::get` gave up waiting.
    #[error("task {0} did not finish within the timeout")]
    Timeout(TaskId),

    /// `AsyncResult::get` on a task that ended FAILURE or REVOKED.
    #[error("task {id} ended {state}: {error_type}: {message}")]
    TaskFailed {
        /// The task.
        id: TaskId,
        /// FAILURE or REVOKED.
        state: String,
        /// The error type (e.g. `NotRegistered`, `TimeLimitExceeded`, `TaskRevokedError`).
        error_type: String,
        /// The error message.
        message: String,
    },

    /// Starting or talking to a local PostgreSQL server failed (`dev`, tests).
    #[error("local postgres: {0}")]
    LocalPostgres(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this error is worth retrying later (connection trouble, server restarting,
    /// serialization failure) rather than a problem with the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => is_transient_db(e),
            _ => false,
        }
    }
}

/// Whether a sqlx error is a passing condition (lost connection, server shutting down or
/// starting, pool exhausted) rather than a bad statement.
pub fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception, 57P: operator intervention (shutdown, terminated
            // backend), 40001/40P01: serialization failure / deadlock, 53: insufficient
            // resources, 58: system error.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code.starts_with("58")
                || code == "40001"
                || code == "40P01"
        }
        _ => false,
    }
}
