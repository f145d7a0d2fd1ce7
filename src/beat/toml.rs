//! The `[beat]` section of the configuration file: beat's settings and schedules (like
//! Celery's `CELERY_BEAT_SCHEDULE`), upserted by name into django-celery-beat's tables when
//! beat starts. Schedules removed from the file are left in the tables (as Celery does);
//! remove them with `celeriac schedule remove`.
//!
//! ```toml
//! [beat]
//! django_schema = "public"      # where the django_celery_beat_* tables live
//! lease = "6s"                  # leader lease (takeover after a crash within ~lease·4/3)
//!
//! [beat.schedules.cleanup]
//! task = "app.tasks.cleanup"
//! crontab = "0 3 * * *"         # minute hour day_of_month month_of_year day_of_week
//! timezone = "Europe/Berlin"
//! kwargs = { older_than_days = 30 }
//!
//! [beat.schedules.ping]
//! task = "celeriac.noop"
//! every = "30s"
//! queue = "monitoring"
//! expire_seconds = 25
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::admin::{ScheduleRequest, ScheduleSpec};
use crate::error::{Error, Result};

/// `[beat]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeatSection {
    /// Schema of the django_celery_beat_* tables (default public).
    pub django_schema: Option<String>,
    /// Leader lease, e.g. "6s".
    pub lease: Option<String>,
    /// Full reload interval, e.g. "30s".
    pub reload_interval: Option<String>,
    /// Schedules by name.
    #[serde(default)]
    pub schedules: BTreeMap<String, TomlSchedule>,
}

/// `[beat.schedules.<name>]`: exactly one of `every`, `crontab`, `solar`, `clocked`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlSchedule {
    /// Task name.
    pub task: String,
    /// Interval: "30s", "5m", "1h", "1d", "500ms".
    pub every: Option<String>,
    /// "M H DOM MON DOW".
    pub crontab: Option<String>,
    /// Zone of the crontab (default UTC).
    pub timezone: Option<String>,
    /// Solar event.
    pub solar: Option<TomlSolar>,
    /// Instant (TOML datetime or RFC 3339 string); requires one_off = true.
    pub clocked: Option<::toml::Value>,
    /// Positional arguments.
    pub args: Option<::toml::Value>,
    /// Keyword arguments.
    pub kwargs: Option<::toml::Value>,
    /// Headers.
    pub headers: Option<::toml::Value>,
    /// Queue.
    pub queue: Option<String>,
    /// 0..255.
    pub priority: Option<u8>,
    /// Instant after which the schedule is disabled.
    pub expires: Option<::toml::Value>,
    /// Sent tasks expire this many seconds after sending.
    pub expire_seconds: Option<u32>,
    /// Run once.
    #[serde(default)]
    pub one_off: bool,
    /// Not before.
    pub start_time: Option<::toml::Value>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Free text.
    pub description: Option<String>,
}

/// `solar = { event = "sunrise", latitude = 52.52, longitude = 13.40 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlSolar {
    /// Event name.
    pub event: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// Parse "500ms", "30s", "5m", "2h", "1d" (or a bare number of seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Invalid(format!("bad duration {s:?} (e.g. 30s, 5m, 2h, 1d)")))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        u => {
            return Err(Error::Invalid(format!(
                "bad duration unit {u:?} in {s:?} (ms, s, m, h, d)"
            )));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(Error::Invalid(format!("bad duration {s:?}")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn instant(field: &str, v: &::toml::Value) -> Result<DateTime<Utc>> {
    let text = match v {
        ::toml::Value::Datetime(d) => d.to_string(),
        ::toml::Value::String(s) => s.clone(),
        other => {
            return Err(Error::Invalid(format!(
                "{field} must be an RFC 3339 instant, got {other}"
            )));
        }
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            Error::Invalid(format!(
                "{field} {text:?} is not an RFC 3339 instant with an offset: {e}"
            ))
        })
}

fn json(v: Option<&::toml::Value>, default: Value) -> Result<Value> {
    match v {
        None => Ok(default),
        Some(v) => serde_json::to_value(v).map_err(|e| Error::Invalid(e.to_string())),
    }
}

impl TomlSchedule {
    /// The request for schedule `name`.
    pub fn to_request(&self, name: &str) -> Result<ScheduleRequest> {
        let ctx = |e: Error| Error::Invalid(format!("[beat.schedules.{name}]: {e}"));
        let kinds = [
            self.every.is_some(),
            self.crontab.is_some(),
            self.solar.is_some(),
            self.clocked.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            return Err(ctx(Error::Invalid(
                "give exactly one of every, crontab, solar, clocked".into(),
            )));
        }
        if self.timezone.is_some() && self.crontab.is_none() {
            return Err(ctx(Error::Invalid(
                "timezone only applies to crontab".into(),
            )));
        }
        let spec = if let Some(every) = &self.every {
            let d = parse_duration(every).map_err(ctx)?;
            ScheduleSpec::every_micros(d.as_micros().min(i64::MAX as u128) as i64).map_err(ctx)?
        } else if let Some(c) = &self.crontab {
            ScheduleSpec::crontab(c, self.timezone.as_deref().unwrap_or("UTC")).map_err(ctx)?
        } else if let Some(s) = &self.solar {
            ScheduleSpec::Solar {
                event: s.event.clone(),
                latitude: s.latitude,
                longitude: s.longitude,
            }
        } else {
            let at = self.clocked.as_ref().map(|v| instant("clocked", v));
            ScheduleSpec::Clocked {
                at: at.transpose().map_err(ctx)?.unwrap_or_default(),
            }
        };
        let mut req = ScheduleRequest::new(name, self.task.clone(), spec);
        req.args = json(self.args.as_ref(), serde_json::json!([])).map_err(ctx)?;
        req.kwargs = json(self.kwargs.as_ref(), serde_json::json!({})).map_err(ctx)?;
        req.headers = json(self.headers.as_ref(), serde_json::json!({})).map_err(ctx)?;
        req.queue = self.queue.clone();
        req.priority = self.priority;
        req.expires = self
            .expires
            .as_ref()
            .map(|v| instant("expires", v))
            .transpose()
            .map_err(ctx)?;
        req.expire_seconds = self.expire_seconds;
        req.one_off = self.one_off;
        req.start_time = self
            .start_time
            .as_ref()
            .map(|v| instant("start_time", v))
            .transpose()
            .map_err(ctx)?;
        req.enabled = self.enabled.unwrap_or(true);
        req.description = self.description.clone().unwrap_or_default();
        req.validate().map_err(ctx)?;
        Ok(req)
    }
}

impl BeatSection {
    /// Every schedule of the file as a request (all checked before any is written).
    pub fn requests(&self) -> Result<Vec<ScheduleRequest>> {
        self.schedules
            .iter()
            .map(|(name, s)| s.to_request(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conffile::ConfigFile;

    #[test]
    fn schedules_parse() {
        let f = ConfigFile::parse(
            r#"
[beat]
django_schema = "public"
[beat.schedules.a]
task = "x.y"
crontab = "*/5 9-17 * * mon-fri"
timezone = "Europe/Berlin"
kwargs = { n = 1 }
[beat.schedules.b]
task = "x.z"
every = "90s"
[beat.schedules.c]
task = "x.c"
clocked = 2030-01-01T00:00:00Z
one_off = true
"#,
        )
        .unwrap();
        let s: BeatSection = f.section("beat").unwrap().unwrap();
        let r = s.requests().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].kwargs, serde_json::json!({"n": 1}));
        assert_eq!(
            r[1].schedule,
            ScheduleSpec::Interval {
                every: 90,
                period: super::super::schedule::Period::Seconds
            }
        );
        let bad = ConfigFile::parse("[beat.schedules.x]\ntask = \"t\"\ncrontab = \"* * * * 7\"\n")
            .unwrap()
            .section::<BeatSection>("beat")
            .unwrap()
            .unwrap()
            .requests()
            .unwrap_err()
            .to_string();
        assert!(bad.contains("Invalid end range: 7 > 6."), "{bad}");
    }
}
