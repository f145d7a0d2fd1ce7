//! Editing periodic tasks: list, add, update (upsert by name, or a partial update), enable,
//! disable, remove, run now, next fire times. Used by the CLI (`celeriac schedule …`), the TOML
//! file and the HTTP API, with plain request/response structs. Every edit bumps
//! django-celery-beat's `last_update`, so a real Celery beat on the same tables notices it too;
//! our own beat is told by the change triggers. Validation errors name the request field at
//! fault ([`Error::InvalidField`]: `schedule.minute`, `args`, …).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::crontab::Crontab;
use super::schedule::{BadAction, Period, Schedule, entry_from_row, schedule_of};
use super::solar::{Solar, SolarEvent};
use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{BeatTables, PeriodicTaskRow, PeriodicTaskWrite, Store, Upserted};
use crate::task::{NewTask, TaskId};

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// A schedule, as requests give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// Every `every` `period`s.
    Interval {
        /// At least 1.
        every: i32,
        /// days, hours, minutes, seconds, microseconds.
        period: Period,
    },
    /// A Celery crontab.
    Crontab {
        /// Minutes (0-59).
        minute: String,
        /// Hours (0-23).
        hour: String,
        /// Days of the month (1-31).
        day_of_month: String,
        /// Months (1-12).
        month_of_year: String,
        /// Weekdays (0-6, Sunday = 0).
        day_of_week: String,
        /// IANA zone the fields are read in.
        timezone: String,
    },
    /// A solar event at a place.
    Solar {
        /// sunrise, sunset, solar_noon, dawn_*/dusk_* (astronomical, nautical, civil).
        event: String,
        /// Degrees north.
        latitude: f64,
        /// Degrees east.
        longitude: f64,
    },
    /// Once, at an instant (requires `one_off`).
    Clocked {
        /// When.
        at: DateTime<Utc>,
    },
}

impl ScheduleSpec {
    /// A crontab from `M H DOM MON DOW` in `timezone`.
    pub fn crontab(expr: &str, timezone: &str) -> Result<Self> {
        Crontab::from_expression(expr, timezone)
            .map_err(|e| invalid("schedule", format!("crontab {expr:?}: {e}")))?;
        let f: Vec<&str> = expr.split_whitespace().collect();
        Ok(ScheduleSpec::Crontab {
            minute: f[0].into(),
            hour: f[1].into(),
            day_of_month: f[2].into(),
            month_of_year: f[3].into(),
            day_of_week: f[4].into(),
            timezone: timezone.into(),
        })
    }

    /// An interval from a duration in microseconds (expressed in the largest exact unit).
    pub fn every_micros(micros: i64) -> Result<Self> {
        if micros < 1 {
            return Err(invalid("schedule.every", "an interval must be positive"));
        }
        let (every, period) = Period::best_for(micros);
        let every =
            i32::try_from(every).map_err(|_| invalid("schedule.every", "interval too long"))?;
        Ok(ScheduleSpec::Interval { every, period })
    }

    /// Check it as Celery would parse it.
    pub fn to_schedule(&self) -> Result<Schedule> {
        Ok(match self {
            ScheduleSpec::Interval { every, period } => {
                if *every < 1 {
                    return Err(invalid(
                        "schedule.every",
                        format!("interval every must be at least 1, got {every}"),
                    ));
                }
                Schedule::Interval {
                    every: *every,
                    period: *period,
                }
            }
            ScheduleSpec::Crontab {
                minute,
                hour,
                day_of_month,
                month_of_year,
                day_of_week,
                timezone,
            } => Schedule::Crontab(
                Crontab::new(
                    minute,
                    hour,
                    day_of_month,
                    month_of_year,
                    day_of_week,
                    timezone,
                )
                .map_err(|e| {
                    let field = match e.field {
                        "crontab" => "schedule".to_string(),
                        f => format!("schedule.{f}"),
                    };
                    invalid(&field, format!("crontab: {e}"))
                })?,
            ),
            ScheduleSpec::Solar {
                event,
                latitude,
                longitude,
            } => {
                if !(-90.0..=90.0).contains(latitude) {
                    return Err(invalid(
                        "schedule.latitude",
                        format!("solar latitude must be within -90..90, got {latitude}"),
                    ));
                }
                if !(-180.0..=180.0).contains(longitude) {
                    return Err(invalid(
                        "schedule.longitude",
                        format!("solar longitude must be within -180..180, got {longitude}"),
                    ));
                }
                Schedule::Solar(Solar::new(event, *latitude, *longitude).ok_or_else(|| {
                    invalid(
                        "schedule.event",
                        format!(
                            "unknown solar event {event:?} (one of {})",
                            SolarEvent::NAMES.join(", ")
                        ),
                    )
                })?)
            }
            ScheduleSpec::Clocked { at } => Schedule::Clocked(*at),
        })
    }
}

fn default_true() -> bool {
    true
}
fn empty_array() -> Value {
    json!([])
}
fn empty_object() -> Value {
    json!({})
}

/// A periodic task to create or update (by name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRequest {
    /// Unique name (at most 200 characters).
    pub name: String,
    /// Task name sent, e.g. `proj.tasks.cleanup`.
    pub task: String,
    /// When.
    pub schedule: ScheduleSpec,
    /// Positional arguments (a JSON array).
    #[serde(default = "empty_array")]
    pub args: Value,
    /// Keyword arguments (a JSON object).
    #[serde(default = "empty_object")]
    pub kwargs: Value,
    /// Queue (default routing when absent).
    #[serde(default)]
    pub queue: Option<String>,
    /// 0..255, higher first.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Extra headers (a JSON object).
    #[serde(default = "empty_object")]
    pub headers: Value,
    /// Disabled from then on; sent tasks expire then.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// Sent tasks expire this many seconds after they are sent.
    #[serde(default)]
    pub expire_seconds: Option<u32>,
    /// Disable after one run.
    #[serde(default)]
    pub one_off: bool,
    /// Never due before.
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

impl ScheduleRequest {
    /// A request with every option at its default.
    pub fn new(name: impl Into<String>, task: impl Into<String>, schedule: ScheduleSpec) -> Self {
        ScheduleRequest {
            name: name.into(),
            task: task.into(),
            schedule,
            args: empty_array(),
            kwargs: empty_object(),
            queue: None,
            priority: None,
            headers: empty_object(),
            expires: None,
            expire_seconds: None,
            one_off: false,
            start_time: None,
            enabled: true,
            description: String::new(),
        }
    }

    /// Check what Django's model validation and Celery would reject, and what beat could not
    /// send (a payload over the limit). Errors name the field at fault.
    pub fn validate(&self) -> Result<Schedule> {
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(invalid(
                "name",
                format!("name must be 1 to 200 characters, got {:?}", self.name),
            ));
        }
        if self.task.trim().is_empty() || self.task.chars().count() > 200 {
            return Err(invalid(
                "task",
                format!("task must be 1 to 200 characters, got {:?}", self.task),
            ));
        }
        if let Some(q) = &self.queue
            && q.chars().count() > 200
        {
            return Err(invalid("queue", "queue must be at most 200 characters"));
        }
        for (field, v, want, ok) in [
            ("args", &self.args, "array", self.args.is_array()),
            ("kwargs", &self.kwargs, "object", self.kwargs.is_object()),
            ("headers", &self.headers, "object", self.headers.is_object()),
        ] {
            if !ok {
                return Err(invalid(
                    field,
                    format!(
                        "{field} must be a JSON {want}, got {}",
                        crate::task::json_kind(v)
                    ),
                ));
            }
        }
        if self.expires.is_some() && self.expire_seconds.is_some() {
            return Err(invalid(
                "expire_seconds",
                "Only one can be set, in expires and expire_seconds",
            ));
        }
        let schedule = self.schedule.to_schedule()?;
        if matches!(schedule, Schedule::Clocked(_)) && !self.one_off {
            return Err(invalid(
                "one_off",
                "clocked must be one off, one_off must set True",
            ));
        }
        // What beat will send must be sendable (the payload limit of an enqueue).
        NewTask::new(self.task.clone())
            .args(self.args.clone())
            .kwargs(self.kwargs.clone())
            .headers(self.headers.clone())
            .validate(crate::config::DEFAULT_MAX_PAYLOAD_BYTES)?;
        Ok(schedule)
    }
}

/// A partial update of a stored periodic task: `None` leaves a field as it is;
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleUpdate {
    /// Task name sent.
    pub task: Option<String>,
    /// A new schedule (replaces the old one, of any kind).
    pub schedule: Option<ScheduleSpec>,
    /// Positional arguments.
    pub args: Option<Value>,
    /// Keyword arguments.
    pub kwargs: Option<Value>,
    /// Queue (`Some(None)`: default routing).
    pub queue: Option<Option<String>>,
    /// Priority (`Some(None)`: none).
    pub priority: Option<Option<u8>>,
    /// Extra headers.
    pub headers: Option<Value>,
    /// Expiry instant; setting one clears `expire_seconds` unless that is given too.
    pub expires: Option<Option<DateTime<Utc>>>,
    /// Expiry after sending; setting one clears `expires` unless that is given too.
    pub expire_seconds: Option<Option<u32>>,
    /// One-off (a new clocked schedule makes it true unless given).
    pub one_off: Option<bool>,
    /// Never due before.
    pub start_time: Option<Option<DateTime<Utc>>>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Free text.
    pub description: Option<String>,
}

/// A stored JSON text column as a value (absent, empty or `null`: `default`, as beat reads it).
fn stored_json(field: &str, text: Option<&str>, default: Value) -> Result<Value> {
    match text.map(str::trim) {
        None | Some("") | Some("null") => Ok(default),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            invalid(
                field,
                format!(
                    "the stored {field} are not valid JSON ({e}): give {field} to replace them"
                ),
            )
        }),
    }
}

impl ScheduleUpdate {
    /// The stored row with this update applied, as a full request.
    fn apply_to(&self, row: &PeriodicTaskRow) -> Result<ScheduleRequest> {
        let schedule = match &self.schedule {
            Some(s) => s.clone(),
            None => spec_of(row).ok_or_else(|| {
                let why = schedule_of(row).err().unwrap_or_default();
                invalid(
                    "schedule",
                    format!("the stored schedule is not usable ({why}): give a schedule"),
                )
            })?,
        };
        let args = match &self.args {
            Some(v) => v.clone(),
            None => stored_json("args", row.args.as_deref(), json!([]))?,
        };
        let kwargs = match &self.kwargs {
            Some(v) => v.clone(),
            None => stored_json("kwargs", row.kwargs.as_deref(), json!({}))?,
        };
        let headers = match &self.headers {
            Some(v) => v.clone(),
            None => stored_json("headers", row.headers.as_deref(), json!({}))?,
        };
        let priority = match self.priority {
            Some(p) => p,
            None => match row.priority {
                None => None,
                Some(p) => Some(u8::try_from(p).map_err(|_| {
                    invalid(
                        "priority",
                        format!("the stored priority {p} is outside 0..255: give a priority"),
                    )
                })?),
            },
        };
        let stored_seconds = row.expire_seconds.map(|s| s.max(0) as u32);
        let (expires, expire_seconds) = match (self.expires, self.expire_seconds) {
            (Some(e), Some(s)) => (e, s),
            (Some(e), None) => (e, if e.is_some() { None } else { stored_seconds }),
            (None, Some(s)) => (if s.is_some() { None } else { row.expires }, s),
            (None, None) => (row.expires, stored_seconds),
        };
        let one_off = match self.one_off {
            Some(o) => o,
            None if matches!(self.schedule, Some(ScheduleSpec::Clocked { .. })) => true,
            None => row.one_off,
        };
        Ok(ScheduleRequest {
            name: row.name.clone(),
            task: self.task.clone().unwrap_or_else(|| row.task.clone()),
            schedule,
            args,
            kwargs,
            queue: match &self.queue {
                Some(q) => q.clone(),
                None => row.queue.clone(),
            },
            priority,
            headers,
            expires,
            expire_seconds,
            one_off,
            start_time: self.start_time.unwrap_or(row.start_time),
            enabled: self.enabled.unwrap_or(row.enabled),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| row.description.clone()),
        })
    }
}

/// The schedule of a row as a request would give it; `None` when beat cannot use it.
pub fn spec_of(row: &PeriodicTaskRow) -> Option<ScheduleSpec> {
    let (schedule, _) = schedule_of(row).ok()?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match schedule {
        Schedule::Interval { every, period } => ScheduleSpec::Interval { every, period },
        Schedule::Crontab(_) => ScheduleSpec::Crontab {
            minute: text(&row.cron_minute),
            hour: text(&row.cron_hour),
            day_of_month: text(&row.cron_day_of_month),
            month_of_year: text(&row.cron_month_of_year),
            day_of_week: text(&row.cron_day_of_week),
            timezone: text(&row.cron_timezone),
        },
        Schedule::Solar(s) => ScheduleSpec::Solar {
            event: s.event.name().into(),
            latitude: s.latitude,
            longitude: s.longitude,
        },
        Schedule::Clocked(at) => ScheduleSpec::Clocked { at },
    })
}

/// Why beat cannot use a row, or what looks wrong with it — what `celeriac beat --check` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The reason (Celery's message where Celery has one).
    pub reason: String,
    /// What beat does with the row: skip it, disable it, or schedule it anyway (warn).
    pub action: BadAction,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.action {
            BadAction::Skip => "skipped by beat",
            BadAction::Disable => "disabled by beat",
            BadAction::Warn => "scheduled anyway",
        };
        write!(f, "{} [{what}]", self.reason)
    }
}

/// A periodic task as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleInfo {
    /// Row id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// Task sent.
    pub task: String,
    /// interval, crontab, solar, clocked (None: no schedule set).
    pub kind: Option<String>,
    /// Human-readable schedule (compact: `crontab 0 9 * * mon-fri (Europe/Berlin)`).
    pub schedule: String,
    /// The schedule as a request gives it (None: beat cannot use it).
    pub spec: Option<ScheduleSpec>,
    /// The schedule in words (`at 09:00 on Monday to Friday (Europe/Berlin)`).
    pub schedule_words: String,
    /// Enabled.
    pub enabled: bool,
    /// One-off.
    pub one_off: bool,
    /// Previous send.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Sends so far.
    pub total_run_count: i32,
    /// Next send if enabled and usable.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Queue.
    pub queue: Option<String>,
    /// Priority as stored.
    pub priority: Option<i32>,
    /// args as stored (JSON text).
    pub args: Option<String>,
    /// kwargs as stored (JSON text).
    pub kwargs: Option<String>,
    /// headers as stored (JSON text).
    pub headers: Option<String>,
    /// Never due before.
    pub start_time: Option<DateTime<Utc>>,
    /// Disabled from then on.
    pub expires: Option<DateTime<Utc>>,
    /// Sent tasks expire this many seconds after the send.
    pub expire_seconds: Option<i32>,
    /// Last change.
    pub date_changed: DateTime<Utc>,
    /// Free text.
    pub description: String,
    /// Why beat cannot use it, or what looks wrong (as `celeriac beat --check`).
    pub problem: Option<Problem>,
}

fn info_of(row: &PeriodicTaskRow) -> ScheduleInfo {
    let sched = schedule_of(row);
    let (kind, schedule) = match &sched {
        Ok((s, _)) => (Some(s.kind().to_string()), s.describe()),
        Err(_) => (None, "-".into()),
    };
    let spec = spec_of(row);
    let schedule_words = spec
        .as_ref()
        .map(super::words::in_words)
        .unwrap_or_else(|| "no usable schedule".into());
    let (next, problem) = match entry_from_row(row, crate::config::DEFAULT_MAX_PAYLOAD_BYTES) {
        Ok(e) => {
            let next = if row.enabled {
                match e.due(row.db_now) {
                    super::schedule::Due::Fire { slot } => Some(slot),
                    super::schedule::Due::At(t) => Some(t),
                    _ => None,
                }
            } else {
                None
            };
            let problem = e.warning.map(|reason| Problem {
                reason,
                action: BadAction::Warn,
            });
            (next, problem)
        }
        Err(b) => (
            None,
            Some(Problem {
                reason: b.reason,
                action: b.action,
            }),
        ),
    };
    ScheduleInfo {
        id: row.id,
        name: row.name.clone(),
        task: row.task.clone(),
        kind,
        schedule,
        spec,
        schedule_words,
        enabled: row.enabled,
        one_off: row.one_off,
        last_run_at: row.last_run_at,
        total_run_count: row.total_run_count,
        next_fire_at: next,
        queue: row.queue.clone(),
        priority: row.priority,
        args: row.args.clone(),
        kwargs: row.kwargs.clone(),
        headers: row.headers.clone(),
        start_time: row.start_time,
        expires: row.expires,
        expire_seconds: row.expire_seconds,
        date_changed: row.date_changed,
        description: row.description.clone(),
        problem,
    }
}

/// Schedule editing on django-celery-beat's tables.
#[derive(Debug, Clone)]
pub struct Admin {
    tables: BeatTables,
    client: Client,
}

impl Admin {
    /// Editing on `store`, with django tables in `django_schema`.
    pub fn new(store: &Store, config: &Config, django_schema: &str) -> Result<Self> {
        Ok(Admin {
            tables: store.beat_tables(django_schema)?,
            client: Client::from_store(store.clone(), config),
        })
    }

    /// Editing through `client` (which must be connected to a database, not eager), with
    /// django tables in `django_schema`.
    pub fn with_client(client: Client, django_schema: &str) -> Result<Self> {
        let store = client.store().ok_or_else(|| {
            Error::Invalid("editing periodic tasks needs a database client".into())
        })?;
        Ok(Admin {
            tables: store.beat_tables(django_schema)?,
            client,
        })
    }

    /// The tables.
    pub fn tables(&self) -> &BeatTables {
        &self.tables
    }

    /// Every periodic task.
    pub async fn list(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self
            .tables
            .load(false, None)
            .await?
            .iter()
            .map(info_of)
            .collect())
    }

    /// One by name.
    pub async fn get(&self, name: &str) -> Result<ScheduleInfo> {
        let rows = self.tables.load(false, Some(name)).await?;
        rows.first()
            .map(info_of)
            .ok_or_else(|| Error::ScheduleNotFound(name.into()))
    }

    /// Create; fails if the name exists.
    pub async fn add(&self, req: &ScheduleRequest) -> Result<i32> {
        match self.write(req, false).await? {
            Upserted::Created(id) => Ok(id),
            _ => Err(Error::ScheduleExists(req.name.clone())),
        }
    }

    /// Create, or update the task of the same name (keeping its last_run_at and count).
    pub async fn upsert(&self, req: &ScheduleRequest) -> Result<Upserted> {
        self.write(req, true).await
    }

    /// Change some fields of the task named `name` (a read-modify-write under a row lock, so
    /// concurrent updates of different fields both survive). Keeps `last_run_at` and the run
    /// count, as a Django save does (disabling clears `last_run_at`).
    pub async fn update(&self, name: &str, changes: &ScheduleUpdate) -> Result<Upserted> {
        let mut tx = self.tables.begin().await?;
        if self.tables.task_lock(&mut tx, name).await?.is_none() {
            return Err(Error::ScheduleNotFound(name.into()));
        }
        let row = self
            .tables
            .load_one_on(&mut tx, name)
            .await?
            .ok_or_else(|| Error::ScheduleNotFound(name.into()))?;
        let req = changes.apply_to(&row)?;
        let outcome = self.write_in(&mut tx, &req, true).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn write(&self, req: &ScheduleRequest, update: bool) -> Result<Upserted> {
        let mut tx = self.tables.begin().await?;
        let outcome = self.write_in(&mut tx, req, update).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Validate and write `req` in `tx` (schedule row reused or created, task upserted, the
    /// change tracker bumped when something changed).
    async fn write_in(
        &self,
        tx: &mut sqlx::PgConnection,
        req: &ScheduleRequest,
        update: bool,
    ) -> Result<Upserted> {
        let schedule = req.validate()?;
        let (mut interval_id, mut crontab_id, mut solar_id, mut clocked_id) =
            (None, None, None, None);
        match (&req.schedule, &schedule) {
            (_, Schedule::Interval { every, period }) => {
                interval_id = Some(
                    self.tables
                        .interval_ensure(&mut *tx, *every, period.as_str())
                        .await?,
                )
            }
            (
                ScheduleSpec::Crontab {
                    minute,
                    hour,
                    day_of_month,
                    month_of_year,
                    day_of_week,
                    timezone,
                },
                _,
            ) => {
                crontab_id = Some(
                    self.tables
                        .crontab_ensure(
                            &mut *tx,
                            [
                                minute,
                                hour,
                                day_of_month,
                                month_of_year,
                                day_of_week,
                                timezone,
                            ],
                        )
                        .await?,
                )
            }
            (_, Schedule::Solar(s)) => {
                solar_id = Some(
                    self.tables
                        .solar_ensure(&mut *tx, s.event.name(), s.latitude, s.longitude)
                        .await?,
                )
            }
            (_, Schedule::Clocked(at)) => {
                clocked_id = Some(self.tables.clocked_ensure(&mut *tx, *at).await?)
            }
            _ => return Err(invalid("schedule", "unsupported schedule")),
        }
        let w = PeriodicTaskWrite {
            name: req.name.clone(),
            task: req.task.clone(),
            interval_id,
            crontab_id,
            solar_id,
            clocked_id,
            args: req.args.to_string(),
            kwargs: req.kwargs.to_string(),
            queue: req.queue.clone().filter(|q| !q.is_empty()),
            priority: req.priority.map(i32::from),
            headers: req.headers.to_string(),
            expires: req.expires,
            expire_seconds: req.expire_seconds.map(|s| s.min(i32::MAX as u32) as i32),
            one_off: req.one_off,
            start_time: req.start_time,
            enabled: req.enabled,
            description: req.description.clone(),
        };
        let outcome = self.tables.task_upsert(&mut *tx, &w, update).await?;
        if outcome != Upserted::Unchanged {
            self.tables.tracker_bump(&mut *tx).await?;
        }
        Ok(outcome)
    }

    /// Enable or disable (as the admin's save: disabling clears last_run_at). A task already
    /// in that state is left alone (its anchor does not move); returns whether it changed.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        let mut tx = self.tables.begin().await?;
        let Some((_, changed)) = self.tables.task_set_enabled(&mut tx, name, enabled).await? else {
            return Err(Error::ScheduleNotFound(name.into()));
        };
        if changed {
            self.tables.tracker_bump(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Delete.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let mut tx = self.tables.begin().await?;
        if self.tables.task_delete(&mut tx, name).await?.is_none() {
            return Err(Error::ScheduleNotFound(name.into()));
        }
        self.tables.tracker_bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Send the task now with its options (headers, queue, priority, expiry), without touching
    /// its schedule (like the admin action "Run selected tasks").
    pub async fn run_now(&self, name: &str) -> Result<TaskId> {
        let rows = self.tables.load(false, Some(name)).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::ScheduleNotFound(name.into()))?;
        let entry = entry_from_row(row, crate::config::DEFAULT_MAX_PAYLOAD_BYTES)
            .map_err(|b| Error::Invalid(format!("periodic task {name:?}: {}", b.reason)))?;
        let mut task = entry.task.clone();
        if let Value::Object(h) = &mut task.headers {
            h.remove("celery_beat_task");
        }
        Ok(self.client.enqueue(task).await?.id())
    }

    /// The next `count` fire instants of a stored periodic task after `after` (default: now),
    /// as beat would compute them from its current state.
    pub async fn next_fires(
        &self,
        name: &str,
        after: Option<DateTime<Utc>>,
        count: usize,
    ) -> Result<Vec<DateTime<Utc>>> {
        let rows = self.tables.load(false, Some(name)).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::ScheduleNotFound(name.into()))?;
        let entry = entry_from_row(row, crate::config::DEFAULT_MAX_PAYLOAD_BYTES)
            .map_err(|b| Error::Invalid(format!("periodic task {name:?}: {}", b.reason)))?;
        let mut out = Vec::new();
        let mut e = entry;
        if let Some(a) = after {
            e.last_run_at = Some(a);
            e.start_time = e.start_time.filter(|s| *s > a);
        }
        while out.len() < count {
            let Some(slot) = e.next_slot() else { break };
            out.push(slot);
            e.last_run_at = Some(slot);
            if e.one_off {
                break;
            }
        }
        Ok(out)
    }
}

/// The next `count` fire instants of a crontab after `after`: the same code as beat.
pub fn next_crontab(
    expr: &str,
    timezone: &str,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Utc>>> {
    let c = Crontab::from_expression(expr, timezone)
        .map_err(|e| Error::Invalid(format!("crontab {expr:?}: {e}")))?;
    let mut out = Vec::with_capacity(count);
    let mut t = after;
    while out.len() < count {
        let Some(n) = c.next_after(t) else { break };
        out.push(n);
        t = n;
    }
    Ok(out)
}
