//! Statements of beat: django-celery-beat's tables (in their own schema, the token `django.` in
//! `sql/beat_*.sql`) and Celeriac's fire log and beat status.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::{Schema, Store};
use crate::error::{Error, Result};

/// The six tables of django-celery-beat.
pub const DJANGO_BEAT_TABLES: [&str; 6] = [
    "django_celery_beat_periodictask",
    "django_celery_beat_intervalschedule",
    "django_celery_beat_crontabschedule",
    "django_celery_beat_solarschedule",
    "django_celery_beat_clockedschedule",
    "django_celery_beat_periodictasks",
];

impl Schema {
    /// Channel the change triggers on the django_celery_beat tables notify (payload: table).
    pub fn beat_channel(&self) -> String {
        format!("{}.beat", self.name())
    }

    /// Name of this schema's change trigger on the django tables.
    pub fn beat_trigger_name(&self) -> String {
        format!("beat_changed_{}", self.name())
    }
}

/// A `django_celery_beat_periodictask` row with its schedule row's columns.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
#[allow(missing_docs)]
pub struct PeriodicTaskRow {
    pub id: i32,
    pub name: String,
    pub task: String,
    pub args: Option<String>,
    pub kwargs: Option<String>,
    pub queue: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub headers: Option<String>,
    pub priority: Option<i32>,
    pub expires: Option<DateTime<Utc>>,
    pub expire_seconds: Option<i32>,
    pub one_off: bool,
    pub start_time: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub total_run_count: i32,
    pub date_changed: DateTime<Utc>,
    pub description: String,
    pub interval_id: Option<i32>,
    pub interval_every: Option<i32>,
    pub interval_period: Option<String>,
    pub crontab_id: Option<i32>,
    pub cron_minute: Option<String>,
    pub cron_hour: Option<String>,
    pub cron_day_of_month: Option<String>,
    pub cron_month_of_year: Option<String>,
    pub cron_day_of_week: Option<String>,
    pub cron_timezone: Option<String>,
    pub solar_id: Option<i32>,
    pub solar_event: Option<String>,
    pub solar_latitude: Option<String>,
    pub solar_longitude: Option<String>,
    pub clocked_id: Option<i32>,
    pub clocked_time: Option<DateTime<Utc>>,
    /// The database clock when the row was read.
    #[serde(skip)]
    pub db_now: DateTime<Utc>,
}

/// One row of the view `celeriac.beat_status`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
#[allow(missing_docs)]
pub struct BeatStatusRow {
    pub leader_id: Option<Uuid>,
    pub leader_alive: bool,
    pub leader_token: Option<i64>,
    pub leader_since: Option<DateTime<Utc>>,
    pub leader_hostname: Option<String>,
    pub leader_pid: Option<i32>,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub tick_age_s: Option<f64>,
    pub schedules: Option<i32>,
    pub bad_rows: Option<i32>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub instances: i64,
    pub fires_5m: i64,
    pub lag_p50_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    pub lag_max_s: Option<f64>,
}

/// What installing the django tables found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatInstall {
    /// The schema of the tables.
    pub schema: String,
    /// We created them (they did not exist).
    pub created: bool,
    /// Tables carrying our change trigger (6 when complete).
    pub triggers: i64,
}

/// A row taken by beat_fire: (id, send time).
pub type Sent = (i32, DateTime<Utc>);

/// One send, as beat_fire / beat_fire_log take it.
#[derive(Debug, Clone)]
pub struct FireRequest {
    /// Periodic task id.
    pub id: i32,
    /// Its name.
    pub name: String,
    /// last_run_at the slot was computed from (must still be in the row).
    pub last_run_at: Option<DateTime<Utc>>,
    /// date_changed when read (must still be in the row).
    pub date_changed: DateTime<Utc>,
    /// The slot fired.
    pub slot: DateTime<Utc>,
    /// Disable after this run.
    pub one_off: bool,
    /// The id the enqueued task gets.
    pub task_id: Uuid,
    /// The slot was missed while no beat ran.
    pub catch_up: bool,
}

/// What an upsert of a periodic task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new row with this id.
    Created(i32),
    /// The existing row with this id was changed.
    Updated(i32),
    /// Nothing changed (identical, or exists and updating was not asked for).
    Unchanged,
}

/// Columns of a periodic task written by `celeriac schedule add` and the TOML file.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct PeriodicTaskWrite {
    pub name: String,
    pub task: String,
    pub interval_id: Option<i32>,
    pub crontab_id: Option<i32>,
    pub solar_id: Option<i32>,
    pub clocked_id: Option<i32>,
    pub args: String,
    pub kwargs: String,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    pub headers: String,
    pub expires: Option<DateTime<Utc>>,
    pub expire_seconds: Option<i32>,
    pub one_off: bool,
    pub start_time: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub description: String,
}

struct BeatSql {
    bench_fill: String,
    bench_cron_set: String,
    tables_exist: String,
    install_lock: String,
    tables_create: String,
    triggers_install: String,
    triggers_count: String,
    load: String,
    writer_mark: String,
    fire: String,
    fire_log: String,
    disable: String,
    tracker_bump: String,
    tracker_get: String,
    interval_ensure: String,
    crontab_ensure: String,
    solar_ensure: String,
    clocked_ensure: String,
    task_upsert: String,
    task_set_enabled: String,
    task_delete: String,
    task_lock: String,
}

/// Beat's statements for django tables in one schema.
#[derive(Clone)]
pub struct BeatTables {
    store: Store,
    schema: String,
    sql: Arc<BeatSql>,
}

impl std::fmt::Debug for BeatTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeatTables")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Run one statement (with an optional text parameter) or, without one, a multi-statement
/// text. (Boxed with its own lifetime so the callers' futures stay `Send`: see
/// `migrate::exec_on`.)
fn exec<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
    param: Option<&'c str>,
) -> BoxFuture<'c, Result<()>> {
    Box::pin(async move {
        match param {
            Some(p) => sqlx::query(sql).bind(p).execute(conn).await?,
            None => sqlx::Executor::execute(conn, sql).await?,
        };
        Ok(())
    })
}

fn tables_exist<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
    schema: &'c str,
) -> BoxFuture<'c, Result<Vec<String>>> {
    Box::pin(async move { Ok(sqlx::query_scalar(sql).bind(schema).fetch_all(conn).await?) })
}

impl Store {
    /// Beat's statements on django-celery-beat tables in schema `django_schema` (validated like
    /// Celeriac's own schema name).
    pub fn beat_tables(&self, django_schema: &str) -> Result<BeatTables> {
        let dj = Schema::new(django_schema)
            .map_err(|_| {
                Error::Invalid(format!(
                    "django schema name {django_schema:?} must match [a-z_][a-z0-9_]* and be at most 48 characters"
                ))
            })?
            .name()
            .to_string();
        let s = &self.sql;
        let r = |text: &str| text.replace("django.", &format!("{dj}."));
        let sql = BeatSql {
            bench_fill: r(&s.beat_bench_fill),
            bench_cron_set: r(&s.beat_bench_cron_set),
            tables_exist: r(&s.beat_tables_exist),
            install_lock: r(&s.beat_install_lock),
            tables_create: r(&s.beat_tables_create),
            triggers_install: r(&s.beat_triggers_install),
            triggers_count: r(&s.beat_triggers_count),
            load: r(&s.beat_load),
            writer_mark: r(&s.beat_writer_mark),
            fire: r(&s.beat_fire),
            fire_log: r(&s.beat_fire_log),
            disable: r(&s.beat_disable),
            tracker_bump: r(&s.beat_tracker_bump),
            tracker_get: r(&s.beat_tracker_get),
            interval_ensure: r(&s.beat_interval_ensure),
            crontab_ensure: r(&s.beat_crontab_ensure),
            solar_ensure: r(&s.beat_solar_ensure),
            clocked_ensure: r(&s.beat_clocked_ensure),
            task_upsert: r(&s.beat_task_upsert),
            task_set_enabled: r(&s.beat_task_set_enabled),
            task_delete: r(&s.beat_task_delete),
            task_lock: r(&s.beat_task_lock),
        };
        Ok(BeatTables {
            store: self.clone(),
            schema: dj,
            sql: Arc::new(sql),
        })
    }

    /// Record that beat instance `id` is alive (and what it does when leader).
    #[allow(clippy::too_many_arguments)]
    pub async fn beat_instance_upsert(
        &self,
        id: Uuid,
        hostname: &str,
        django_schema: &str,
        is_leader: bool,
        schedules: i32,
        bad_rows: i32,
        next_fire_at: Option<DateTime<Utc>>,
        ticked: bool,
    ) -> Result<()> {
        sqlx::query(&self.sql.beat_instance_upsert)
            .bind(id)
            .bind(hostname)
            .bind(std::process::id() as i32)
            .bind(django_schema)
            .bind(is_leader)
            .bind(schedules)
            .bind(bad_rows)
            .bind(next_fire_at)
            .bind(ticked)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forget beat instance `id` (and long-gone ones).
    pub async fn beat_instance_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query(&self.sql.beat_instance_delete)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Delete up to `chunk` fire-log rows older than `retention`.
    pub async fn beat_fires_prune(&self, retention: Duration, chunk: i32) -> Result<u64> {
        Ok(sqlx::query(&self.sql.beat_fires_prune)
            .bind(retention.as_secs_f64())
            .bind(chunk)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// (bench) Sends of one slot: (count, lag p50, lag p99, lag max) in seconds.
    pub async fn beat_bench_lag(&self, slot: DateTime<Utc>) -> Result<(i64, f64, f64, f64)> {
        Ok(sqlx::query_as(&self.sql.beat_bench_lag)
            .bind(slot)
            .fetch_one(self.pool())
            .await?)
    }

    /// (bench) Tasks in queue bench_beat.
    pub async fn beat_bench_visible(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(&self.sql.beat_bench_visible)
            .fetch_one(self.pool())
            .await?)
    }

    /// The view `celeriac.beat_status`.
    pub async fn beat_status(&self) -> Result<BeatStatusRow> {
        Ok(sqlx::query_as(&self.sql.beat_status)
            .fetch_one(self.pool())
            .await?)
    }
}

impl BeatTables {
    /// The schema of the django tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Begin a transaction.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.store.pool().begin().await?)
    }

    /// Create the django tables when none exists (exactly Django's DDL), then install the change
    /// triggers. Refuses when only some of the tables exist. Never alters existing tables.
    pub fn install(&self) -> BoxFuture<'_, Result<BeatInstall>> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            exec(&mut tx, &self.sql.install_lock, Some(&self.schema)).await?;
            let existing = tables_exist(&mut tx, &self.sql.tables_exist, &self.schema).await?;
            let created = existing.is_empty();
            if created {
                exec(&mut tx, &self.sql.tables_create, None).await?;
            } else if existing.len() < DJANGO_BEAT_TABLES.len() {
                let missing: Vec<&str> = DJANGO_BEAT_TABLES
                    .iter()
                    .copied()
                    .filter(|t| !existing.iter().any(|e| e == t))
                    .collect();
                return Err(Error::Invalid(format!(
                    "schema {} has only some of django-celery-beat's tables (missing {}): run `manage.py migrate django_celery_beat` or drop them",
                    self.schema,
                    missing.join(", ")
                )));
            }
            exec(&mut tx, &self.sql.triggers_install, None).await?;
            tx.commit().await?;
            Ok(BeatInstall {
                schema: self.schema.clone(),
                created,
                triggers: self.triggers_installed().await?,
            })
        })
    }

    /// Only the change triggers (tables created by Django after our migrate).
    pub fn install_triggers(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            exec(&mut tx, &self.sql.install_lock, Some(&self.schema)).await?;
            exec(&mut tx, &self.sql.triggers_install, None).await?;
            tx.commit().await?;
            self.triggers_installed().await
        })
    }

    /// How many of the six tables carry our change trigger.
    pub async fn triggers_installed(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(&self.sql.triggers_count)
            .bind(&self.schema)
            .bind(self.store.schema().beat_trigger_name())
            .fetch_one(self.store.pool())
            .await?)
    }

    /// (bench) `n` periodic tasks on one new crontab `minute hour * * *`; its id.
    pub async fn bench_fill(&self, n: i32, minute: &str, hour: &str) -> Result<i32> {
        Ok(sqlx::query_scalar(&self.sql.bench_fill)
            .bind(n)
            .bind(minute)
            .bind(hour)
            .fetch_one(self.store.pool())
            .await?)
    }

    /// (bench) Change a crontab schedule's minute and hour.
    pub async fn bench_cron_set(&self, id: i32, minute: &str, hour: &str) -> Result<()> {
        sqlx::query(&self.sql.bench_cron_set)
            .bind(id)
            .bind(minute)
            .bind(hour)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Which of the six tables exist.
    pub async fn tables_existing(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(&self.sql.tables_exist)
            .bind(&self.schema)
            .fetch_all(self.store.pool())
            .await?)
    }

    /// Periodic tasks (only enabled ones, or all; optionally one by name).
    pub async fn load(
        &self,
        only_enabled: bool,
        name: Option<&str>,
    ) -> Result<Vec<PeriodicTaskRow>> {
        Ok(sqlx::query_as(&self.sql.load)
            .bind(only_enabled)
            .bind(name)
            .fetch_all(self.store.pool())
            .await?)
    }

    /// Mark `conn`'s transaction as beat's own write-back (no change notification).
    pub fn writer_mark<'a>(&'a self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sqlx::query(&self.sql.writer_mark).execute(conn).await?;
            Ok(())
        })
    }

    /// Write back the sends of `fires` (guarded); returns (id, send time) of the rows taken.
    pub fn fire<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        fires: &'a [FireRequest],
    ) -> BoxFuture<'a, Result<Vec<Sent>>> {
        Box::pin(async move {
            let ids: Vec<i32> = fires.iter().map(|f| f.id).collect();
            let last: Vec<Option<DateTime<Utc>>> = fires.iter().map(|f| f.last_run_at).collect();
            let changed: Vec<DateTime<Utc>> = fires.iter().map(|f| f.date_changed).collect();
            let slots: Vec<DateTime<Utc>> = fires.iter().map(|f| f.slot).collect();
            let one_off: Vec<bool> = fires.iter().map(|f| f.one_off).collect();
            Ok(sqlx::query_as(&self.sql.fire)
                .bind(&ids)
                .bind(&last)
                .bind(&changed)
                .bind(&slots)
                .bind(&one_off)
                .fetch_all(conn)
                .await?)
        })
    }

    /// Log sends in the fire log (fails on a duplicate (task, anchor)).
    pub fn fire_log<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        fires: &'a [&FireRequest],
        leader_token: Option<i64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ids: Vec<i32> = fires.iter().map(|f| f.id).collect();
            let anchors: Vec<DateTime<Utc>> = fires
                .iter()
                .map(|f| f.last_run_at.unwrap_or(f.date_changed))
                .collect();
            let names: Vec<&str> = fires.iter().map(|f| f.name.as_str()).collect();
            let slots: Vec<DateTime<Utc>> = fires.iter().map(|f| f.slot).collect();
            let task_ids: Vec<Uuid> = fires.iter().map(|f| f.task_id).collect();
            let catch_up: Vec<bool> = fires.iter().map(|f| f.catch_up).collect();
            sqlx::query(&self.sql.fire_log)
                .bind(&ids)
                .bind(&anchors)
                .bind(&names)
                .bind(&slots)
                .bind(&task_ids)
                .bind(&catch_up)
                .bind(leader_token)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Disable rows (Celery's `_disable`; `reset_count` for one-offs) unchanged since
    /// `date_changed`; returns the ids disabled.
    pub fn disable<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        rows: &'a [(i32, bool, DateTime<Utc>)],
    ) -> BoxFuture<'a, Result<Vec<i32>>> {
        Box::pin(async move {
            let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
            let reset: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let changed: Vec<DateTime<Utc>> = rows.iter().map(|r| r.2).collect();
            Ok(sqlx::query_scalar(&self.sql.disable)
                .bind(&ids)
                .bind(&reset)
                .bind(&changed)
                .fetch_all(conn)
                .await?)
        })
    }

    /// Bump `django_celery_beat_periodictasks.last_update`.
    pub fn tracker_bump<'a>(&'a self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sqlx::query(&self.sql.tracker_bump).execute(conn).await?;
            Ok(())
        })
    }

    /// `django_celery_beat_periodictasks.last_update`.
    pub async fn tracker_get(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(&self.sql.tracker_get)
            .fetch_one(self.store.pool())
            .await?)
    }

    /// Id of an interval schedule row (reused or created).
    pub fn interval_ensure<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        every: i32,
        period: &'a str,
    ) -> BoxFuture<'a, Result<i32>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.interval_ensure)
                .bind(every)
                .bind(period)
                .fetch_one(conn)
                .await?)
        })
    }

    /// Id of a crontab schedule row (reused or created). Fields in column order: minute, hour,
    /// day_of_month, month_of_year, day_of_week, timezone.
    pub fn crontab_ensure<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        f: [&'a str; 6],
    ) -> BoxFuture<'a, Result<i32>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.crontab_ensure)
                .bind(f[0])
                .bind(f[1])
                .bind(f[2])
                .bind(f[3])
                .bind(f[4])
                .bind(f[5])
                .fetch_one(conn)
                .await?)
        })
    }

    /// Id of the solar schedule row (event, latitude, longitude).
    pub fn solar_ensure<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a str,
        latitude: f64,
        longitude: f64,
    ) -> BoxFuture<'a, Result<i32>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.solar_ensure)
                .bind(event)
                .bind(format!("{latitude:.6}"))
                .bind(format!("{longitude:.6}"))
                .fetch_one(conn)
                .await?)
        })
    }

    /// Id of a clocked schedule row (reused or created).
    pub fn clocked_ensure<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<i32>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.clocked_ensure)
                .bind(at)
                .fetch_one(conn)
                .await?)
        })
    }

    /// Insert a periodic task, or update the one with the same name when `update_existing`.
    pub fn task_upsert<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        w: &'a PeriodicTaskWrite,
        update_existing: bool,
    ) -> BoxFuture<'a, Result<Upserted>> {
        Box::pin(async move {
            let row: Option<(i32, bool)> = sqlx::query_as(&self.sql.task_upsert)
                .bind(&w.name)
                .bind(&w.task)
                .bind(w.interval_id)
                .bind(w.crontab_id)
                .bind(w.solar_id)
                .bind(w.clocked_id)
                .bind(&w.args)
                .bind(&w.kwargs)
                .bind(w.queue.as_deref())
                .bind(w.priority)
                .bind(&w.headers)
                .bind(w.expires)
                .bind(w.expire_seconds)
                .bind(w.one_off)
                .bind(w.start_time)
                .bind(w.enabled)
                .bind(update_existing)
                .bind(&w.description)
                .fetch_optional(conn)
                .await?;
            Ok(match row {
                None => Upserted::Unchanged,
                Some((id, true)) => Upserted::Created(id),
                Some((id, false)) => Upserted::Updated(id),
            })
        })
    }

    /// Enable or disable by name: (id, whether it changed); `None`: no such task.
    pub fn task_set_enabled<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        name: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<Option<(i32, bool)>>> {
        Box::pin(async move {
            Ok(sqlx::query_as(&self.sql.task_set_enabled)
                .bind(name)
                .bind(enabled)
                .fetch_optional(conn)
                .await?)
        })
    }

    /// Lock a periodic task row by name until the transaction ends; `None`: no such task.
    pub fn task_lock<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<i32>>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.task_lock)
                .bind(name)
                .fetch_optional(conn)
                .await?)
        })
    }

    /// One periodic task by name with its schedule row, read on `conn` (inside a transaction).
    pub fn load_one_on<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PeriodicTaskRow>>> {
        Box::pin(async move {
            Ok(sqlx::query_as(&self.sql.load)
                .bind(false)
                .bind(name)
                .fetch_optional(conn)
                .await?)
        })
    }

    /// Delete by name; `None`: no such task.
    pub fn task_delete<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<i32>>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(&self.sql.task_delete)
                .bind(name)
                .fetch_optional(conn)
                .await?)
        })
    }
}
