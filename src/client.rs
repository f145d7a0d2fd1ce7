//! The client: enqueue, results, revoke, inspect. Used by the CLI, the HTTP API and library
//! users. [`Client::eager`] runs tasks in-process instead, for users' own tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgConnection;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::canvas::{Applied, Canvas};
use crate::config::{Config, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_QUEUE};
use crate::error::{Error, Result};
use crate::lock::LockRequest;
use crate::registry::{Registry, TaskContext, TaskMeta};
use crate::store::{
    ListenEvent, PreparedTask, QueueStatsRow, RunningRow, Store, WorkerRow, spawn_listener,
};
use crate::task::{ErrorInfo, NewTask, RetryPolicy, TaskId, TaskRecord, TaskState, UniqueScope};
use crate::worker::executor::{outcome_for, run_with_limits};

/// Largest purge statement (rows).
const PURGE_CHUNK: u32 = 10_000;
/// `get` re-reads the row this often even without a notification (belt and braces; the
/// notification normally arrives first).
const GET_SAFETY_RECHECK: Duration = Duration::from_secs(5);

/// Insert `p`, or with a unique key that is taken, find the live task holding it. Loops when the
/// holder finishes between the two statements.
async fn insert_one(store: &Store, conn: &mut PgConnection, p: &PreparedTask) -> Result<TaskId> {
    for _ in 0..100 {
        if store.task_insert(&mut *conn, p).await? {
            return Ok(p.id);
        }
        let Some(key) = &p.task.unique_key else {
            return Err(Error::DuplicateId(p.id));
        };
        let scope = p.task.unique_scope.unwrap_or(UniqueScope::Queued);
        if let Some(live) = store.task_find_unique(&mut *conn, key, scope).await? {
            return Ok(live);
        }
        if store.task_exists(&mut *conn, p.id).await? {
            return Err(Error::DuplicateId(p.id));
        }
    }
    Err(Error::Invalid(format!(
        "unique key {:?} kept changing hands; giving up",
        p.task.unique_key
    )))
}

/// Enqueues tasks and reads their results. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    default_queue: String,
    max_payload_bytes: usize,
}

enum Backend {
    Postgres { store: Store, waiters: Waiters },
    Eager(Eager),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner.backend {
            Backend::Postgres { store, .. } => format!("postgres({})", store.schema().name()),
            Backend::Eager(_) => "eager".into(),
        };
        f.debug_struct("Client").field("backend", &kind).finish()
    }
}

impl Client {
    /// A client on the database of `config` (connects lazily).
    pub fn connect(config: &Config) -> Result<Self> {
        Ok(Self::from_store(Store::connect(config)?, config))
    }

    /// A client on an existing store.
    pub fn from_store(store: Store, config: &Config) -> Self {
        Client {
            inner: Arc::new(Inner {
                backend: Backend::Postgres {
                    store,
                    waiters: Waiters::default(),
                },
                default_queue: config.default_queue.clone(),
                max_payload_bytes: config.max_payload_bytes,
            }),
        }
    }

    /// A client that runs every enqueued task at once, in-process, with `registry` (Celery's
    /// `task_always_eager`): for tests of code that enqueues. Retries run immediately (their
    /// countdown is skipped); results are kept in memory.
    pub fn eager(registry: Registry) -> Self {
        Client {
            inner: Arc::new(Inner {
                backend: Backend::Eager(Eager {
                    registry,
                    records: Mutex::new(HashMap::new()),
                }),
                default_queue: DEFAULT_QUEUE.into(),
                max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            }),
        }
    }

    /// The store, unless eager.
    pub fn store(&self) -> Option<&Store> {
        match &self.inner.backend {
            Backend::Postgres { store, .. } => Some(store),
            Backend::Eager(_) => None,
        }
    }

    fn pg(&self) -> Result<&Store> {
        self.store()
            .ok_or_else(|| Error::Invalid("not available on an eager client".into()))
    }

    fn prepare(&self, task: NewTask) -> Result<PreparedTask> {
        task.validate(self.inner.max_payload_bytes)?;
        Ok(PreparedTask {
            id: task.id.unwrap_or_default(),
            queue: task
                .queue
                .clone()
                .unwrap_or_else(|| self.inner.default_queue.clone()),
            task,
        })
    }

    /// Enqueue one task in its own transaction. With a unique key that is taken, the handle is
    /// the live task's.
    pub async fn enqueue(&self, task: NewTask) -> Result<AsyncResult> {
        let prepared = self.prepare(task)?;
        let id = match &self.inner.backend {
            Backend::Postgres { store, .. } => {
                let mut conn = store.pool().acquire().await?;
                insert_one(store, &mut conn, &prepared).await?
            }
            Backend::Eager(eager) => {
                eager.run(prepared.clone()).await;
                prepared.id
            }
        };
        Ok(self.result(id))
    }

    /// Enqueue one task through `conn`, typically the caller's transaction (`&mut *tx`): if it
    /// rolls back, the task never existed and never runs. (An eager client runs the task at
    /// once and ignores `conn`.)
    pub async fn enqueue_with(
        &self,
        conn: &mut PgConnection,
        task: NewTask,
    ) -> Result<AsyncResult> {
        let prepared = self.prepare(task)?;
        let id = match &self.inner.backend {
            Backend::Postgres { store, .. } => insert_one(store, conn, &prepared).await?,
            Backend::Eager(eager) => {
                eager.run(prepared.clone()).await;
                prepared.id
            }
        };
        Ok(self.result(id))
    }

    /// Enqueue many tasks in one statement (one transaction); returns their ids in order (for a
    /// task whose unique key was taken, the live task's id).
    pub async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        match &self.inner.backend {
            Backend::Postgres { store, .. } => {
                let mut conn = store.pool().acquire().await?;
                self.enqueue_many_on(store, &mut conn, tasks).await
            }
            Backend::Eager(eager) => {
                let prepared = self.prepare_all(tasks)?;
                let ids = prepared.iter().map(|p| p.id).collect();
                for p in prepared {
                    eager.run(p).await;
                }
                Ok(ids)
            }
        }
    }

    /// Enqueue many tasks through `conn` (e.g. the caller's transaction).
    pub async fn enqueue_many_with(
        &self,
        conn: &mut PgConnection,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<TaskId>> {
        match &self.inner.backend {
            Backend::Postgres { store, .. } => self.enqueue_many_on(store, conn, tasks).await,
            Backend::Eager(_) => self.enqueue_many(tasks).await,
        }
    }

    async fn enqueue_many_on(
        &self,
        store: &Store,
        conn: &mut PgConnection,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<TaskId>> {
        let prepared = self.prepare_all(tasks)?;
        if prepared.is_empty() {
            return Ok(vec![]);
        }
        let inserted: HashSet<TaskId> = store
            .task_insert_many(&mut *conn, &prepared)
            .await?
            .into_iter()
            .collect();
        let mut ids = Vec::with_capacity(prepared.len());
        for p in &prepared {
            if inserted.contains(&p.id) {
                ids.push(p.id);
            } else {
                // Its unique key was taken (perhaps by an earlier task of this batch), or its
                // id exists: the single-task path sorts that out.
                ids.push(insert_one(store, conn, p).await?);
            }
        }
        Ok(ids)
    }

    fn prepare_all(&self, tasks: Vec<NewTask>) -> Result<Vec<PreparedTask>> {
        tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                self.prepare(t).map_err(|e| match e {
                    Error::Invalid(m) => Error::Invalid(format!("task {i}: {m}")),
                    other => other,
                })
            })
            .collect()
    }

    /// Apply a workflow (chain / group / chord) in its own transaction.
    pub async fn apply(&self, canvas: &Canvas) -> Result<Applied> {
        let mut conn = self.pg()?.pool().acquire().await?;
        self.apply_with(&mut conn, canvas).await
    }

    /// Apply a workflow through `executor` (e.g. the caller's transaction: rolled back, nothing
    /// of it runs).
    pub async fn apply_with(&self, conn: &mut PgConnection, canvas: &Canvas) -> Result<Applied> {
        let store = self.pg()?;
        let json = canvas.to_json(&self.inner.default_queue);
        let payload = serde_json::to_vec(&json).map(|b| b.len()).unwrap_or(0);
        if payload > self.inner.max_payload_bytes * 16 {
            return Err(Error::PayloadTooLarge {
                size: payload,
                limit: self.inner.max_payload_bytes * 16,
            });
        }
        let out = store.canvas_apply(conn, &json).await.map_err(|e| match e {
            Error::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("22023") => {
                Error::Invalid(db.message().to_string())
            }
            other => other,
        })?;
        let id = |k: &str| -> Result<TaskId> {
            out[k]
                .as_str()
                .ok_or_else(|| Error::Invalid(format!("celeriac.apply returned no {k}")))?
                .parse()
        };
        Ok(Applied {
            id: id("id")?,
            root_id: id("root_id")?,
            canvas: out["canvas"].clone(),
        })
    }

    /// A handle on a group's or chord's combined state and results.
    pub fn group(&self, id: TaskId) -> GroupResult {
        GroupResult {
            client: self.clone(),
            id,
        }
    }

    /// Ask for named lock `name` for `ttl` (see [`crate::lock`]).
    pub fn lock(&self, name: impl Into<String>, ttl: Duration) -> Result<LockRequest> {
        Ok(LockRequest::new(self.pg()?.clone(), name, ttl))
    }

    /// A handle on task `id`'s state and result.
    pub fn result(&self, id: TaskId) -> AsyncResult {
        AsyncResult {
            client: self.clone(),
            id,
        }
    }

    /// Revoke a task: a waiting one becomes REVOKED now; a running one is cancelled when
    /// `terminate` (else it finishes, as in Celery). Returns the Celery state afterwards.
    pub async fn revoke(&self, id: TaskId, terminate: bool) -> Result<String> {
        match &self.inner.backend {
            Backend::Postgres { store, .. } => store
                .task_revoke(id, terminate)
                .await?
                .ok_or(Error::NotFound(id)),
            Backend::Eager(e) => e
                .records
                .lock()
                .ok()
                .and_then(|r| r.get(&id).map(|r| r.celery_state.clone()))
                .ok_or(Error::NotFound(id)),
        }
    }

    /// Revoke (reason `purged`) every waiting task of `queue`; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64> {
        let store = self.pg()?;
        let mut total = 0;
        loop {
            let n = store.task_purge_queue(queue, PURGE_CHUNK).await?;
            total += n;
            if n < u64::from(PURGE_CHUNK) {
                return Ok(total);
            }
        }
    }

    /// Depth, age and consumers of every queue.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStatsRow>> {
        self.pg()?.queue_stats().await
    }

    /// Registered workers.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        self.pg()?.worker_list().await
    }

    /// Running tasks, oldest first.
    pub async fn running(&self, limit: i64) -> Result<Vec<RunningRow>> {
        self.pg()?.task_list_running(None, limit).await
    }

    /// Set (or replace) a rate limit / concurrency cap; every worker honours it from its next
    /// claim.
    pub async fn set_limit(&self, spec: &crate::limits::LimitSpec) -> Result<()> {
        spec.validate()?;
        self.pg()?.limit_set(spec).await
    }

    /// Remove a limit; false if there was none.
    pub async fn remove_limit(&self, kind: crate::limits::LimitKind, target: &str) -> Result<bool> {
        self.pg()?.limit_remove(kind, target).await
    }

    /// Every limit with its current use.
    pub async fn limits(&self) -> Result<Vec<crate::limits::LimitRow>> {
        self.pg()?.limit_list().await
    }

    /// Pause (or resume) a queue cluster-wide.
    pub async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        self.pg()?.queue_set_paused(queue, paused).await
    }

    async fn record(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        match &self.inner.backend {
            Backend::Postgres { store, .. } => store.task_get(id).await,
            Backend::Eager(e) => Ok(e.records.lock().ok().and_then(|r| r.get(&id).cloned())),
        }
    }
}

/// A handle on one task's state and result (Celery's `AsyncResult`).
#[derive(Clone, Debug)]
pub struct AsyncResult {
    client: Client,
    id: TaskId,
}

impl AsyncResult {
    /// The task id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Everything stored about the task; `None` if unknown (never enqueued, or pruned).
    pub async fn info(&self) -> Result<Option<TaskRecord>> {
        self.client.record(self.id).await
    }

    /// Celery's state: PENDING for an unknown id, as Celery reports it.
    pub async fn state(&self) -> Result<String> {
        Ok(self
            .info()
            .await?
            .map(|r| r.celery_state)
            .unwrap_or_else(|| "PENDING".into()))
    }

    /// Finished (SUCCESS, FAILURE or REVOKED).
    pub async fn ready(&self) -> Result<bool> {
        Ok(self.info().await?.is_some_and(|r| r.state.is_finished()))
    }

    /// Finished with SUCCESS.
    pub async fn successful(&self) -> Result<bool> {
        Ok(self
            .info()
            .await?
            .is_some_and(|r| r.state == TaskState::Success))
    }

    /// Finished with FAILURE.
    pub async fn failed(&self) -> Result<bool> {
        Ok(self
            .info()
            .await?
            .is_some_and(|r| r.state == TaskState::Failure))
    }

    /// Wait until the task finishes, up to `timeout`, and return its result. Waits on a
    /// notification from the database, not by polling. A FAILURE or REVOKED task is
    /// [`Error::TaskFailed`].
    pub async fn get(&self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let (store, waiters) = match &self.client.inner.backend {
            Backend::Eager(_) => {
                let rec = self.info().await?.ok_or(Error::Timeout(self.id))?;
                return finished_value(&rec).unwrap_or(Err(Error::Timeout(self.id)));
            }
            Backend::Postgres { store, waiters } => (store, waiters),
        };
        let mut sub = waiters.subscribe(store, self.id).await;
        loop {
            if let Some(rec) = store.task_get(self.id).await?
                && let Some(done) = finished_value(&rec)
            {
                return done;
            }
            let recheck = (Instant::now() + GET_SAFETY_RECHECK).min(deadline);
            tokio::select! {
                _ = sub.changed() => {}
                _ = sleep_until(recheck) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(self.id));
                    }
                }
            }
        }
    }
}

/// A group's or chord's combined state (`celeriac.group_result`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    /// The group id.
    pub id: TaskId,
    /// `group` or `chord`.
    pub kind: String,
    /// PENDING, SUCCESS or FAILURE (a member failed).
    pub state: String,
    /// Members.
    pub size: i64,
    /// Members finished so far.
    pub completed: i64,
    /// Members that failed.
    pub failed: i64,
    /// Members' results in order (null while running or failed).
    pub results: Vec<Value>,
    /// The first member failure.
    pub error: Option<ErrorInfo>,
}

/// A handle on a group (or a chord's header).
#[derive(Debug, Clone)]
pub struct GroupResult {
    client: Client,
    id: TaskId,
}

impl GroupResult {
    /// The group id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Its combined state; `None` if unknown.
    pub async fn info(&self) -> Result<Option<GroupInfo>> {
        let Some(v) = self.client.pg()?.group_get(self.id.0).await? else {
            return Ok(None);
        };
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("unexpected group_result shape: {e}")))
    }

    /// Wait until every member finished, up to `timeout`; the results in order, or
    /// [`Error::TaskFailed`] when a member failed.
    pub async fn get(&self, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let Backend::Postgres { store, waiters } = &self.client.inner.backend else {
            return Err(Error::Invalid("groups need a Postgres client".into()));
        };
        let mut sub = waiters.subscribe(store, self.id).await;
        loop {
            if let Some(g) = self.info().await? {
                match g.state.as_str() {
                    "SUCCESS" => return Ok(g.results),
                    "FAILURE" => {
                        let e = g
                            .error
                            .unwrap_or_else(|| ErrorInfo::new("GroupFailed", "a member failed"));
                        return Err(Error::TaskFailed {
                            id: self.id,
                            state: "FAILURE".into(),
                            error_type: e.kind,
                            message: e.message,
                        });
                    }
                    _ => {}
                }
            }
            let recheck = (Instant::now() + GET_SAFETY_RECHECK).min(deadline);
            tokio::select! {
                _ = sub.changed() => {}
                _ = sleep_until(recheck) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(self.id));
                    }
                }
            }
        }
    }
}

fn finished_value(rec: &TaskRecord) -> Option<Result<Value>> {
    match rec.state {
        TaskState::Success => Some(Ok(rec.result.clone().unwrap_or(Value::Null))),
        TaskState::Failure | TaskState::Revoked => {
            let err = rec.error.clone().unwrap_or_else(|| {
                ErrorInfo::new(
                    "TaskRevokedError",
                    rec.revoked_reason
                        .clone()
                        .unwrap_or_else(|| "revoked".into()),
                )
            });
            Some(Err(Error::TaskFailed {
                id: rec.id,
                state: rec.state.to_string(),
                error_type: err.kind,
                message: err.message,
            }))
        }
        _ => None,
    }
}

/// Waiters for finished tasks, fed by one LISTEN connection per client (started on first use).
#[derive(Default)]
struct Waiters {
    state: Arc<Mutex<WaitersState>>,
}

#[derive(Default)]
struct WaitersState {
    by_task: HashMap<TaskId, watch::Sender<u64>>,
    /// Bumped on every (re)connection: waiters re-check, since notifications may be lost.
    epoch: Option<watch::Sender<u64>>,
    listener: Option<CancellationToken>,
}

/// One waiter's view: fires when its task may have finished.
struct Subscription {
    id: TaskId,
    task: watch::Receiver<u64>,
    epoch: watch::Receiver<u64>,
    state: Arc<Mutex<WaitersState>>,
}

impl Subscription {
    async fn changed(&mut self) {
        tokio::select! {
            r = self.task.changed() => { if r.is_err() { std::future::pending::<()>().await } }
            r = self.epoch.changed() => { if r.is_err() { std::future::pending::<()>().await } }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.lock() {
            // Our receiver is still counted while we are being dropped.
            if st
                .by_task
                .get(&self.id)
                .is_some_and(|tx| tx.receiver_count() <= 1)
            {
                st.by_task.remove(&self.id);
            }
        }
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        if let Ok(st) = self.state.lock()
            && let Some(stop) = &st.listener
        {
            stop.cancel();
        }
    }
}

impl Waiters {
    async fn subscribe(&self, store: &Store, id: TaskId) -> Subscription {
        let (task, mut epoch, fresh) = {
            let mut st = match self.state.lock() {
                Ok(st) => st,
                Err(poisoned) => poisoned.into_inner(),
            };
            let task = st
                .by_task
                .entry(id)
                .or_insert_with(|| watch::channel(0).0)
                .subscribe();
            let fresh = st.epoch.is_none();
            let epoch = st
                .epoch
                .get_or_insert_with(|| watch::channel(0).0)
                .subscribe();
            if fresh {
                st.listener = Some(self.start_listener(store, &st));
            }
            (task, epoch, fresh)
        };
        if fresh || *epoch.borrow() == 0 {
            // Wait (briefly) until the listener is listening, so nothing sent from now on is
            // missed; if it cannot connect, `get` still re-reads the row periodically.
            let _ = tokio::time::timeout(Duration::from_secs(5), epoch.wait_for(|e| *e > 0)).await;
        }
        let epoch = {
            let st = match self.state.lock() {
                Ok(st) => st,
                Err(poisoned) => poisoned.into_inner(),
            };
            st.epoch
                .as_ref()
                .map(|e| e.subscribe())
                .unwrap_or_else(|| watch::channel(0).1)
        };
        Subscription {
            id,
            task,
            epoch,
            state: self.state.clone(),
        }
    }

    fn start_listener(&self, store: &Store, st: &WaitersState) -> CancellationToken {
        let stop = CancellationToken::new();
        let done = store.schema().done_channel();
        let epoch = st.epoch.clone();
        let state = self.state.clone();
        let listen_store = store.clone();
        spawn_listener(
            listen_store,
            vec![done.clone()],
            stop.clone(),
            move |ev| match ev {
                ListenEvent::Reconnected => {
                    if let Some(e) = &epoch {
                        e.send_modify(|n| *n += 1);
                    }
                }
                ListenEvent::Notification { channel, payload } if channel == done => {
                    let Ok(st) = state.lock() else { return };
                    if st.by_task.is_empty() {
                        return;
                    }
                    for id in payload.split(',') {
                        if let Ok(id) = id.parse::<TaskId>()
                            && let Some(tx) = st.by_task.get(&id)
                        {
                            tx.send_modify(|n| *n += 1);
                        }
                    }
                }
                ListenEvent::Notification { .. } => {}
            },
        );
        stop
    }
}

/// In-process execution for [`Client::eager`].
struct Eager {
    registry: Registry,
    records: Mutex<HashMap<TaskId, TaskRecord>>,
}

impl Eager {
    async fn run(&self, p: PreparedTask) {
        let now = Utc::now();
        let t = &p.task;
        let mut rec = TaskRecord {
            id: p.id,
            name: t.name.clone(),
            queue: p.queue.clone(),
            state: TaskState::Started,
            celery_state: "STARTED".into(),
            priority: i16::from(t.priority),
            args: t.args.clone(),
            kwargs: t.kwargs.clone(),
            headers: t.headers.clone(),
            created_at: now,
            run_at: now,
            expires_at: None,
            started_at: Some(now),
            finished_at: None,
            attempt: 0,
            retries: 0,
            lost: 0,
            max_retries: t.max_retries.map(|m| m as i32),
            ignore_result: t.ignore_result,
            worker_id: None,
            result: None,
            error: None,
            progress_state: None,
            progress: None,
            revoked_reason: None,
        };
        let Some(reg) = self.registry.resolve(&t.name).cloned() else {
            rec.state = TaskState::Failure;
            rec.error = Some(ErrorInfo::new(
                "NotRegistered",
                format!("task {:?} is not registered", t.name),
            ));
            self.finish(rec);
            return;
        };
        let policy = reg
            .options
            .retry
            .unwrap_or_else(RetryPolicy::default)
            .with_overrides(
                t.max_retries.map(|m| m as i32),
                t.retry_delay,
                t.retry_backoff,
                t.retry_backoff_max,
                t.retry_jitter,
            );
        let log = Arc::new(Mutex::new(Vec::new()));
        loop {
            rec.attempt += 1;
            let meta = TaskMeta {
                id: p.id,
                name: t.name.clone(),
                queue: p.queue.clone(),
                args: t.args.clone(),
                kwargs: t.kwargs.clone(),
                headers: t.headers.clone(),
                retries: rec.retries as u32,
                attempt: rec.attempt,
                created_at: now,
                run_at: now,
                soft_time_limit: t.soft_time_limit.or(reg.options.soft_time_limit),
                time_limit: t.time_limit.or(reg.options.time_limit),
                retry_policy: policy,
                retry_on_time_limit: reg.options.retry_on_time_limit,
            };
            let ctx = TaskContext::for_eager(meta, log.clone());
            let answer =
                run_with_limits(&ctx, reg.handler.call(ctx.clone()), Duration::from_secs(5)).await;
            let Some(c) = outcome_for(&ctx, answer, t.ignore_result, 0.0) else {
                rec.state = TaskState::Failure;
                rec.error = Some(ErrorInfo::new("WorkerShutdown", "cancelled"));
                break;
            };
            rec.error = c.error;
            match c.state {
                TaskState::Retry | TaskState::Pending => {
                    rec.retries += 1;
                    continue;
                }
                state => {
                    rec.state = state;
                    rec.result = c.result;
                    rec.revoked_reason = c.revoked_reason;
                    break;
                }
            }
        }
        if let Some((s, m)) = log.lock().ok().and_then(|l| l.last().cloned()) {
            rec.progress_state = Some(s);
            rec.progress = Some(m);
        }
        self.finish(rec);
    }

    fn finish(&self, mut rec: TaskRecord) {
        rec.finished_at = Some(Utc::now());
        rec.celery_state = rec.state.to_string();
        if let Ok(mut r) = self.records.lock() {
            r.insert(rec.id, rec);
        }
    }
}
