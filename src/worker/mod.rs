//! A worker process: claims tasks from its queues and runs them.
//!
//! - [`producer`]: waits for a wake-up (NOTIFY, a freed slot, the next due ETA, or the jittered
//!   poll) and claims at most as many tasks as it has free slots, in one statement.
//! - [`executor`]: runs one claimed task with its time limits and cancellation, and turns the
//!   handler's answer into an outcome (success, failure, retry per policy).
//! - [`completer`]: writes outcomes in batches (whatever accumulated while the previous batch
//!   was being written), retrying through connection loss; never drops one.
//! - [`heartbeat`]: renews the worker's lease, and reconciles what it runs with what the
//!   database says it owns (terminate requests, tasks rescued from a lapsed lease).
//!
//! Shutdown is two-step: soft (stop claiming, let running tasks finish within the grace
//! period) then hard (cancel what still runs and hand it back to the queue).

mod completer;
pub(crate) mod executor;
mod heartbeat;
mod metrics;
mod producer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Config, MaintenanceConfig, WorkerConfig};
use crate::error::{Error, Result};
use crate::maintenance::Maintenance;
use crate::registry::{CancelReason, Registry, TaskContext};
use crate::store::{
    Completion, ListenEvent, Session, Store, WorkerRegistration, pool_for, spawn_listener,
};
use crate::task::TaskId;

/// Two-step shutdown signal shared by every long-running component.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    soft: CancellationToken,
    hard: CancellationToken,
}

impl Shutdown {
    /// A signal nobody has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop taking new work; finish what runs.
    pub fn begin(&self) {
        self.soft.cancel();
    }

    /// Stop now: cancel what runs and hand it back.
    pub fn now(&self) {
        self.soft.cancel();
        self.hard.cancel();
    }

    /// Token cancelled by [`Shutdown::begin`] (and [`Shutdown::now`]).
    pub fn soft(&self) -> &CancellationToken {
        &self.soft
    }

    /// Token cancelled by [`Shutdown::now`].
    pub fn hard(&self) -> &CancellationToken {
        &self.hard
    }

    /// Trigger on SIGTERM/SIGINT: the first begins a graceful shutdown, the second stops now.
    pub fn on_signals(&self) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| Error::Invalid(format!("cannot install SIGTERM handler: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| Error::Invalid(format!("cannot install SIGINT handler: {e}")))?;
        let me = self.clone();
        tokio::spawn(async move {
            for n in 0.. {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                if n == 0 {
                    tracing::info!(
                        "shutdown requested: finishing running tasks (signal again to stop now)"
                    );
                    me.begin();
                } else {
                    tracing::warn!("second signal: stopping now, handing running tasks back");
                    me.now();
                    break;
                }
            }
        });
        Ok(())
    }
}

/// A task this worker is running.
struct Running {
    attempt: i32,
    ctx: TaskContext,
}

/// State shared by the worker's components.
struct Shared {
    /// Statements on the main pool (completions, heartbeats, progress).
    store: Store,
    /// Statements on the claim pool (asynchronous commit when configured).
    claim_store: Store,
    registry: Registry,
    config: WorkerConfig,
    id: Uuid,
    /// What runs now, by task id: for cancellation and ownership checks.
    running: Mutex<HashMap<TaskId, Running>>,
    /// A slot was freed (the producer may claim again).
    slot_freed: Notify,
    /// A queue of ours may have ready tasks.
    wake: Notify,
    /// Outcomes on their way to the completer.
    outcomes: mpsc::Sender<Completion>,
    /// Counts flushed to the metrics tables on each heartbeat.
    metrics: metrics::Recorder,
}

impl Shared {
    fn running_count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Ask a running task to stop, if we run it (and, when given, with this attempt).
    fn cancel(&self, id: TaskId, attempt: Option<i32>, reason: CancelReason) -> bool {
        let Ok(running) = self.running.lock() else {
            return false;
        };
        match running.get(&id) {
            Some(r) if attempt.is_none_or(|a| a == r.attempt) => {
                r.ctx.cancel(reason);
                true
            }
            _ => false,
        }
    }

    fn cancel_all(&self, reason: CancelReason) {
        if let Ok(running) = self.running.lock() {
            for r in running.values() {
                r.ctx.cancel(reason);
            }
        }
    }
}

/// What a worker did, reported when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Tasks still running at the end of the grace period, handed back to their queues.
    pub handed_back: u64,
}

/// A worker: consumes queues with a fixed number of slots.
pub struct Worker {
    shared: Arc<Shared>,
    outcomes_rx: mpsc::Receiver<Completion>,
    listener_store: Store,
    maintenance: Option<MaintenanceConfig>,
}

impl Worker {
    /// A worker on the database of `config`, running tasks of `registry` as `wcfg` says.
    /// `maintenance`: also rescue dead workers' tasks and (when elected) prune old rows.
    pub fn new(
        config: &Config,
        registry: Registry,
        wcfg: WorkerConfig,
        maintenance: Option<MaintenanceConfig>,
    ) -> Result<Self> {
        if wcfg.queues.is_empty() {
            return Err(Error::Invalid("a worker needs at least one queue".into()));
        }
        if wcfg.concurrency == 0 {
            return Err(Error::Invalid("concurrency must be at least 1".into()));
        }
        let store = Store::connect_as(config, config.pool_size, Session::Worker)?;
        let claim_session = if wcfg.async_claim_commit {
            Session::WorkerAsyncCommit
        } else {
            Session::Worker
        };
        let claim_store = store.with_pool(pool_for(config, 1, claim_session)?);
        let listener_store = store.with_pool(pool_for(config, 1, Session::Default)?);
        // Outcomes wait here while the database is away; a full channel stops new claims
        // because slots are only freed once an outcome is queued.
        let (tx, rx) = mpsc::channel(wcfg.concurrency.max(1) * 4 + 1024);
        let mut queues = Vec::new();
        for q in &wcfg.queues {
            if !queues.contains(q) {
                queues.push(q.clone());
            }
        }
        let wcfg = WorkerConfig { queues, ..wcfg };
        Ok(Worker {
            shared: Arc::new(Shared {
                store,
                claim_store,
                registry,
                config: wcfg,
                id: Uuid::new_v4(),
                running: Mutex::new(HashMap::new()),
                slot_freed: Notify::new(),
                wake: Notify::new(),
                outcomes: tx,
                metrics: metrics::Recorder::default(),
            }),
            outcomes_rx: rx,
            listener_store,
            maintenance,
        })
    }

    /// This worker's id (its row in `celeriac.workers`).
    pub fn id(&self) -> Uuid {
        self.shared.id
    }

    /// Run until `shutdown`; returns after running tasks finished or were handed back.
    pub async fn run(self, shutdown: Shutdown) -> Result<WorkerReport> {
        let Worker {
            shared,
            outcomes_rx,
            listener_store,
            maintenance,
        } = self;
        let cfg = &shared.config;
        register_until_done(&shared, &shutdown).await?;
        tracing::info!(
            worker.id = %shared.id, queues = ?cfg.queues, concurrency = cfg.concurrency,
            "worker started"
        );

        // Background components stop with `background`, after the drain.
        let background = CancellationToken::new();
        let listener = {
            let s = shared.clone();
            let schema = shared.store.schema().clone();
            let wakeup = schema.wakeup_channel();
            let control = schema.control_channel();
            spawn_listener(
                listener_store,
                vec![wakeup.clone(), control.clone()],
                background.clone(),
                move |ev| match ev {
                    ListenEvent::Reconnected => s.wake.notify_one(),
                    ListenEvent::Notification { channel, payload } => {
                        if channel == wakeup {
                            if s.config.queues.contains(&payload) {
                                s.wake.notify_one();
                            }
                        } else if channel == control
                            && let Some(id) = payload.strip_prefix("terminate:")
                            && let Ok(id) = id.parse::<TaskId>()
                        {
                            s.cancel(id, None, CancelReason::Terminated);
                        }
                    }
                },
            )
        };
        let flush = CancellationToken::new();
        let completer = tokio::spawn(completer::run(
            shared.store.clone(),
            outcomes_rx,
            flush.clone(),
        ));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat::run(
            shared.clone(),
            background.clone(),
            stopping.clone(),
        ));
        let maint = maintenance.map(|m| {
            let mut cfg = m;
            // Rescue decisions use this worker's view of how many losses are allowed.
            cfg.rescue_interval = cfg.rescue_interval.min(shared.config.lease / 2);
            let maint = Maintenance::new(shared.store.clone(), cfg, shared.config.max_lost);
            tokio::spawn(maint.run(background.clone()))
        });

        producer::run(shared.clone(), shutdown.soft().clone()).await;

        // Soft shutdown: no more claims. Tell the world, then let running tasks finish.
        stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = shared
            .store
            .worker_heartbeat(shared.id, cfg.lease, true)
            .await;
        let running = shared.running_count();
        if running > 0 {
            tracing::info!(running, grace = ?cfg.shutdown_grace, "waiting for running tasks");
        }
        let drained = wait_until_idle(&shared, cfg.shutdown_grace, shutdown.hard()).await;
        if !drained {
            let left = shared.running_count();
            tracing::warn!(left, "grace period over: cancelling running tasks");
            shared.cancel_all(CancelReason::Shutdown);
            // Handlers get cancel_grace to wind down, then are aborted by the executor.
            wait_until_idle(
                &shared,
                cfg.cancel_grace + Duration::from_secs(1),
                &CancellationToken::new(),
            )
            .await;
        }

        // Every handler has returned (or was aborted): flush the outcomes still queued.
        flush.cancel();
        if let Err(e) = completer.await {
            tracing::error!(error = %e, "completer task failed");
        }

        let handed_back = match shared.store.task_hand_back(shared.id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "could not hand tasks back; they will be rescued when the lease expires");
                0
            }
        };
        if handed_back > 0 {
            tracing::warn!(handed_back, "unfinished tasks handed back to their queues");
        }
        background.cancel();
        let _ = listener.await;
        let _ = heartbeat.await;
        if let Some(m) = maint {
            let _ = m.await;
        }
        shared.metrics.flush(&shared.store).await;
        if let Err(e) = shared.store.worker_deregister(shared.id).await {
            tracing::warn!(error = %e, "could not deregister; the row will expire");
        }
        tracing::info!(worker.id = %shared.id, "worker stopped");
        Ok(WorkerReport { handed_back })
    }
}

/// What this worker announces about itself.
fn registration(shared: &Shared) -> WorkerRegistration {
    let cfg = &shared.config;
    WorkerRegistration {
        id: shared.id,
        hostname: cfg.hostname.clone(),
        pid: std::process::id() as i32,
        queues: cfg.queues.clone(),
        concurrency: cfg.concurrency.min(i32::MAX as usize) as i32,
        version: env!("CARGO_PKG_VERSION").into(),
        lease: cfg.lease,
        info: serde_json::json!({"pool": cfg.pool, "registered": shared.registry.names()}),
    }
}

async fn register_until_done(shared: &Shared, shutdown: &Shutdown) -> Result<()> {
    let reg = registration(shared);
    let mut backoff = Duration::from_millis(200);
    loop {
        match shared.store.worker_register(&reg).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot register worker yet; retrying in {backoff:?}");
                tokio::select! {
                    _ = shutdown.soft().cancelled() => return Err(e),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Wait until nothing runs, `within` elapses, or `abort` fires. True when idle.
async fn wait_until_idle(shared: &Shared, within: Duration, abort: &CancellationToken) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if shared.running_count() == 0 {
            return true;
        }
        tokio::select! {
            _ = shared.slot_freed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => return shared.running_count() == 0,
            _ = abort.cancelled() => return shared.running_count() == 0,
        }
    }
}
