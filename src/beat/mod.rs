//! Beat: fires periodic tasks defined in django-celery-beat's tables, highly available.
//!
//! - [`crontab`], [`solar`], [`schedule`]: Celery's schedules and `DatabaseScheduler` semantics
//!   (anchoring, catch-up, order of checks), with its bugs fixed.
//! - [`admin`]: list/add/update/enable/disable/remove/run-now/next — used by the CLI and the
//!   HTTP API, with plain request/response structs.
//! - [`toml`]: schedules from the `[beat]` section of the configuration file.
//! - [`words`]: schedules in words, for the dashboard and the API.
//! - [`Beat`]: the loop. Every beat process competes for the `beat` lease
//!   ([`crate::maintenance::Leader`]); only the holder schedules. A send enqueues the task and
//!   writes `last_run_at`, `total_run_count` and `date_changed` back in one transaction,
//!   guarded so that a slot is taken at most once even if two beats believe they lead (see
//!   `sql/beat_fire.sql`), and logged in `celeriac.beat_fires` whose key rejects a duplicate.
//!   Edits reach the leader through statement-level triggers on the django tables (NOTIFY
//!   `<schema>.beat` at commit: Django saves, admin bulk actions, `QuerySet.update()`, raw SQL),
//!   plus a full reload every `reload_interval` and a poll of `last_update` when the triggers
//!   are missing.

pub mod admin;
pub mod crontab;
pub mod schedule;
pub mod solar;
pub mod toml;
pub mod words;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::maintenance::Leader;
use crate::store::{BeatTables, FireRequest, ListenEvent, Store, spawn_listener};
use crate::task::{NewTask, TaskId};

use schedule::{BadAction, BadRow, Due, Entry, entry_from_row};

/// Lease name of the beat leader.
pub const BEAT_LEASE: &str = "beat";
/// Default schema of django-celery-beat's tables.
pub const DEFAULT_DJANGO_SCHEMA: &str = "public";

/// How beat runs.
#[derive(Debug, Clone)]
pub struct BeatConfig {
    /// Schema of the django_celery_beat_* tables.
    pub django_schema: String,
    /// Leader lease: a leader silent this long is replaced (renewed every third of it), so a
    /// killed leader is replaced within about `lease` + `lease / 3`.
    pub lease: Duration,
    /// Full reload even without any change notification (catches anything missed).
    pub reload_interval: Duration,
    /// Poll of `django_celery_beat_periodictasks.last_update` when the change triggers are
    /// missing (e.g. no privilege to create them).
    pub tracker_poll: Duration,
    /// Most sends per transaction.
    pub max_batch: usize,
    /// Fire-log rows are deleted after this long.
    pub fire_log_retention: Duration,
    /// Shown in `celeriac.beat_status`.
    pub hostname: String,
}

impl Default for BeatConfig {
    fn default() -> Self {
        BeatConfig {
            django_schema: DEFAULT_DJANGO_SCHEMA.into(),
            lease: Duration::from_secs(6),
            reload_interval: Duration::from_secs(30),
            tracker_poll: Duration::from_secs(1),
            max_batch: 1000,
            fire_log_retention: Duration::from_secs(7 * 86400),
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        }
    }
}

/// Smallest gap between two reloads triggered by notifications (bursts of edits coalesce).
const MIN_RELOAD_GAP: Duration = Duration::from_millis(200);
/// Retry delay after a failed fire or reload.
const RETRY: Duration = Duration::from_secs(1);
/// Send transactions run at once when many tasks are due together.
const FIRE_PARALLEL: usize = 3;
/// Fire-log pruning cadence.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A beat process.
pub struct Beat {
    store: Store,
    tables: BeatTables,
    client: Client,
    config: BeatConfig,
    id: Uuid,
}

/// Leader-only state: the loaded schedule.
struct Plan {
    entries: HashMap<i32, Entry>,
    /// (wake instant, id), earliest first.
    queue: BTreeSet<(DateTime<Utc>, i32)>,
    wake_of: HashMap<i32, DateTime<Utc>>,
    /// Database clock minus local clock.
    offset: chrono::Duration,
    /// When this tenure's first load happened (database clock): slots before it are catch-ups.
    since: Option<DateTime<Utc>>,
    /// Bad rows already logged: id → (date_changed, reason).
    reported: HashMap<i32, (DateTime<Utc>, String)>,
    bad_rows: usize,
    needs_reload: bool,
    last_reload: Option<Instant>,
    last_tracker: Option<DateTime<Utc>>,
    ticked: bool,
}

impl Plan {
    fn new() -> Self {
        Plan {
            entries: HashMap::new(),
            queue: BTreeSet::new(),
            wake_of: HashMap::new(),
            offset: chrono::Duration::zero(),
            since: None,
            reported: HashMap::new(),
            bad_rows: 0,
            needs_reload: true,
            last_reload: None,
            last_tracker: None,
            ticked: false,
        }
    }

    fn db_now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    fn unqueue(&mut self, id: i32) {
        if let Some(w) = self.wake_of.remove(&id) {
            self.queue.remove(&(w, id));
        }
    }

    fn queue_at(&mut self, id: i32, at: DateTime<Utc>) {
        self.unqueue(id);
        self.queue.insert((at, id));
        self.wake_of.insert(id, at);
    }

    /// Put an entry in the queue for its next decision.
    fn plan(&mut self, id: i32, now: DateTime<Utc>) {
        let Some(e) = self.entries.get(&id) else {
            self.unqueue(id);
            return;
        };
        match e.due(now) {
            Due::Fire { .. } | Due::Disable { .. } => self.queue_at(id, now),
            Due::At(t) => self.queue_at(id, t),
            Due::Never => self.unqueue(id),
        }
    }

    fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// Local instant at which the database clock reads `at`.
    fn local_deadline(&self, at: DateTime<Utc>) -> Instant {
        let wait = (at - self.db_now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + wait.min(Duration::from_secs(3600))
    }
}

impl Beat {
    /// A beat on the database of `config` (connects lazily).
    pub fn new(config: &Config, beat: BeatConfig) -> Result<Self> {
        let store = Store::connect_as(
            config,
            FIRE_PARALLEL as u32 + 3,
            crate::store::Session::Default,
        )?;
        let tables = store.beat_tables(&beat.django_schema)?;
        let client = Client::from_store(store.clone(), config);
        Ok(Beat {
            store,
            tables,
            client,
            config: beat,
            id: Uuid::new_v4(),
        })
    }

    /// This process's id (the lease holder id, `celeriac.beat_instances.id`).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Run until `stop`: compete for the lease; while holding it, fire what is due.
    pub async fn run(self, stop: CancellationToken) -> Result<()> {
        let existing = self.tables.tables_existing().await?;
        if existing.len() < crate::store::DJANGO_BEAT_TABLES.len() {
            return Err(Error::Invalid(format!(
                "django-celery-beat's tables are missing in schema {}: run `celeriac migrate` (or Django's `manage.py migrate django_celery_beat`)",
                self.tables.schema()
            )));
        }
        // Tables created by Django after our migrate: add the change triggers now.
        let triggers = match self.tables.install_triggers().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the change triggers on the django tables; polling last_update instead");
                self.tables.triggers_installed().await.unwrap_or(0)
            }
        };
        let poll_tracker = triggers < crate::store::DJANGO_BEAT_TABLES.len() as i64;
        if poll_tracker {
            tracing::warn!(
                triggers,
                "change triggers missing on some django tables: edits by QuerySet.update() or raw SQL are seen at the next full reload"
            );
        }

        let wake = Arc::new(Notify::new());
        let dirty = Arc::new(AtomicBool::new(false));
        let listen_stop = stop.child_token();
        let listener = {
            let (wake, dirty) = (wake.clone(), dirty.clone());
            let channel = self.store.schema().beat_channel();
            spawn_listener(
                self.store.clone(),
                vec![channel.clone()],
                listen_stop.clone(),
                move |ev| {
                    let relevant = match &ev {
                        ListenEvent::Notification { channel: c, .. } => *c == channel,
                        ListenEvent::Reconnected => true,
                    };
                    if relevant {
                        dirty.store(true, Ordering::SeqCst);
                        wake.notify_one();
                    }
                },
            )
        };

        let mut leader = Leader::new(self.store.clone(), BEAT_LEASE, self.id, self.config.lease);
        let mut lead = tokio::time::interval(self.config.lease / 3);
        lead.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.config.tracker_poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut plan: Option<Plan> = None;
        let mut next_full_reload = Instant::now() + self.config.reload_interval;
        let mut next_prune = Instant::now() + Duration::from_secs(60);
        let mut retry_at: Option<Instant> = None;
        tracing::info!(beat = %self.id, django_schema = %self.tables.schema(), "beat started");

        loop {
            let deadline = match (&plan, retry_at) {
                (_, Some(r)) => Some(r),
                (Some(p), None) => p.next_wake().map(|w| p.local_deadline(w)),
                (None, None) => None,
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = lead.tick() => {
                    let was = leader.is_leader();
                    let is = leader.tick().await;
                    if is && !was {
                        plan = Some(Plan::new());
                        retry_at = None;
                    } else if !is && plan.is_some() {
                        tracing::warn!("beat lost its lease; standing by");
                        plan = None;
                    }
                    self.heartbeat(is, plan.as_mut()).await;
                    if is && Instant::now() >= next_prune {
                        next_prune = Instant::now() + PRUNE_EVERY;
                        if let Err(e) = self.store.beat_fires_prune(self.config.fire_log_retention, 10_000).await {
                            tracing::debug!(error = %e, "pruning the fire log failed");
                        }
                    }
                }
                _ = wake.notified() => {}
                _ = poll.tick(), if poll_tracker && plan.is_some() => {
                    if let (Some(p), Ok(ts)) = (plan.as_mut(), self.tables.tracker_get().await)
                        && p.last_tracker != ts
                    {
                        p.last_tracker = ts;
                        p.needs_reload = true;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if deadline.is_some() => {
                    retry_at = None;
                }
            }
            let Some(p) = plan.as_mut() else { continue };
            if !leader.is_leader() {
                continue;
            }
            if Instant::now() >= next_full_reload {
                p.needs_reload = true;
            }
            if dirty.load(Ordering::SeqCst) {
                let recent = p.last_reload.is_some_and(|t| t.elapsed() < MIN_RELOAD_GAP);
                if recent {
                    // Come back when the gap has passed.
                    retry_at = Some(retry_at.map_or(Instant::now() + MIN_RELOAD_GAP, |r| {
                        r.min(Instant::now() + MIN_RELOAD_GAP)
                    }));
                } else {
                    dirty.store(false, Ordering::SeqCst);
                    p.needs_reload = true;
                }
            }
            if p.needs_reload {
                match self.reload(p).await {
                    Ok(()) => next_full_reload = Instant::now() + self.config.reload_interval,
                    Err(e) => {
                        tracing::warn!(error = %e, "loading the schedule failed; retrying");
                        retry_at = Some(Instant::now() + RETRY);
                        continue;
                    }
                }
            }
            if let Err(e) = self.fire_due(p, leader.token()).await {
                tracing::warn!(error = %e, "firing due tasks failed; retrying");
                p.needs_reload = true;
                retry_at = Some(Instant::now() + RETRY);
            }
        }
        listen_stop.cancel();
        let _ = listener.await;
        leader.release().await;
        if let Err(e) = self.store.beat_instance_delete(self.id).await {
            tracing::debug!(error = %e, "removing the beat instance row failed");
        }
        tracing::info!(beat = %self.id, "beat stopped");
        Ok(())
    }

    async fn heartbeat(&self, leader: bool, plan: Option<&mut Plan>) {
        let (schedules, bad, next, ticked) = match plan {
            Some(p) => {
                let ticked = std::mem::take(&mut p.ticked) || p.since.is_some();
                (
                    p.entries.len() as i32,
                    p.bad_rows as i32,
                    p.next_wake(),
                    ticked,
                )
            }
            None => (0, 0, None, false),
        };
        if let Err(e) = self
            .store
            .beat_instance_upsert(
                self.id,
                &self.config.hostname,
                self.tables.schema(),
                leader,
                schedules,
                bad,
                next,
                ticked && leader,
            )
            .await
        {
            tracing::debug!(error = %e, "beat heartbeat failed");
        }
    }

    /// Read every enabled row again and re-plan.
    async fn reload(&self, p: &mut Plan) -> Result<()> {
        let rows = self.tables.load(true, None).await?;
        let started = Instant::now();
        let db_now = rows.first().map(|r| r.db_now);
        if let Some(db) = db_now {
            p.offset = db - Utc::now();
        }
        let now = p.db_now();
        p.since.get_or_insert(now);
        p.entries.clear();
        p.queue.clear();
        p.wake_of.clear();
        let mut to_disable = Vec::new();
        let mut bad = 0;
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            seen.insert(row.id);
            match entry_from_row(row, self.client_max_payload()) {
                Ok(e) => {
                    if let Some(w) = &e.warning {
                        self.report_once(p, row.id, row.date_changed, w, false);
                        bad += 1;
                    }
                    let id = e.id;
                    p.entries.insert(id, e);
                    p.plan(id, now);
                }
                Err(b) => {
                    bad += 1;
                    self.report_bad(p, &b, row.date_changed);
                    if b.action == BadAction::Disable {
                        to_disable.push((b.id, false, row.date_changed));
                    }
                }
            }
        }
        p.reported.retain(|id, _| seen.contains(id));
        p.bad_rows = bad;
        p.needs_reload = false;
        p.last_reload = Some(Instant::now());
        tracing::debug!(
            schedules = p.entries.len(),
            bad_rows = bad,
            took_ms = started.elapsed().as_millis() as u64,
            "schedule loaded"
        );
        if !to_disable.is_empty() {
            self.disable(&to_disable).await?;
        }
        Ok(())
    }

    fn client_max_payload(&self) -> usize {
        crate::config::DEFAULT_MAX_PAYLOAD_BYTES
    }

    fn report_bad(&self, p: &mut Plan, b: &BadRow, changed: DateTime<Utc>) {
        let action = match b.action {
            BadAction::Skip => "skipped",
            BadAction::Disable => "disabled",
            BadAction::Warn => "scheduled anyway",
        };
        if p.reported.get(&b.id) != Some(&(changed, b.reason.clone())) {
            tracing::error!(periodic_task = %b.name, id = b.id, reason = %b.reason, action, "bad periodic task row");
            p.reported.insert(b.id, (changed, b.reason.clone()));
        }
    }

    fn report_once(&self, p: &mut Plan, id: i32, changed: DateTime<Utc>, msg: &str, _err: bool) {
        if p.reported.get(&id) != Some(&(changed, msg.to_string())) {
            let name = p
                .entries
                .get(&id)
                .map(|e| e.name.clone())
                .unwrap_or_default();
            tracing::warn!(periodic_task = %name, id, reason = %msg, "questionable periodic task row (scheduled anyway, as Celery does)");
            p.reported.insert(id, (changed, msg.to_string()));
        }
    }

    /// Disable rows (expired, one-off already run, unusable args) in one transaction.
    fn disable<'a>(
        &'a self,
        rows: &'a [(i32, bool, DateTime<Utc>)],
    ) -> BoxFuture<'a, Result<Vec<i32>>> {
        Box::pin(async move {
            let mut tx = self.tables.begin().await?;
            self.tables.writer_mark(&mut tx).await?;
            let done = self.tables.disable(&mut tx, rows).await?;
            if !done.is_empty() {
                self.tables.tracker_bump(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Fire or disable everything whose wake time has come.
    async fn fire_due(&self, p: &mut Plan, token: Option<i64>) -> Result<()> {
        let per_round = self.config.max_batch * 20;
        loop {
            let now = p.db_now();
            let mut fires: Vec<FireRequest> = Vec::new();
            let mut disables: Vec<(i32, bool, DateTime<Utc>)> = Vec::new();
            while let Some(&(at, id)) = p.queue.first() {
                if at > now || fires.len() >= per_round {
                    break;
                }
                p.unqueue(id);
                let Some(e) = p.entries.get(&id) else {
                    continue;
                };
                match e.due(now) {
                    Due::Fire { slot } => fires.push(FireRequest {
                        id,
                        name: e.name.clone(),
                        last_run_at: e.last_run_at,
                        date_changed: e.date_changed,
                        slot,
                        one_off: e.one_off,
                        task_id: Uuid::now_v7(),
                        catch_up: p
                            .since
                            .is_some_and(|s| slot < s - chrono::Duration::seconds(1)),
                    }),
                    Due::Disable { reason } => {
                        tracing::info!(periodic_task = %e.name, reason, "disabling periodic task");
                        disables.push((id, e.one_off, e.date_changed));
                    }
                    Due::At(t) => p.queue_at(id, t),
                    Due::Never => {}
                }
            }
            if !disables.is_empty() {
                self.disable(&disables).await?;
                for (id, _, _) in &disables {
                    p.entries.remove(id);
                }
            }
            if fires.is_empty() {
                p.ticked = true;
                return Ok(());
            }
            // Disjoint chunks of rows (sorted by id, so no two transactions wait on each other
            // in opposite orders) sent in parallel transactions.
            fires.sort_by_key(|f| f.id);
            let mut chunks: Vec<(Vec<FireRequest>, Vec<NewTask>)> = Vec::new();
            for chunk in fires.chunks(self.config.max_batch) {
                let tasks = chunk
                    .iter()
                    .filter_map(|f| {
                        p.entries
                            .get(&f.id)
                            .map(|e| e.task.clone().id(TaskId(f.task_id)))
                    })
                    .collect();
                chunks.push((chunk.to_vec(), tasks));
            }
            // At most FIRE_PARALLEL transactions at once; a slow one does not hold the others.
            use futures_util::StreamExt;
            type Sent = (usize, Result<HashMap<i32, DateTime<Utc>>>);
            let futs: Vec<BoxFuture<'_, Sent>> = chunks
                .iter()
                .enumerate()
                .map(|(i, (f, t))| {
                    let fut = self.send(f, t.clone(), token);
                    Box::pin(async move { (i, fut.await) }) as BoxFuture<'_, Sent>
                })
                .collect();
            let mut results = futures_util::stream::iter(futs).buffer_unordered(FIRE_PARALLEL);
            let mut first_err = None;
            while let Some((i, result)) = results.next().await {
                match result {
                    Ok(sent) => self.apply_sent(p, &chunks[i].0, &sent),
                    Err(e) => {
                        p.needs_reload = true;
                        first_err.get_or_insert(e);
                    }
                }
            }
            drop(results);
            p.ticked = true;
            if let Some(e) = first_err {
                return Err(e);
            }
        }
    }

    /// One send transaction: guarded write-back, enqueue, fire log; returns the rows taken and
    /// their send time.
    fn send<'a>(
        &'a self,
        fires: &'a [FireRequest],
        tasks: Vec<NewTask>,
        token: Option<i64>,
    ) -> BoxFuture<'a, Result<HashMap<i32, DateTime<Utc>>>> {
        Box::pin(async move {
            let mut tx = self.tables.begin().await?;
            self.tables.writer_mark(&mut tx).await?;
            let taken = self.tables.fire(&mut tx, fires).await?;
            let sent: HashMap<i32, DateTime<Utc>> = taken.into_iter().collect();
            let chosen: Vec<&FireRequest> =
                fires.iter().filter(|f| sent.contains_key(&f.id)).collect();
            if !chosen.is_empty() {
                let tasks: Vec<NewTask> = tasks
                    .into_iter()
                    .filter(|t| {
                        t.id.is_some_and(|id| chosen.iter().any(|f| f.task_id == id.0))
                    })
                    .collect();
                self.client.enqueue_many_with(&mut tx, tasks).await?;
                self.tables.fire_log(&mut tx, &chosen, token).await?;
                if chosen.iter().any(|f| f.one_off) {
                    self.tables.tracker_bump(&mut tx).await?;
                }
            }
            tx.commit().await?;
            Ok(sent)
        })
    }

    /// Update the plan after a committed send transaction.
    fn apply_sent(&self, p: &mut Plan, fires: &[FireRequest], sent: &HashMap<i32, DateTime<Utc>>) {
        for f in fires {
            match sent.get(&f.id) {
                Some(at) => {
                    tracing::info!(
                        periodic_task = %f.name,
                        task.id = %f.task_id,
                        slot = %f.slot.to_rfc3339(),
                        lag_ms = (*at - f.slot).num_milliseconds(),
                        catch_up = f.catch_up,
                        "sent periodic task"
                    );
                    if f.one_off {
                        p.entries.remove(&f.id);
                        continue;
                    }
                    if let Some(e) = p.entries.get_mut(&f.id) {
                        e.last_run_at = Some(*at);
                        e.date_changed = *at;
                        e.total_run_count += 1;
                    }
                    let now = p.db_now().max(*at);
                    p.plan(f.id, now);
                }
                None => {
                    // Changed under us (edited, disabled, sent by another beat) or not due
                    // yet by the database clock: read it again.
                    tracing::debug!(periodic_task = %f.name, "slot not taken; reloading");
                    p.needs_reload = true;
                }
            }
        }
    }
}

/// Check every row of the django tables as beat would: (rows, problems).
pub async fn check(tables: &BeatTables) -> Result<(usize, Vec<BadRow>)> {
    let rows = tables.load(false, None).await?;
    let mut problems = Vec::new();
    for row in &rows {
        match entry_from_row(row, crate::config::DEFAULT_MAX_PAYLOAD_BYTES) {
            Ok(e) => {
                if let Some(w) = e.warning {
                    problems.push(BadRow {
                        id: row.id,
                        name: row.name.clone(),
                        reason: w,
                        action: BadAction::Warn,
                    });
                }
            }
            Err(b) => problems.push(b),
        }
    }
    Ok((rows.len(), problems))
}
