//! A `django_celery_beat_periodictask` row turned into something that can fire: its schedule
//! (interval, crontab, solar, clocked), the task to send, and when its next slot is — with
//! Celery's DatabaseScheduler semantics (research §2, §4) and its bugs fixed.
//!
//! Order of the checks, as `ModelEntry.is_due()`: disabled → `start_time` (never due before
//! it) → `expires` (disables) → `one_off` already run (disables) → the schedule.
//!
//! Anchor: `last_run_at`; when NULL, `date_changed` — or, with a `start_time`, "long ago".
//! Celery's resulting behaviour, made deterministic: a row saved with a `start_time` already
//! past fires at once; one with a future `start_time` fires at the first slot at or after it
//! (for an interval: at `start_time`), which is what Celery does when no heap rebuild
//! intervenes. A slot is always strictly after `last_run_at`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::crontab::{CronError, Crontab};
use super::solar::Solar;
use crate::store::PeriodicTaskRow;
use crate::task::NewTask;

/// Interval units of `django_celery_beat_intervalschedule.period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// 86,400 s (elapsed time; no calendar or DST logic, as Celery).
    Days,
    /// 3,600 s.
    Hours,
    /// 60 s.
    Minutes,
    /// 1 s.
    Seconds,
    /// 1 µs.
    Microseconds,
}

impl Period {
    /// Parse a column value.
    pub fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "days" => Period::Days,
            "hours" => Period::Hours,
            "minutes" => Period::Minutes,
            "seconds" => Period::Seconds,
            "microseconds" => Period::Microseconds,
            _ => return None,
        })
    }

    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Days => "days",
            Period::Hours => "hours",
            Period::Minutes => "minutes",
            Period::Seconds => "seconds",
            Period::Microseconds => "microseconds",
        }
    }

    /// Microseconds in one unit.
    pub fn micros(self) -> i64 {
        match self {
            Period::Days => 86_400_000_000,
            Period::Hours => 3_600_000_000,
            Period::Minutes => 60_000_000,
            Period::Seconds => 1_000_000,
            Period::Microseconds => 1,
        }
    }

    /// The largest unit that expresses `micros` exactly: (every, period).
    pub fn best_for(micros: i64) -> (i64, Period) {
        for p in [
            Period::Days,
            Period::Hours,
            Period::Minutes,
            Period::Seconds,
        ] {
            if micros % p.micros() == 0 {
                return (micros / p.micros(), p);
            }
        }
        (micros, Period::Microseconds)
    }
}

/// When a periodic task fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `every` (elapsed time since the previous send).
    Interval {
        /// Column `every`.
        every: i32,
        /// Column `period`.
        period: Period,
    },
    /// Celery's crontab in a zone.
    Crontab(Crontab),
    /// A solar event at a place.
    Solar(Solar),
    /// Once, at an instant.
    Clocked(DateTime<Utc>),
}

impl Schedule {
    /// Kind name, as the foreign-key column prefix (`interval`, `crontab`, `solar`, `clocked`).
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Interval { .. } => "interval",
            Schedule::Crontab(_) => "crontab",
            Schedule::Solar(_) => "solar",
            Schedule::Clocked(_) => "clocked",
        }
    }

    /// Human-readable form.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Interval { every, period } => format!("every {every} {}", period.as_str()),
            Schedule::Crontab(c) => format!("crontab {} ({})", c.expression(), c.tz()),
            Schedule::Solar(s) => format!(
                "solar {} at {}, {}",
                s.event.name(),
                s.latitude,
                s.longitude
            ),
            Schedule::Clocked(at) => format!("clocked {}", at.to_rfc3339()),
        }
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval { every, period } => after.checked_add_signed(
                Duration::microseconds(i64::from(*every).saturating_mul(period.micros())),
            ),
            Schedule::Crontab(c) => c.next_after(after),
            Schedule::Solar(s) => s.next_after(after),
            Schedule::Clocked(at) => (*at > after).then_some(*at),
        }
    }

    /// The first slot at or after `t` (for `start_time`).
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval { .. } => Some(t),
            Schedule::Crontab(c) => c.first_at_or_after(t),
            Schedule::Solar(s) => s.next_after(t - Duration::microseconds(1)),
            Schedule::Clocked(at) => Some((*at).max(t)),
        }
    }
}

/// What happens to a row beat cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BadAction {
    /// Left alone and not scheduled (Celery skips the row).
    Skip,
    /// Set `enabled = false` (Celery disables rows whose args/kwargs do not parse).
    Disable,
    /// Scheduled anyway, as Celery does, but probably a mistake (several schedules set, a
    /// clocked schedule that is not one-off).
    Warn,
}

/// A row beat cannot schedule, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRow {
    /// Row id.
    pub id: i32,
    /// Row name.
    pub name: String,
    /// Why (Celery's message where Celery has one).
    pub reason: String,
    /// Skipped or disabled.
    pub action: BadAction,
}

/// A schedulable periodic task.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Row id.
    pub id: i32,
    /// Unique name (sent as header `periodic_task_name`).
    pub name: String,
    /// When it fires.
    pub schedule: Schedule,
    /// What is sent (no id: each send gets a new one).
    pub task: NewTask,
    /// Never due before.
    pub start_time: Option<DateTime<Utc>>,
    /// Disabled from then on.
    pub expires: Option<DateTime<Utc>>,
    /// Disabled after one run.
    pub one_off: bool,
    /// Previous send (the anchor).
    pub last_run_at: Option<DateTime<Utc>>,
    /// Sends so far.
    pub total_run_count: i32,
    /// Last ORM save (the anchor when `last_run_at` is NULL).
    pub date_changed: DateTime<Utc>,
    /// Something Celery tolerates but is probably a mistake (several schedules set, a clocked
    /// schedule that is not one-off): logged once and listed by `beat --check`.
    pub warning: Option<String>,
}

/// What to do with an entry at an instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// Send it now, for this slot.
    Fire {
        /// The slot being fired.
        slot: DateTime<Utc>,
    },
    /// Disable it (expired, or a one-off that already ran).
    Disable {
        /// Why.
        reason: &'static str,
    },
    /// Look again at this instant.
    At(DateTime<Utc>),
    /// Never due (e.g. a clocked schedule already fired, or no solar event within a year).
    Never,
}

impl Entry {
    /// The slot this entry fires next, ignoring `expires` and `one_off`.
    pub fn next_slot(&self) -> Option<DateTime<Utc>> {
        let mut slot = match (self.last_run_at, self.start_time) {
            // Celery anchors such a row 30 years back: a start_time already past when the
            // row was saved makes it due at once; a future one waits for the first slot at or
            // after it (Celery's `due_start_time`).
            (None, Some(start)) if start <= self.date_changed => match self.schedule {
                Schedule::Clocked(at) => at.max(start),
                _ => start,
            },
            (None, Some(start)) => self.schedule.first_at_or_after(start)?,
            (Some(last), _) => self.schedule.next_after(last)?,
            (None, None) => match self.schedule {
                // Clocked ignores the anchor (Celery): due at its time, even in the past.
                Schedule::Clocked(at) => at,
                _ => self.schedule.next_after(self.date_changed)?,
            },
        };
        if let Some(start) = self.start_time
            && slot < start
        {
            slot = self.schedule.first_at_or_after(start)?;
        }
        Some(slot)
    }

    /// Celery's `is_due()` order at `now`: start_time, expires, one_off, schedule.
    pub fn due(&self, now: DateTime<Utc>) -> Due {
        if let Some(start) = self.start_time
            && now < start
        {
            // Not due before start_time (an expiry before it takes effect at start_time).
            let wake = match (self.next_slot(), self.expires) {
                (Some(s), Some(e)) => s.min(e.max(start)),
                (Some(s), None) => s,
                (None, Some(e)) => e.max(start),
                (None, None) => return Due::Never,
            };
            return Due::At(wake);
        }
        if let Some(exp) = self.expires
            && now >= exp
        {
            return Due::Disable { reason: "expired" };
        }
        if self.one_off && self.total_run_count > 0 {
            return Due::Disable {
                reason: "one-off task already ran",
            };
        }
        match self.next_slot() {
            Some(slot) if slot <= now => Due::Fire { slot },
            Some(slot) => Due::At(self.expires.map_or(slot, |e| slot.min(e))),
            None => self.expires.map_or(Due::Never, Due::At),
        }
    }

    /// The task to send for one fire (a fresh id each time).
    pub fn task_for_fire(&self) -> NewTask {
        self.task.clone().id(crate::task::TaskId::new())
    }
}

fn parse_json_text(text: Option<&str>, default: Value) -> Result<Value, String> {
    match text.map(str::trim) {
        None | Some("") => Ok(default),
        Some(t) => serde_json::from_str(t).map_err(|e| e.to_string()),
    }
}

fn bad(row: &PeriodicTaskRow, action: BadAction, reason: String) -> BadRow {
    BadRow {
        id: row.id,
        name: row.name.clone(),
        reason,
        action,
    }
}

/// The schedule of a row, by Celery's precedence interval > crontab > solar > clocked, and a
/// warning when several are set.
pub fn schedule_of(row: &PeriodicTaskRow) -> Result<(Schedule, Option<String>), String> {
    let set: Vec<&str> = [
        ("interval", row.interval_id.is_some()),
        ("crontab", row.crontab_id.is_some()),
        ("solar", row.solar_id.is_some()),
        ("clocked", row.clocked_id.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    if set.is_empty() {
        return Err("One of clocked, interval, crontab, or solar must be set.".into());
    }
    let mut warning = (set.len() > 1).then(|| {
        format!(
            "Only one of clocked, interval, crontab, or solar must be set (has {}); using {} as Celery does",
            set.join(", "),
            set[0]
        )
    });
    let schedule = match set[0] {
        "interval" => {
            let every = row.interval_every.ok_or("interval row missing")?;
            let period_text = row.interval_period.as_deref().unwrap_or("");
            let period = Period::parse(period_text)
                .ok_or_else(|| format!("unknown interval period {period_text:?}"))?;
            if every < 1 {
                return Err(format!(
                    "interval every={every} must be at least 1 (Celery would send it on every tick)"
                ));
            }
            Schedule::Interval { every, period }
        }
        "crontab" => {
            let f = |v: &Option<String>| v.clone().unwrap_or_default();
            Schedule::Crontab(
                Crontab::new(
                    &f(&row.cron_minute),
                    &f(&row.cron_hour),
                    &f(&row.cron_day_of_month),
                    &f(&row.cron_month_of_year),
                    &f(&row.cron_day_of_week),
                    &f(&row.cron_timezone),
                )
                .map_err(|e: CronError| e.to_string())?,
            )
        }
        "solar" => {
            let event = row.solar_event.clone().unwrap_or_default();
            let lat: f64 = row
                .solar_latitude
                .as_deref()
                .and_then(|s| s.parse().ok())
                .ok_or("solar latitude missing")?;
            let lon: f64 = row
                .solar_longitude
                .as_deref()
                .and_then(|s| s.parse().ok())
                .ok_or("solar longitude missing")?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(format!(
                    "solar position {lat}, {lon} out of range (latitude -90..90, longitude -180..180)"
                ));
            }
            Schedule::Solar(Solar::new(&event, lat, lon).ok_or_else(|| {
                format!(
                    "Invalid event: {event:?} (one of {})",
                    super::solar::SolarEvent::NAMES.join(", ")
                )
            })?)
        }
        _ => {
            let at = row.clocked_time.ok_or("clocked row missing")?;
            if !row.one_off {
                let w = "clocked must be one off, one_off must set True (fires once at its time)";
                warning = Some(match warning {
                    Some(prev) => format!("{prev}; {w}"),
                    None => w.into(),
                });
            }
            Schedule::Clocked(at)
        }
    };
    Ok((schedule, warning))
}

/// Turn a row into an entry, or say why it cannot be scheduled (and whether Celery would
/// disable it or skip it).
pub fn entry_from_row(row: &PeriodicTaskRow, max_payload_bytes: usize) -> Result<Entry, BadRow> {
    let (schedule, warning) =
        schedule_of(row).map_err(|reason| bad(row, BadAction::Skip, reason))?;
    // Celery disables a row whose args/kwargs do not parse. JSON of the wrong shape is sent by
    // Celery anyway and fails in the worker; we disable it too, with the reason.
    let args = parse_json_text(row.args.as_deref(), json!([])).map_err(|e| {
        bad(
            row,
            BadAction::Disable,
            format!("args are not valid JSON: {e}"),
        )
    })?;
    let args = match args {
        Value::Null => json!([]),
        Value::Array(_) => args,
        other => {
            return Err(bad(
                row,
                BadAction::Disable,
                format!("args must be a JSON array, got {other}"),
            ));
        }
    };
    let kwargs = parse_json_text(row.kwargs.as_deref(), json!({})).map_err(|e| {
        bad(
            row,
            BadAction::Disable,
            format!("kwargs are not valid JSON: {e}"),
        )
    })?;
    let kwargs = match kwargs {
        Value::Null => json!({}),
        Value::Object(_) => kwargs,
        other => {
            return Err(bad(
                row,
                BadAction::Disable,
                format!("kwargs must be a JSON object, got {other}"),
            ));
        }
    };
    // Celery skips (does not disable) a row whose headers do not parse.
    let headers = parse_json_text(row.headers.as_deref(), json!({})).map_err(|e| {
        bad(
            row,
            BadAction::Skip,
            format!("headers are not valid JSON: {e}"),
        )
    })?;
    let mut headers = match headers {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        other => {
            return Err(bad(
                row,
                BadAction::Skip,
                format!("headers must be a JSON object, got {other}"),
            ));
        }
    };
    headers.insert("periodic_task_name".into(), json!(row.name));
    headers.insert("celery_beat_task".into(), json!(true));
    let priority = match row.priority {
        None => 0,
        Some(p) if (0..=255).contains(&p) => p as u8,
        Some(p) => {
            return Err(bad(
                row,
                BadAction::Skip,
                format!("priority {p} is outside 0..255"),
            ));
        }
    };
    let mut task = NewTask::new(row.task.clone())
        .args(args)
        .kwargs(kwargs)
        .headers(Value::Object(headers))
        .priority(priority);
    if let Some(q) = row.queue.as_deref().filter(|q| !q.is_empty()) {
        task = task.queue(q);
    }
    // Celery: expires_ = expires or expire_seconds (0 means unset).
    if let Some(at) = row.expires {
        task = task.expires_at(at);
    } else if let Some(s) = row.expire_seconds.filter(|s| *s > 0) {
        task = task.expires_in(f64::from(s));
    }
    task.validate(max_payload_bytes)
        .map_err(|e| bad(row, BadAction::Skip, e.to_string()))?;
    Ok(Entry {
        id: row.id,
        name: row.name.clone(),
        schedule,
        task,
        start_time: row.start_time,
        expires: row.expires,
        one_off: row.one_off,
        last_run_at: row.last_run_at,
        total_run_count: row.total_run_count,
        date_changed: row.date_changed,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(schedule: Schedule) -> Entry {
        Entry {
            id: 1,
            name: "t".into(),
            schedule,
            task: NewTask::new("x"),
            start_time: None,
            expires: None,
            one_off: false,
            last_run_at: None,
            total_run_count: 0,
            date_changed: at("2024-01-01T10:07:00Z"),
            warning: None,
        }
    }

    #[test]
    fn anchoring_as_celery() {
        let every10 = Schedule::Interval {
            every: 10,
            period: Period::Seconds,
        };
        // No last_run_at, no start_time: date_changed + every.
        let e = entry(every10.clone());
        assert_eq!(e.next_slot(), Some(at("2024-01-01T10:07:10Z")));
        // start_time in the past with no last_run_at: due at once.
        let mut e = entry(every10.clone());
        e.start_time = Some(at("2024-01-01T09:00:00Z"));
        assert_eq!(
            e.due(at("2024-01-01T10:08:00Z")),
            Due::Fire {
                slot: at("2024-01-01T09:00:00Z")
            }
        );
        // Future start_time: not before it.
        e.start_time = Some(at("2024-01-01T11:00:00Z"));
        assert_eq!(
            e.due(at("2024-01-01T10:08:00Z")),
            Due::At(at("2024-01-01T11:00:00Z"))
        );
        // Crontab: first slot after date_changed; catch-up is one run.
        let c = Schedule::Crontab(Crontab::new("*/15", "*", "*", "*", "*", "UTC").unwrap());
        let mut e = entry(c);
        assert_eq!(e.next_slot(), Some(at("2024-01-01T10:15:00Z")));
        e.last_run_at = Some(at("2024-01-01T10:15:00.5Z"));
        assert_eq!(
            e.due(at("2024-01-03T00:00:00Z")),
            Due::Fire {
                slot: at("2024-01-01T10:30:00Z")
            }
        );
        // Expired before anything else; one-off that ran.
        e.expires = Some(at("2024-01-02T00:00:00Z"));
        assert_eq!(
            e.due(at("2024-01-03T00:00:00Z")),
            Due::Disable { reason: "expired" }
        );
        let mut o = entry(Schedule::Clocked(at("2024-01-01T12:00:00Z")));
        o.one_off = true;
        assert_eq!(
            o.due(at("2024-01-01T11:00:00Z")),
            Due::At(at("2024-01-01T12:00:00Z"))
        );
        o.last_run_at = Some(at("2024-01-01T12:00:01Z"));
        assert_eq!(o.next_slot(), None);
        o.total_run_count = 1;
        assert!(matches!(
            o.due(at("2024-01-01T13:00:00Z")),
            Due::Disable { .. }
        ));
    }
}
