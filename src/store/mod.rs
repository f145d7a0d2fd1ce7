//! The only module that runs SQL. Each statement is a file `sql/<name>.sql`, loaded at compile
//! time, rendered for the configured schema once at start-up, and run by the method of the same
//! name on [`Store`].

mod beat;
mod bench;
mod flow;
mod http;
mod limits;
mod listen;
mod metrics;
mod migrate;
mod rows;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgExecutor, PgPool};
use uuid::Uuid;

use crate::config::{Config, redact_url};
use crate::error::{Error, Result};
use crate::task::{ErrorInfo, Expires, NewTask, TaskId, TaskRecord, TaskState, UniqueScope};

pub use beat::*;
pub use flow::LockRow;
pub use http::{
    QueueRateRow, RetryOutcome, TaskDetailRow, TaskListFilter, TaskListRow, ThroughputRow,
};
pub use listen::{ListenEvent, spawn_listener};
pub use metrics::TaskMetricsRow;
pub use migrate::{MIGRATIONS, MigrationStatus};
pub use rows::*;

/// A validated schema name and the names derived from it (NOTIFY channels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    name: String,
}

impl Schema {
    /// `name` must match `[a-z_][a-z0-9_]*` and be at most 48 bytes, so it never needs quoting
    /// and the channel names derived from it stay under Postgres' 63-byte identifier limit.
    pub fn new(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 48
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::Invalid(format!(
                "schema name {name:?} must match [a-z_][a-z0-9_]* and be at most 48 characters"
            )));
        }
        Ok(Schema { name: name.into() })
    }

    /// The schema name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Render a SQL text written for schema `celeriac` for this schema: the tokens
    /// `celeriac.` (a qualified name) and `"celeriac"` (the schema itself) are replaced.
    pub fn render(&self, sql: &str) -> String {
        if self.name == "celeriac" {
            sql.to_string()
        } else {
            sql.replace("celeriac.", &format!("{}.", self.name))
                .replace("\"celeriac\"", &format!("\"{}\"", self.name))
        }
    }

    /// Channel telling workers that a queue has ready tasks (payload: the queue name).
    pub fn wakeup_channel(&self) -> String {
        format!("{}.wakeup", self.name)
    }

    /// Channel telling waiters that tasks finished (payload: comma-separated ids).
    pub fn done_channel(&self) -> String {
        format!("{}.done", self.name)
    }

    /// Channel telling lock waiters that a lock was released (payload: the lock name).
    pub fn locks_channel(&self) -> String {
        format!("{}.locks", self.name)
    }

    /// Channel for control messages to workers (payload: `terminate:<id>`, `ping:<id>`).
    pub fn control_channel(&self) -> String {
        format!("{}.control", self.name)
    }
}

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// Every SQL statement, rendered for one schema.
        #[derive(Debug)]
        #[allow(missing_docs)]
        pub struct Statements { $(pub $name: String,)* }

        impl Statements {
            /// Load and render every statement for `schema`.
            pub fn new(schema: &Schema) -> Self {
                Statements {
                    $($name: schema.render(include_str!(concat!("../../sql/", stringify!($name), ".sql"))),)*
                }
            }

            /// (name, text) of every statement, for tests.
            pub fn all(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($name), self.$name.as_str()),)*]
            }
        }
    };
}

statements!(
    beat_bench_cron_set,
    beat_bench_fill,
    beat_bench_lag,
    beat_bench_visible,
    beat_clocked_ensure,
    beat_crontab_ensure,
    beat_disable,
    beat_fire,
    beat_fire_log,
    beat_fires_prune,
    beat_install_lock,
    beat_instance_delete,
    beat_instance_upsert,
    beat_interval_ensure,
    beat_load,
    beat_solar_ensure,
    beat_status,
    beat_tables_create,
    beat_tables_exist,
    beat_task_delete,
    beat_task_lock,
    beat_task_set_enabled,
    beat_task_upsert,
    beat_tracker_bump,
    beat_tracker_get,
    beat_triggers_count,
    beat_triggers_install,
    beat_writer_mark,
    bench_analyze,
    bench_progress,
    bench_raw_claim_delete,
    bench_raw_fill,
    bench_raw_insert,
    bench_setup,
    bench_teardown,
    bench_window,
    canvas_apply,
    group_get,
    group_prune_finished,
    clock_read,
    lease_acquire,
    lease_release,
    limit_list,
    limit_reconcile,
    limit_remove,
    limit_set,
    lock_extend,
    lock_get,
    lock_release,
    lock_try,
    migrate_applied,
    migrate_create_schema,
    migrate_history_exists,
    migrate_lock,
    migrate_unlock,
    notify,
    queue_set_paused,
    queue_stats,
    queue_throughput_prune,
    queue_throughput_rates,
    queue_throughput_series,
    session_async_commit,
    session_statement_timeout,
    session_worker,
    task_claim,
    task_complete_many,
    task_exists,
    task_find_unique,
    task_get,
    task_get_detail,
    task_hand_back,
    task_insert,
    task_insert_many,
    task_list,
    task_list_owned,
    task_list_running,
    task_metrics_add,
    task_metrics_list,
    task_next_due,
    task_prune_finished,
    task_purge_queue,
    task_rescue_orphans,
    task_retry,
    task_revoke,
    task_set_progress,
    task_stage_due,
    worker_deregister,
    worker_heartbeat,
    worker_list,
    worker_prune_dead,
    worker_register,
);

/// A task ready to insert: validated, with its id and queue decided.
#[derive(Debug, Clone)]
pub struct PreparedTask {
    /// The id it will have.
    pub id: TaskId,
    /// The queue it goes to.
    pub queue: String,
    /// The rest of it.
    pub task: NewTask,
}

/// One attempt's outcome, as the completer writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The task.
    pub id: TaskId,
    /// The attempt this outcome belongs to (the fencing token).
    pub attempt: i32,
    /// SUCCESS, FAILURE, REVOKED, RETRY (later) or PENDING (again now).
    pub state: TaskState,
    /// The return value (SUCCESS).
    pub result: Option<Value>,
    /// The error (FAILURE, REVOKED, and the cause of a RETRY).
    pub error: Option<ErrorInfo>,
    /// Seconds until the retry (RETRY/PENDING).
    pub retry_in: Option<f64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// Access to Celeriac's tables: a pool plus the rendered statements.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    schema: Schema,
    sql: Arc<Statements>,
    /// Lock release notifications, listened for once per store and its clones.
    hub: Arc<std::sync::OnceLock<listen::Hub>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Parse a database URL into connect options with Celeriac's application name.
pub fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e| Error::Invalid(format!("bad database URL {}: {e}", redact_url(url))))?;
    // Statement logs would print whole SQL texts; slow ones are worth a debug line only
    // (the worker reports what matters itself).
    Ok(opts
        .application_name("celeriac")
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1)))
}

/// What a pooled connection is used for; decides the session settings run after connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Clients, the CLI, the HTTP API: PostgreSQL's defaults.
    Default,
    /// A worker's own statements (`sql/session_worker.sql`).
    Worker,
    /// A worker's claims: as `Worker`, committing asynchronously
    /// (`sql/session_async_commit.sql`).
    WorkerAsyncCommit,
}

/// A pool for `config`, connecting lazily (the first query connects, and reconnects after a
/// server restart). Session settings are applied with SET after connecting rather than as
/// startup options, which connection poolers may refuse.
pub fn pool_for(config: &Config, max: u32, session: Session) -> Result<PgPool> {
    const WORKER: &str = include_str!("../../sql/session_worker.sql");
    const ASYNC_COMMIT: &str = include_str!("../../sql/session_async_commit.sql");
    let opts = connect_options(&config.database_url)?;
    let settings: &'static [&'static str] = match session {
        Session::Default => &[],
        Session::Worker => &[WORKER],
        Session::WorkerAsyncCommit => &[WORKER, ASYNC_COMMIT],
    };
    let mut pool = PgPoolOptions::new()
        .max_connections(max.max(1))
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Some(Duration::from_secs(300)));
    if !settings.is_empty() {
        pool = pool.after_connect(move |conn, _meta| {
            Box::pin(async move {
                for sql in settings {
                    sqlx::Executor::execute(&mut *conn, *sql).await?;
                }
                Ok(())
            })
        });
    }
    Ok(pool.connect_lazy_with(opts))
}

impl Store {
    /// A store on a new pool for `config` (lazy: nothing is connected yet).
    pub fn connect(config: &Config) -> Result<Self> {
        Self::connect_as(config, config.pool_size, Session::Default)
    }

    /// A store on a new pool of `max` connections of kind `session`.
    pub fn connect_as(config: &Config, max: u32, session: Session) -> Result<Self> {
        let schema = Schema::new(&config.schema)?;
        Ok(Store::new(pool_for(config, max, session)?, schema))
    }

    /// A store on an existing pool.
    pub fn new(pool: PgPool, schema: Schema) -> Self {
        let sql = Arc::new(Statements::new(&schema));
        Store {
            pool,
            schema,
            sql,
            hub: Arc::default(),
        }
    }

    /// The same statements on another pool (e.g. one with asynchronous commit for claims).
    pub fn with_pool(&self, pool: PgPool) -> Self {
        Store {
            pool,
            schema: self.schema.clone(),
            sql: self.sql.clone(),
            hub: Arc::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The rendered statements.
    pub fn statements(&self) -> &Statements {
        &self.sql
    }

    // ─── migrations ─────────────────────────────────────────────────────────────────────────

    /// Create or upgrade the schema. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<MigrationStatus> {
        migrate::migrate(self).await
    }

    /// Which migrations are applied and which are missing, without changing anything.
    pub async fn migration_status(&self) -> Result<MigrationStatus> {
        migrate::status(self).await
    }

    // ─── tasks ──────────────────────────────────────────────────────────────────────────────

    /// Insert one task through `executor`, which may be the caller's transaction. False when
    /// nothing was inserted: its unique key is taken (see `task_find_unique`) or its id exists.
    pub async fn task_insert<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        p: &PreparedTask,
    ) -> Result<bool> {
        let t = &p.task;
        let (at, within) = match t.expires {
            Some(Expires::At(at)) => (Some(at), None),
            Some(Expires::In(s)) => (None, Some(s)),
            None => (None, None),
        };
        let scope = t.unique_scope.unwrap_or(UniqueScope::Queued);
        let row: Option<(Uuid, bool)> = sqlx::query_as(&self.sql.task_insert)
            .bind(p.id.0)
            .bind(&t.name)
            .bind(&p.queue)
            .bind(i16::from(t.priority))
            .bind(&t.args)
            .bind(&t.kwargs)
            .bind(&t.headers)
            .bind(t.countdown)
            .bind(t.eta)
            .bind(at)
            .bind(within)
            .bind(t.max_retries.map(|m| m.min(i32::MAX as u32) as i32))
            .bind(t.retry_delay)
            .bind(t.retry_backoff)
            .bind(t.retry_backoff_max)
            .bind(t.retry_jitter)
            .bind(t.soft_time_limit)
            .bind(t.time_limit)
            .bind(t.ignore_result)
            .bind(self.schema.wakeup_channel())
            .bind(t.unique_key.as_deref())
            .bind(scope.as_str())
            .bind(scope.window())
            .fetch_optional(executor)
            .await?;
        Ok(row.is_some())
    }

    /// The live task holding unique key `key` in `scope`, if any.
    pub async fn task_find_unique<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        key: &str,
        scope: UniqueScope,
    ) -> Result<Option<TaskId>> {
        let id: Option<Uuid> = sqlx::query_scalar(&self.sql.task_find_unique)
            .bind(key)
            .bind(scope.as_str())
            .bind(scope.window())
            .fetch_optional(executor)
            .await?;
        Ok(id.map(TaskId))
    }

    /// Whether a task with this id exists.
    pub async fn task_exists<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        id: TaskId,
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(&self.sql.task_exists)
            .bind(id.0)
            .fetch_one(executor)
            .await?)
    }

    /// Insert tasks (in order) through `executor`, which may be the caller's transaction;
    /// returns the ids inserted (a task whose unique key is taken is not).
    pub async fn task_insert_many<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        tasks: &[PreparedTask],
    ) -> Result<Vec<TaskId>> {
        let n = tasks.len();
        let mut ids = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut priorities = Vec::with_capacity(n);
        let mut args = Vec::with_capacity(n);
        let mut kwargs = Vec::with_capacity(n);
        let mut headers = Vec::with_capacity(n);
        let mut countdown = Vec::with_capacity(n);
        let mut eta = Vec::with_capacity(n);
        let mut expires = Vec::with_capacity(n);
        let mut expires_in = Vec::with_capacity(n);
        let mut max_retries = Vec::with_capacity(n);
        let mut retry_delay = Vec::with_capacity(n);
        let mut retry_backoff = Vec::with_capacity(n);
        let mut retry_backoff_max = Vec::with_capacity(n);
        let mut retry_jitter = Vec::with_capacity(n);
        let mut soft = Vec::with_capacity(n);
        let mut hard = Vec::with_capacity(n);
        let mut ignore = Vec::with_capacity(n);
        let mut unique_keys = Vec::with_capacity(n);
        let mut unique_scopes = Vec::with_capacity(n);
        let mut unique_windows = Vec::with_capacity(n);
        for p in tasks {
            let t = &p.task;
            ids.push(p.id.0);
            names.push(t.name.as_str());
            queues.push(p.queue.as_str());
            priorities.push(i16::from(t.priority));
            args.push(&t.args);
            kwargs.push(&t.kwargs);
            headers.push(&t.headers);
            countdown.push(t.countdown);
            eta.push(t.eta);
            let (at, within) = match t.expires {
                Some(Expires::At(at)) => (Some(at), None),
                Some(Expires::In(s)) => (None, Some(s)),
                None => (None, None),
            };
            expires.push(at);
            expires_in.push(within);
            max_retries.push(t.max_retries.map(|m| m.min(i32::MAX as u32) as i32));
            retry_delay.push(t.retry_delay);
            retry_backoff.push(t.retry_backoff);
            retry_backoff_max.push(t.retry_backoff_max);
            retry_jitter.push(t.retry_jitter);
            soft.push(t.soft_time_limit);
            hard.push(t.time_limit);
            ignore.push(t.ignore_result);
            let scope = t.unique_scope.unwrap_or(UniqueScope::Queued);
            unique_keys.push(t.unique_key.as_deref());
            unique_scopes.push(scope.as_str());
            unique_windows.push(scope.window());
        }
        let (inserted, _): (Vec<Uuid>, i64) = sqlx::query_as(&self.sql.task_insert_many)
            .bind(&ids)
            .bind(&names)
            .bind(&queues)
            .bind(&priorities)
            .bind(&args)
            .bind(&kwargs)
            .bind(&headers)
            .bind(&countdown)
            .bind(&eta)
            .bind(&expires)
            .bind(&expires_in)
            .bind(&max_retries)
            .bind(&retry_delay)
            .bind(&retry_backoff)
            .bind(&retry_backoff_max)
            .bind(&retry_jitter)
            .bind(&soft)
            .bind(&hard)
            .bind(&ignore)
            .bind(self.schema.wakeup_channel())
            .bind(&unique_keys)
            .bind(&unique_scopes)
            .bind(&unique_windows)
            .fetch_one(executor)
            .await?;
        Ok(inserted.into_iter().map(TaskId).collect())
    }

    /// Claim up to `limit` ready tasks of `queues` for `worker`.
    pub async fn task_claim(
        &self,
        queues: &[String],
        limit: usize,
        worker: Uuid,
    ) -> Result<Vec<ClaimedRow>> {
        Ok(sqlx::query_as(&self.sql.task_claim)
            .bind(queues)
            .bind(limit.min(i32::MAX as usize) as i32)
            .bind(worker)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Record outcomes; returns the ids whose outcome was accepted (the others were fenced out).
    pub async fn task_complete_many(&self, outcomes: &[Completion]) -> Result<Vec<TaskId>> {
        let ids: Vec<Uuid> = outcomes.iter().map(|c| c.id.0).collect();
        let attempts: Vec<i32> = outcomes.iter().map(|c| c.attempt).collect();
        let states: Vec<&str> = outcomes.iter().map(|c| c.state.as_str()).collect();
        let results: Vec<Option<&Value>> = outcomes.iter().map(|c| c.result.as_ref()).collect();
        let errors: Vec<Option<Value>> = outcomes
            .iter()
            .map(|c| c.error.as_ref().map(ErrorInfo::to_json))
            .collect();
        let retry_in: Vec<Option<f64>> = outcomes.iter().map(|c| c.retry_in).collect();
        let reasons: Vec<Option<&str>> = outcomes
            .iter()
            .map(|c| c.revoked_reason.as_deref())
            .collect();
        let (completed, _, _): (Vec<Uuid>, i64, i64) = sqlx::query_as(&self.sql.task_complete_many)
            .bind(&ids)
            .bind(&attempts)
            .bind(&states)
            .bind(&results)
            .bind(&errors)
            .bind(&retry_in)
            .bind(&reasons)
            .bind(self.schema.done_channel())
            .bind(self.schema.wakeup_channel())
            .fetch_one(&self.pool)
            .await?;
        Ok(completed.into_iter().map(TaskId).collect())
    }

    /// Move due waiting tasks of `queues` to PENDING; returns how many.
    pub async fn task_stage_due(&self, queues: &[String], limit: usize) -> Result<u64> {
        let (n, _): (i64, i64) = sqlx::query_as(&self.sql.task_stage_due)
            .bind(queues)
            .bind(limit.min(i32::MAX as usize) as i32)
            .bind(self.schema.wakeup_channel())
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// How long until the next waiting task of `queues` is due (`None`: nothing waits).
    pub async fn task_next_due(&self, queues: &[String]) -> Result<Option<Duration>> {
        let row: NextDueRow = sqlx::query_as(&self.sql.task_next_due)
            .bind(queues)
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .next_due
            .map(|due| (due - row.now).to_std().unwrap_or(Duration::ZERO)))
    }

    /// One task.
    pub async fn task_get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        let row: Option<TaskRow> = sqlx::query_as(&self.sql.task_get)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TaskRow::into_record).transpose()
    }

    /// A running attempt reports a custom state; false when the attempt is no longer current.
    pub async fn task_set_progress(
        &self,
        id: TaskId,
        attempt: i32,
        state: &str,
        meta: &Value,
    ) -> Result<bool> {
        let r = sqlx::query(&self.sql.task_set_progress)
            .bind(id.0)
            .bind(attempt)
            .bind(state)
            .bind(meta)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Revoke; returns the Celery state afterwards, `None` if there is no such task.
    pub async fn task_revoke(&self, id: TaskId, terminate: bool) -> Result<Option<String>> {
        let (state,): (Option<String>,) = sqlx::query_as(&self.sql.task_revoke)
            .bind(id.0)
            .bind(terminate)
            .fetch_one(&self.pool)
            .await?;
        Ok(state)
    }

    /// Give worker `worker`'s running tasks back to their queues; returns how many.
    pub async fn task_hand_back(&self, worker: Uuid) -> Result<u64> {
        let (n, _): (i64, i64) = sqlx::query_as(&self.sql.task_hand_back)
            .bind(worker)
            .bind(self.schema.wakeup_channel())
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Rescue running tasks of dead workers: (re-queued, failed for good).
    pub async fn task_rescue_orphans(&self, max_lost: u32) -> Result<(u64, u64)> {
        let (requeued, failed, _, _): (i64, i64, i64, i64) =
            sqlx::query_as(&self.sql.task_rescue_orphans)
                .bind(max_lost.min(i32::MAX as u32) as i32)
                .bind(self.schema.wakeup_channel())
                .bind(self.schema.done_channel())
                .fetch_one(&self.pool)
                .await?;
        Ok((requeued.max(0) as u64, failed.max(0) as u64))
    }

    /// Delete up to `chunk` tasks finished more than `retention` ago; returns how many.
    pub async fn task_prune_finished(&self, retention: Duration, chunk: u32) -> Result<u64> {
        let r = sqlx::query(&self.sql.task_prune_finished)
            .bind(retention.as_secs_f64())
            .bind(chunk.min(i32::MAX as u32) as i32)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Revoke up to `chunk` waiting tasks of `queue` (reason `purged`); returns how many.
    pub async fn task_purge_queue(&self, queue: &str, chunk: u32) -> Result<u64> {
        let (n, _): (i64, i64) = sqlx::query_as(&self.sql.task_purge_queue)
            .bind(queue)
            .bind(chunk.min(i32::MAX as u32) as i32)
            .bind(self.schema.done_channel())
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Running tasks (of one worker, or all).
    pub async fn task_list_running(
        &self,
        worker: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<RunningRow>> {
        Ok(sqlx::query_as(&self.sql.task_list_running)
            .bind(worker)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The attempts `worker` owns, with their terminate flags.
    pub async fn task_list_owned(&self, worker: Uuid) -> Result<Vec<OwnedRow>> {
        Ok(sqlx::query_as(&self.sql.task_list_owned)
            .bind(worker)
            .fetch_all(&self.pool)
            .await?)
    }

    // ─── workers ────────────────────────────────────────────────────────────────────────────

    /// Announce a worker.
    pub async fn worker_register(&self, w: &WorkerRegistration) -> Result<()> {
        sqlx::query(&self.sql.worker_register)
            .bind(w.id)
            .bind(&w.hostname)
            .bind(w.pid)
            .bind(&w.queues)
            .bind(w.concurrency)
            .bind(&w.version)
            .bind(w.lease.as_secs_f64())
            .bind(&w.info)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renew a worker's lease. `Ok(None)`: the row is gone (register again); `Ok(Some(true))`:
    /// the lease had lapsed before this renewal.
    pub async fn worker_heartbeat(
        &self,
        id: Uuid,
        lease: Duration,
        stopping: bool,
    ) -> Result<Option<bool>> {
        let row: Option<(bool,)> = sqlx::query_as(&self.sql.worker_heartbeat)
            .bind(id)
            .bind(lease.as_secs_f64())
            .bind(stopping)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Remove a worker's row.
    pub async fn worker_deregister(&self, id: Uuid) -> Result<()> {
        sqlx::query(&self.sql.worker_deregister)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forget workers dead for longer than `grace` that own nothing.
    pub async fn worker_prune_dead(&self, grace: Duration) -> Result<u64> {
        Ok(sqlx::query(&self.sql.worker_prune_dead)
            .bind(grace.as_secs_f64())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// All registered workers.
    pub async fn worker_list(&self) -> Result<Vec<WorkerRow>> {
        Ok(sqlx::query_as(&self.sql.worker_list)
            .fetch_all(&self.pool)
            .await?)
    }

    // ─── queues ─────────────────────────────────────────────────────────────────────────────

    /// Depth and age of every queue.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStatsRow>> {
        Ok(sqlx::query_as(&self.sql.queue_stats)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Pause or resume a queue.
    pub async fn queue_set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        sqlx::query(&self.sql.queue_set_paused)
            .bind(queue)
            .bind(paused)
            .bind(self.schema.wakeup_channel())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ─── leases, notifications ──────────────────────────────────────────────────────────────

    /// Take or renew lease `name`; `Some(token)` when we hold it.
    pub async fn lease_acquire(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(&self.sql.lease_acquire)
            .bind(name)
            .bind(holder)
            .bind(ttl.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Give lease `name` up if we hold it.
    pub async fn lease_release(&self, name: &str, holder: Uuid) -> Result<()> {
        sqlx::query(&self.sql.lease_release)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Send one notification now.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query(&self.sql.notify)
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        assert!(Schema::new("celeriac").is_ok());
        assert!(Schema::new("_q2").is_ok());
        for bad in [
            "",
            "Celeriac",
            "a-b",
            "1abc",
            "a b",
            "x\"y",
            &"a".repeat(49),
        ] {
            assert!(Schema::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn statements_render_for_other_schemas() {
        let s = Statements::new(&Schema::new("jobs").unwrap());
        for (name, text) in s.all() {
            // Outside comments, no word `celeriac` may survive: it would name the default
            // schema (a DROP SCHEMA celeriac would drop the wrong one).
            for line in text.lines() {
                let code = line.split("--").next().unwrap_or("");
                let survives = code
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == "celeriac");
                assert!(
                    !survives,
                    "{name}: `celeriac` survives rendering in {line:?}"
                );
            }
        }
        assert!(s.task_claim.contains("jobs.claim("));
        assert!(s.bench_teardown.contains("\"jobs\""));
    }

    #[test]
    fn sql_files_all_have_a_statement() {
        // Every file under sql/ is registered in `statements!` (and so has a Store method).
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let s = Statements::new(&Schema::new("celeriac").unwrap());
        let known: Vec<&str> = s.all().into_iter().map(|(n, _)| n).collect();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            assert!(
                known.contains(&stem.as_str()),
                "sql/{stem}.sql is not registered"
            );
        }
    }
}
