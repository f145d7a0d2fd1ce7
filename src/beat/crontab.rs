//! Crontab schedules exactly as Celery 5.7 parses and evaluates them
//! (`celery.schedules.crontab` and `crontab_parser`, with django-celery-beat's per-row time
//! zone), minus Celery's repeated-hour re-fire bug.
//!
//! Parsing (see `shared/research/django_celery_beat.md` §6.1): fields split on `,`; each part
//! is `a-b/n`, `a-b` (wrapping when `b < a`), `*/n`, `*` or a single value; values are integers
//! or names (only the first three letters count, month names before weekday names, in every
//! field); Sunday is 0 and 7 is rejected; trailing text after a valid prefix is ignored, as
//! Celery's unanchored regular expressions do. Errors carry Celery's own messages.
//!
//! Evaluation (§6.2, §6.3): a day qualifies when its month AND day of month AND weekday are
//! selected (not cron's OR). The next slot after `last` is the first wall-clock minute strictly
//! after `last`'s minute (in the row's zone) that matches, converted to an instant with
//! Python's `fold=0`: a repeated wall time is its first occurrence, and a skipped one uses the
//! offset in force before the gap (so it fires the gap's length later). Unlike Celery, a slot
//! at or before `last` is never returned (§6.5): Celery returns the first occurrence of a
//! repeated hour even when `last` lies in the second one, and fires again on every tick.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A crontab that Celery would reject, with Celery's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    /// Which field (`minute`, `hour`, `day_of_week`, `day_of_month`, `month_of_year`,
    /// `timezone`), or `crontab` for a whole-expression problem.
    pub field: &'static str,
    /// Celery's message (`Invalid end range: 7 > 6.`, `empty part`, …).
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CronError {}

/// A parsed crontab in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Crontab {
    minute: u64,
    hour: u32,
    day_of_week: u8,
    day_of_month: u32,
    month_of_year: u16,
    tz: Tz,
    /// The fields as written: minute, hour, day_of_month, month_of_year, day_of_week.
    orig: [String; 5],
}

/// Days per month as Celery counts them when validating (February has 29).
const CRON_DAYS_IN_MONTH: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// How far ahead a slot is looked for (a valid crontab always has one within 28 years).
const SEARCH_YEARS: i32 = 100;

/// Parse an IANA time zone name as `zoneinfo.ZoneInfo` would (case-sensitive).
pub fn parse_tz(name: &str) -> Result<Tz, CronError> {
    name.parse::<Tz>().map_err(|_| CronError {
        field: "timezone",
        message: format!("No time zone found with key {name}"),
    })
}

impl Crontab {
    /// Parse the five fields (in Celery's argument order of the model columns) and the zone.
    pub fn new(
        minute: &str,
        hour: &str,
        day_of_month: &str,
        month_of_year: &str,
        day_of_week: &str,
        timezone: &str,
    ) -> Result<Self, CronError> {
        // Celery's constructor parses in this order, so the first error reported matches.
        let hour_set = parse_field("hour", hour, 24, 0)?;
        let minute_set = parse_field("minute", minute, 60, 0)?;
        let dow_set = parse_field("day_of_week", day_of_week, 7, 0)?;
        let dom_set = parse_field("day_of_month", day_of_month, 31, 1)?;
        let moy_set = parse_field("month_of_year", month_of_year, 12, 1)?;
        let possible = (1..=12u32).any(|m| {
            moy_set & (1 << m) != 0
                && (1..=CRON_DAYS_IN_MONTH[m as usize]).any(|d| dom_set & (1 << d) != 0)
        });
        if !possible {
            return Err(CronError {
                field: "crontab",
                message: format!(
                    "Invalid crontab: day_of_month {} never occurs in month_of_year {}.",
                    py_repr(day_of_month),
                    py_repr(month_of_year)
                ),
            });
        }
        let tz = parse_tz(timezone)?;
        Ok(Crontab {
            minute: minute_set,
            hour: hour_set as u32,
            day_of_week: dow_set as u8,
            day_of_month: dom_set as u32,
            month_of_year: moy_set as u16,
            tz,
            orig: [
                minute.into(),
                hour.into(),
                day_of_month.into(),
                month_of_year.into(),
                day_of_week.into(),
            ],
        })
    }

    /// Parse `M H DOM MON DOW` (five fields separated by whitespace) in zone `timezone`.
    pub fn from_expression(expr: &str, timezone: &str) -> Result<Self, CronError> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(CronError {
                field: "crontab",
                message: format!(
                    "expected 5 fields 'minute hour day_of_month month_of_year day_of_week', got {}",
                    f.len()
                ),
            });
        }
        Self::new(f[0], f[1], f[2], f[3], f[4], timezone)
    }

    /// The zone the crontab is evaluated in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The expression as written: `M H DOM MON DOW`.
    pub fn expression(&self) -> String {
        self.orig.join(" ")
    }

    fn date_matches(&self, d: NaiveDate) -> bool {
        self.month_of_year & (1 << d.month()) != 0
            && self.day_of_month & (1 << d.day()) != 0
            && self.day_of_week & (1 << d.weekday().num_days_from_sunday()) != 0
    }

    /// The first matching wall-clock minute at or after `from` (seconds ignored).
    fn next_wall_at_or_after(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let mut min_h = from.hour();
        let mut min_m = from.minute();
        let last_year = date.year() + SEARCH_YEARS;
        while date.year() <= last_year {
            if self.month_of_year & (1 << date.month()) == 0 {
                // Jump to the first day of the next month.
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                date = NaiveDate::from_ymd_opt(y, m, 1)?;
                (min_h, min_m) = (0, 0);
                continue;
            }
            if self.date_matches(date) {
                for h in min_h..24 {
                    if self.hour & (1 << h) == 0 {
                        continue;
                    }
                    let start = if h == min_h { min_m } else { 0 };
                    if let Some(m) = (start..60).find(|m| self.minute & (1u64 << m) != 0) {
                        return date.and_hms_opt(h, m, 0);
                    }
                }
            }
            date = date.succ_opt()?;
            (min_h, min_m) = (0, 0);
        }
        None
    }

    /// A wall-clock time in this zone as an instant, as Python does with `fold=0`.
    fn resolve(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        resolve_fold0(&self.tz, wall)
    }

    /// The next slot strictly after `last`: the first matching wall-clock minute after
    /// `last`'s minute, skipping any instant at or before `last`. `None`: no slot within a
    /// century (cannot happen for a crontab that parsed).
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = last.with_timezone(&self.tz).naive_local();
        let minute = local.with_second(0)?.with_nanosecond(0)?;
        let mut cursor = minute + Duration::minutes(1);
        // At most one repeated period is skipped (60 minutes, or 30 on Lord Howe) plus the
        // slots of a day; the bound only guards against a pathological zone.
        for _ in 0..10_000 {
            let wall = self.next_wall_at_or_after(cursor)?;
            let at = self.resolve(wall);
            if at > last {
                return Some(at);
            }
            cursor = wall + Duration::minutes(1);
        }
        None
    }

    /// The first slot at or after `t` (a start_time: a slot exactly at it counts).
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = self.next_after(t - Duration::minutes(1))?;
        if n >= t { Some(n) } else { self.next_after(t) }
    }

    /// What Celery 5.7 itself would answer for `next_after(last)`, bug included: the slot may
    /// lie at or before `last` in a repeated hour. Only for tests and diagnostics.
    pub fn celery_next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = last.with_timezone(&self.tz).naive_local();
        let minute = local.with_second(0)?.with_nanosecond(0)?;
        let wall = self.next_wall_at_or_after(minute + Duration::minutes(1))?;
        Some(self.resolve(wall))
    }
}

/// `wall` in `tz` as an instant with Python's `fold=0`: the first occurrence of a repeated
/// time; for a time in a gap, the offset in force before the gap.
pub fn resolve_fold0(tz: &Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        chrono::LocalResult::None => {
            // Walk back to the last valid wall time before the gap and use its offset.
            let mut probe = wall;
            for _ in 0..200 {
                probe -= Duration::minutes(15);
                let offset = match tz.from_local_datetime(&probe) {
                    chrono::LocalResult::Single(t) => Some(t.offset().fix()),
                    chrono::LocalResult::Ambiguous(_, b) => Some(b.offset().fix()),
                    chrono::LocalResult::None => None,
                };
                if let Some(off) = offset {
                    let utc = wall - Duration::seconds(i64::from(off.local_minus_utc()));
                    return Utc.from_utc_datetime(&utc);
                }
            }
            Utc.from_utc_datetime(&wall)
        }
    }
}

/// Python's `repr()` of a str, as Celery's messages print it.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Length in bytes of the run of word characters at the start of `s`.
fn word_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !is_word(*c))
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

/// Python's `int(s)` for a str: surrounding whitespace, an optional sign, decimal digits with
/// single underscores between them.
fn py_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let mut v: i128 = 0;
    let mut prev_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        prev_underscore = false;
        let d = c.to_digit(10)?;
        v = v.saturating_mul(10).saturating_add(i128::from(d));
    }
    Some(if neg { -v } else { v })
}

fn err(field: &'static str, message: impl Into<String>) -> CronError {
    CronError {
        field,
        message: message.into(),
    }
}

struct FieldParser {
    field: &'static str,
    max: i128,
    min: i128,
}

impl FieldParser {
    fn expand_number(&self, s: &str) -> Result<i128, CronError> {
        if s.starts_with('-') {
            return Err(err(self.field, "negative numbers not supported"));
        }
        let i = match py_int(s) {
            Some(i) => i,
            None => {
                let abbr: String = s.chars().take(3).collect::<String>().to_lowercase();
                if let Some(m) = MONTHS.iter().position(|n| *n == abbr) {
                    m as i128 + 1
                } else if let Some(d) = WEEKDAYS.iter().position(|n| *n == abbr) {
                    d as i128
                } else {
                    return Err(err(
                        self.field,
                        format!("Invalid weekday literal {}.", py_repr(s)),
                    ));
                }
            }
        };
        let max_val = self.min + self.max - 1;
        if i > max_val {
            return Err(err(
                self.field,
                format!("Invalid end range: {i} > {max_val}."),
            ));
        }
        if i < self.min {
            return Err(err(
                self.field,
                format!("Invalid beginning range: {i} < {}.", self.min),
            ));
        }
        Ok(i)
    }

    fn expand_range(&self, from: &str, to: Option<&str>) -> Result<Vec<i128>, CronError> {
        let fr = self.expand_number(from)?;
        let Some(to) = to else {
            return Ok(vec![fr]);
        };
        let to = self.expand_number(to)?;
        if to < fr {
            Ok((fr..self.min + self.max).chain(self.min..=to).collect())
        } else {
            Ok((fr..=to).collect())
        }
    }

    fn expand_star(&self) -> Vec<i128> {
        (self.min..self.max + self.min).collect()
    }

    fn step(&self, values: Vec<i128>, step: &str) -> Result<Vec<i128>, CronError> {
        let n = py_int(step).ok_or_else(|| {
            err(
                self.field,
                format!("invalid literal for int() with base 10: {}", py_repr(step)),
            )
        })?;
        if n == 0 {
            return Err(err(self.field, "slice step cannot be zero"));
        }
        // Python's list[::n]; a negative n cannot be written (`-` is not a word character).
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        Ok(values.into_iter().step_by(n).collect())
    }

    fn parse_part(&self, part: &str) -> Result<Vec<i128>, CronError> {
        // `(\w+?)-(\w+)/(\w+)?` and `(\w+?)-(\w+)`, matched at the start only.
        let w1 = word_len(part);
        if w1 > 0 && part[w1..].starts_with('-') {
            let rest = &part[w1 + 1..];
            let w2 = word_len(rest);
            if w2 > 0 {
                let (a, b) = (&part[..w1], &rest[..w2]);
                if let Some(after) = rest[w2..].strip_prefix('/') {
                    let step = &after[..word_len(after)];
                    if step.is_empty() {
                        return Err(err(self.field, "empty filter"));
                    }
                    let values = self.expand_range(a, Some(b))?;
                    return self.step(values, step);
                }
                return self.expand_range(a, Some(b));
            }
        }
        // `\*/(\w+)?`
        if let Some(after) = part.strip_prefix("*/") {
            let step = &after[..word_len(after)];
            if step.is_empty() {
                return Err(err(self.field, "empty filter"));
            }
            return self.step(self.expand_star(), step);
        }
        // `^\*$`
        if part == "*" {
            return Ok(self.expand_star());
        }
        self.expand_range(part, None)
    }
}

/// Parse one field into a bit set (bit n = value n).
fn parse_field(field: &'static str, spec: &str, max: i128, min: i128) -> Result<u64, CronError> {
    let p = FieldParser { field, max, min };
    let mut bits = 0u64;
    for part in spec.split(',') {
        if part.is_empty() {
            return Err(err(field, "empty part"));
        }
        for v in p.parse_part(part)? {
            // expand_number bounds every value to min..min+max-1 (< 64).
            bits |= 1u64 << (v as u32);
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: &str, max: i128, min: i128) -> Result<Vec<u32>, String> {
        parse_field("f", spec, max, min)
            .map(|b| (0..64).filter(|i| b & (1u64 << i) != 0).collect())
            .map_err(|e| e.message)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fields_parse_like_celery() {
        assert_eq!(set("*/15", 60, 0).unwrap(), vec![0, 15, 30, 45]);
        assert_eq!(set("*/3", 31, 1).unwrap().len(), 11);
        assert_eq!(set("2-12/2", 12, 1).unwrap(), vec![2, 4, 6, 8, 10, 12]);
        assert_eq!(
            set("55-5", 60, 0).unwrap(),
            vec![0, 1, 2, 3, 4, 5, 55, 56, 57, 58, 59]
        );
        assert_eq!(set("fri-mon", 7, 0).unwrap(), vec![0, 1, 5, 6]);
        assert_eq!(set("nov-feb", 12, 1).unwrap(), vec![1, 2, 11, 12]);
        assert_eq!(set("mon-fri", 7, 0).unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(set("Sunday,monday", 7, 0).unwrap(), vec![0, 1]);
        assert_eq!(set("jun", 7, 0).unwrap(), vec![6]);
        assert_eq!(set("mon#2", 7, 0).unwrap(), vec![1]);
        assert_eq!(set("*/61", 60, 0).unwrap(), vec![0]);
        assert_eq!(set("*/15-3", 60, 0).unwrap(), vec![0, 15, 30, 45]);
        assert_eq!(set("1-5/2/3", 60, 0).unwrap(), vec![1, 3, 5]);
        assert_eq!(set(" 5", 60, 0).unwrap(), vec![5]);
        assert_eq!(set("7", 7, 0).unwrap_err(), "Invalid end range: 7 > 6.");
        assert_eq!(
            set("0", 31, 1).unwrap_err(),
            "Invalid beginning range: 0 < 1."
        );
        assert_eq!(set("L", 7, 0).unwrap_err(), "Invalid weekday literal 'L'.");
        assert_eq!(
            set("5/2", 60, 0).unwrap_err(),
            "Invalid weekday literal '5/2'."
        );
        assert_eq!(set("", 60, 0).unwrap_err(), "empty part");
        assert_eq!(set("1,,2", 60, 0).unwrap_err(), "empty part");
        assert_eq!(set("*/", 60, 0).unwrap_err(), "empty filter");
        assert_eq!(set("1-5/", 60, 0).unwrap_err(), "empty filter");
        assert_eq!(set("*/0", 60, 0).unwrap_err(), "slice step cannot be zero");
        assert_eq!(
            set("-5", 60, 0).unwrap_err(),
            "negative numbers not supported"
        );
        let e = Crontab::new("0", "0", "30", "2", "*", "UTC").unwrap_err();
        assert_eq!(
            e.message,
            "Invalid crontab: day_of_month '30' never occurs in month_of_year '2'."
        );
        assert!(Crontab::new("0", "0", "29", "2", "*", "UTC").is_ok());
        assert_eq!(
            Crontab::new("*", "*", "*", "*", "*", "Mars/Olympus")
                .unwrap_err()
                .field,
            "timezone"
        );
    }

    #[test]
    fn day_fields_and_together() {
        let c = Crontab::new("0", "0", "13", "*", "fri", "UTC").unwrap();
        let mut t = at("2024-01-01T00:00:00Z");
        let mut got = vec![];
        for _ in 0..3 {
            t = c.next_after(t).unwrap();
            got.push(t.to_rfc3339());
        }
        assert_eq!(
            got,
            [
                "2024-09-13T00:00:00+00:00",
                "2024-12-13T00:00:00+00:00",
                "2025-06-13T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn dst_gap_and_repeat() {
        // Spring forward in Berlin: 02:30 does not exist and fires at 03:30 CEST (01:30Z).
        let c = Crontab::new("30", "2", "*", "*", "*", "Europe/Berlin").unwrap();
        assert_eq!(
            c.next_after(at("2024-03-30T23:00:00Z")).unwrap(),
            at("2024-03-31T01:30:00Z")
        );
        // Fall back: 02:10 CET (second occurrence) is 01:10Z. Celery answers the first
        // occurrence of 02:11 (00:11Z, before last); we never go back.
        let c = Crontab::new("*", "2", "*", "*", "*", "Europe/Berlin").unwrap();
        let last = at("2024-10-27T01:10:00Z");
        assert_eq!(
            c.celery_next_after(last).unwrap(),
            at("2024-10-27T00:11:00Z")
        );
        assert_eq!(c.next_after(last).unwrap(), at("2024-10-28T01:00:00Z"));
        // First occurrence of a repeated time.
        let c = Crontab::new("30", "2", "*", "*", "*", "Europe/Berlin").unwrap();
        assert_eq!(
            c.next_after(at("2024-10-26T23:00:00Z")).unwrap(),
            at("2024-10-27T00:30:00Z")
        );
        assert_eq!(
            c.first_at_or_after(at("2024-10-28T01:30:00Z")).unwrap(),
            at("2024-10-28T01:30:00Z")
        );
    }
}
