//! Rate limits and concurrency caps that hold across every worker (`celeriac.limits`).
//!
//! A limit targets a task name or a queue: a rate like Celery's `rate_limit` (`"10/s"`,
//! `"100/m"`, `"1000/h"`: at most that many starts per period, in bursts of at most that many)
//! and/or a concurrency cap (at most N running anywhere), optionally separate per value of one
//! kwarg (`partition_by = "customer_id"`). Workers check them when they claim: a task over its
//! limit waits (THROTTLED for a slot, or SCHEDULED until its prepaid token exists) without
//! holding up the tasks behind it.
//!
//! In the configuration file (applied when a worker or `dev` starts):
//!
//! ```toml
//! [limits."task:report.build"]
//! rate = "10/m"
//! concurrency = 3
//! partition_by = "customer_id"
//!
//! [limits."queue:mail"]
//! rate = "100/s"
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Tasks with this name.
    Task,
    /// Tasks in this queue.
    Queue,
}

impl LimitKind {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Task => "task",
            LimitKind::Queue => "queue",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit to set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitSpec {
    /// Task or queue.
    pub kind: LimitKind,
    /// The task name or queue name.
    pub target: String,
    /// Celery rate syntax: `"10/s"`, `"100/m"`, `"1000/h"`.
    pub rate: Option<String>,
    /// At most this many running at once.
    pub concurrency: Option<u32>,
    /// Separate buckets per value of this kwarg.
    pub partition_by: Option<String>,
}

impl LimitSpec {
    /// Check it before it reaches the database.
    pub fn validate(&self) -> Result<()> {
        if self.target.is_empty() {
            return Err(Error::Invalid("a limit needs a task or queue name".into()));
        }
        if self.rate.is_none() && self.concurrency.is_none() {
            return Err(Error::Invalid(
                "a limit needs a rate, a concurrency, or both".into(),
            ));
        }
        if let Some(r) = &self.rate {
            parse_rate(r)?;
        }
        if self.concurrency == Some(0) {
            return Err(Error::Invalid("concurrency must be at least 1".into()));
        }
        Ok(())
    }
}

/// Parse Celery's rate syntax into (count, period in seconds): `"10/s"`, `"100/m"`, `"1000/h"`,
/// or a bare number per second.
pub fn parse_rate(rate: &str) -> Result<(u32, f64)> {
    let bad = || {
        Error::Invalid(format!(
            "rate {rate:?}: expected N/s, N/m or N/h with N > 0 (like Celery's rate_limit)"
        ))
    };
    let (n, unit) = match rate.trim().split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (rate.trim(), "s"),
    };
    let count: u32 = n.parse().map_err(|_| bad())?;
    if count == 0 || count > i32::MAX as u32 {
        return Err(bad());
    }
    let period = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Ok((count, period))
}

/// One entry of the `[limits]` section: keyed by `"task:<name>"` or `"queue:<name>"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitEntry {
    /// Celery rate syntax.
    pub rate: Option<String>,
    /// Running cap.
    pub concurrency: Option<u32>,
    /// Kwarg to partition by.
    pub partition_by: Option<String>,
}

/// The `[limits]` section as specs.
pub fn from_section(section: BTreeMap<String, LimitEntry>) -> Result<Vec<LimitSpec>> {
    section
        .into_iter()
        .map(|(key, e)| {
            let (kind, target) = match key.split_once(':') {
                Some(("task", t)) => (LimitKind::Task, t),
                Some(("queue", t)) => (LimitKind::Queue, t),
                _ => {
                    return Err(Error::Invalid(format!(
                        "[limits.\"{key}\"]: keys are \"task:<name>\" or \"queue:<name>\""
                    )));
                }
            };
            let spec = LimitSpec {
                kind,
                target: target.to_string(),
                rate: e.rate,
                concurrency: e.concurrency,
                partition_by: e.partition_by,
            };
            spec.validate()
                .map_err(|err| Error::Invalid(format!("[limits.\"{key}\"]: {err}")))?;
            Ok(spec)
        })
        .collect()
}

/// A limit as stored, with its current use.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LimitRow {
    /// task or queue.
    pub kind: String,
    /// Task or queue name.
    pub target: String,
    /// Starts per period.
    pub rate_count: Option<i32>,
    /// Period in seconds.
    pub rate_period: Option<f64>,
    /// Running cap.
    pub concurrency: Option<i32>,
    /// Partition kwarg.
    pub partition_by: Option<String>,
    /// Running now (all partitions).
    pub running: i64,
    /// Waiting for a slot.
    pub throttled: i64,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s").unwrap(), (10, 1.0));
        assert_eq!(parse_rate(" 100 / m ").unwrap(), (100, 60.0));
        assert_eq!(parse_rate("1000/h").unwrap(), (1000, 3600.0));
        assert_eq!(parse_rate("5").unwrap(), (5, 1.0));
        for bad in ["0/s", "-1/s", "10/d", "x/s", "", "10/"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_section() {
        let f = crate::conffile::ConfigFile::parse(
            "[limits.\"task:report.build\"]\nrate = \"10/m\"\nconcurrency = 3\npartition_by = \"customer_id\"\n[limits.\"queue:mail\"]\nrate = \"100/s\"\n",
        )
        .unwrap();
        let section: BTreeMap<String, LimitEntry> = f.section("limits").unwrap().unwrap();
        let specs = from_section(section).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].kind, LimitKind::Task);
        assert_eq!(specs[1].concurrency, Some(3));
        let bad: BTreeMap<String, LimitEntry> =
            crate::conffile::ConfigFile::parse("[limits.\"report\"]\nrate = \"1/s\"\n")
                .unwrap()
                .section("limits")
                .unwrap()
                .unwrap();
        assert!(from_section(bad).is_err());
    }
}
