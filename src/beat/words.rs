//! Schedules in words, for people: "at 09:00 on Monday to Friday (Europe/Berlin)", "every 30
//! seconds", "once at 2030-01-01 09:00:00 UTC". Shown by the dashboard and returned by the HTTP
//! API next to the structured schedule. Common crontab shapes read as sentences; anything else
//! falls back to naming the fields as written, so the text is never wrong, only plainer.
//!
//! Crontab days follow Celery's rule: a day must match the day of month AND the month AND the
//! weekday (not cron's OR), and the words say so ("on day 13 of the month, if it is a Friday").

use super::admin::ScheduleSpec;
use super::schedule::Period;

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A schedule in words.
pub fn in_words(spec: &ScheduleSpec) -> String {
    match spec {
        ScheduleSpec::Interval { every, period } => interval(*every, *period),
        ScheduleSpec::Crontab {
            minute,
            hour,
            day_of_month,
            month_of_year,
            day_of_week,
            timezone,
        } => format!(
            "{} ({timezone})",
            crontab(minute, hour, day_of_month, month_of_year, day_of_week)
        ),
        ScheduleSpec::Solar {
            event,
            latitude,
            longitude,
        } => format!(
            "at {} at {}, {}",
            solar_event(event),
            degrees(*latitude, 'N', 'S'),
            degrees(*longitude, 'E', 'W')
        ),
        ScheduleSpec::Clocked { at } => format!("once at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
    }
}

fn interval(every: i32, period: Period) -> String {
    let unit = match period {
        Period::Days => "day",
        Period::Hours => "hour",
        Period::Minutes => "minute",
        Period::Seconds => "second",
        Period::Microseconds => "microsecond",
    };
    if every == 1 {
        format!("every {unit}")
    } else {
        format!("every {every} {unit}s")
    }
}

fn degrees(v: f64, pos: char, neg: char) -> String {
    let d = format!("{:.4}", v.abs());
    let d = d.trim_end_matches('0').trim_end_matches('.');
    format!("{d}°{}", if v < 0.0 { neg } else { pos })
}

fn solar_event(event: &str) -> String {
    match event.split_once('_') {
        Some(("solar", "noon")) => "solar noon".into(),
        Some((when @ ("dawn" | "dusk"), kind)) => format!("{kind} {when}"),
        _ => event.into(),
    }
}

/// "A", "A and B", "A, B and C".
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Plain numbers only (`0`, `0,30`): their values.
fn plain_numbers(field: &str) -> Option<Vec<u32>> {
    field
        .split(',')
        .map(|p| p.trim().parse::<u32>().ok())
        .collect()
}

/// `*/n` → n.
fn every_n(field: &str) -> Option<u32> {
    field.strip_prefix("*/")?.trim().parse().ok()
}

/// A value of a named field (`mon`, `1`, `January`) → its index, as Celery reads it (names by
/// their first three letters).
fn named_index(value: &str, names: &[&str], first: usize) -> Option<usize> {
    let v = value.trim();
    if let Ok(n) = v.parse::<usize>() {
        return (n >= first && n < first + names.len()).then_some(n - first);
    }
    let key: String = v.chars().take(3).collect::<String>().to_ascii_lowercase();
    names.iter().position(|n| n[..3].eq_ignore_ascii_case(&key))
}

/// Weekdays or months in words (`mon-fri` → "Monday to Friday"); `None` when a part is not a
/// plain value or range.
fn named_list(field: &str, names: &[&str], first: usize) -> Option<String> {
    let mut parts = Vec::new();
    for p in field.split(',') {
        let word = |v: &str| named_index(v, names, first).map(|i| names[i].to_string());
        match p.split_once('-') {
            Some((a, b)) => parts.push(format!("{} to {}", word(a)?, word(b)?)),
            None => parts.push(word(p)?),
        }
    }
    Some(join(&parts))
}

fn hh_mm(h: u32, m: u32) -> String {
    format!("{h:02}:{m:02}")
}

fn crontab(minute: &str, hour: &str, dom: &str, month: &str, dow: &str) -> String {
    let (minute, hour, dom, month, dow) = (
        minute.trim(),
        hour.trim(),
        dom.trim(),
        month.trim(),
        dow.trim(),
    );
    let mins = plain_numbers(minute);
    let hours = plain_numbers(hour);
    let time = match (&mins, &hours) {
        (Some(ms), Some(hs)) if ms.len() * hs.len() <= 6 => {
            let mut times: Vec<(u32, u32)> = hs
                .iter()
                .flat_map(|h| ms.iter().map(move |m| (*h, *m)))
                .collect();
            times.sort_unstable();
            let t: Vec<String> = times.iter().map(|(h, m)| hh_mm(*h, *m)).collect();
            format!("at {}", join(&t))
        }
        _ => {
            let what = if minute == "*" {
                "every minute".to_string()
            } else if let Some(n) = every_n(minute) {
                format!("every {n} minutes")
            } else if let Some(ms) = &mins {
                let ms: Vec<String> = ms.iter().map(u32::to_string).collect();
                let s = if ms.len() > 1 { "s" } else { "" };
                format!("at minute{s} {} past the hour", join(&ms))
            } else {
                format!("at minutes {minute}")
            };
            let during = if hour == "*" {
                String::new()
            } else if let Some(n) = every_n(hour) {
                format!(", every {n} hours")
            } else if let Some(hs) = &hours {
                let hs: Vec<String> = hs.iter().map(|h| hh_mm(*h, 0)).collect();
                let s = if hs.len() > 1 { "s" } else { "" };
                format!(", in the hour{s} from {}", join(&hs))
            } else if let Some((a, b)) = hour.split_once('-')
                && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
            {
                format!(", from {} to {}", hh_mm(a, 0), hh_mm(b, 59))
            } else {
                format!(", hours {hour}")
            };
            format!("{what}{during}")
        }
    };
    let mut days = Vec::new();
    if dom != "*" {
        let d = match plain_numbers(dom) {
            Some(ds) => {
                let s = if ds.len() > 1 { "s" } else { "" };
                let ds: Vec<String> = ds.iter().map(u32::to_string).collect();
                format!("on day{s} {} of the month", join(&ds))
            }
            None => format!("on days {dom} of the month"),
        };
        days.push(d);
    }
    if month != "*" {
        days.push(match named_list(month, &MONTHS, 1) {
            Some(m) => format!("in {m}"),
            None => format!("in months {month}"),
        });
    }
    if dow != "*" {
        let w = named_list(dow, &WEEKDAYS, 0).unwrap_or_else(|| format!("weekdays {dow}"));
        days.push(if dom != "*" {
            format!("if it is {w}")
        } else {
            format!("on {w}")
        });
    }
    if days.is_empty() {
        time
    } else {
        format!("{time} {}", days.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn cron(expr: &str) -> String {
        in_words(&ScheduleSpec::crontab(expr, "UTC").unwrap())
    }

    #[test]
    fn crontabs_read_as_sentences() {
        assert_eq!(cron("* * * * *"), "every minute (UTC)");
        assert_eq!(cron("*/15 * * * *"), "every 15 minutes (UTC)");
        assert_eq!(cron("0 * * * *"), "at minute 0 past the hour (UTC)");
        assert_eq!(
            cron("0,30 */2 * * *"),
            "at minutes 0 and 30 past the hour, every 2 hours (UTC)"
        );
        assert_eq!(
            cron("0 9 * * mon-fri"),
            "at 09:00 on Monday to Friday (UTC)"
        );
        assert_eq!(cron("30 2 * * *"), "at 02:30 (UTC)");
        assert_eq!(
            cron("0 9,17 * * 0,6"),
            "at 09:00 and 17:00 on Sunday and Saturday (UTC)"
        );
        assert_eq!(
            cron("* 9-17 * * *"),
            "every minute, from 09:00 to 17:59 (UTC)"
        );
        assert_eq!(
            cron("0 0 1 jan,jul *"),
            "at 00:00 on day 1 of the month, in January and July (UTC)"
        );
        assert_eq!(
            cron("0 12 13 * fri"),
            "at 12:00 on day 13 of the month, if it is Friday (UTC)"
        );
        // Anything unusual falls back to the fields as written.
        assert_eq!(cron("1-5/2 * * * *"), "at minutes 1-5/2 (UTC)");
        assert_eq!(
            in_words(&ScheduleSpec::crontab("0 9 * * 1", "Europe/Berlin").unwrap()),
            "at 09:00 on Monday (Europe/Berlin)"
        );
    }

    #[test]
    fn intervals_solar_and_clocked() {
        let every = |n, p| {
            in_words(&ScheduleSpec::Interval {
                every: n,
                period: p,
            })
        };
        assert_eq!(every(30, Period::Seconds), "every 30 seconds");
        assert_eq!(every(1, Period::Hours), "every hour");
        assert_eq!(every(2, Period::Days), "every 2 days");
        let solar = ScheduleSpec::Solar {
            event: "dusk_civil".into(),
            latitude: 52.52,
            longitude: -13.405,
        };
        assert_eq!(in_words(&solar), "at civil dusk at 52.52°N, 13.405°W");
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
        assert_eq!(
            in_words(&ScheduleSpec::Clocked { at }),
            "once at 2030-01-01 09:00:00 UTC"
        );
    }
}
