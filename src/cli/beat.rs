//! `celeriac beat` and `celeriac schedule …`.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Global, parse_duration};
use crate::beat::admin::{Admin, ScheduleRequest, ScheduleSpec, next_crontab};
use crate::beat::schedule::BadAction;
use crate::beat::toml::BeatSection;
use crate::beat::{Beat, BeatConfig, DEFAULT_DJANGO_SCHEMA};
use crate::config::Config;
use crate::store::{Store, Upserted};
use crate::worker::Shutdown;

/// `celeriac beat`.
#[derive(Debug, Args, Clone)]
pub struct BeatArgs {
    /// Check every periodic task row as beat would, list the problem rows, exit 1 if any.
    #[arg(long)]
    pub check: bool,
    /// Print the beat status (leader, last tick, fire lag) and exit.
    #[arg(long, conflicts_with = "check")]
    pub status: bool,
    /// Leader lease: a killed leader is replaced within about 4/3 of it.
    #[arg(long, env = "CELERIAC_BEAT_LEASE", value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// Full reload of the schedule even without change notifications.
    #[arg(long, env = "CELERIAC_BEAT_RELOAD", value_parser = parse_duration)]
    pub reload_interval: Option<Duration>,
    /// Host name shown in the beat status.
    #[arg(long, env = "CELERIAC_HOSTNAME")]
    pub hostname: Option<String>,
}

/// `celeriac schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// List periodic tasks (with their next fire time and any problem).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a periodic task (exactly one of --every, --crontab, --solar, --clocked).
    Add(Box<AddArgs>),
    /// Enable a periodic task.
    Enable {
        /// Its name.
        name: String,
    },
    /// Disable a periodic task (clears last_run_at, as Django admin does).
    Disable {
        /// Its name.
        name: String,
    },
    /// Delete a periodic task.
    Remove {
        /// Its name.
        name: String,
    },
    /// Send a periodic task's task now (its schedule is not touched); prints the task id.
    RunNow {
        /// Its name.
        name: String,
    },
    /// Print next fire instants (RFC 3339 UTC, one per line) of a crontab or a stored task.
    Next(NextArgs),
}

/// `celeriac schedule add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Unique name of the periodic task.
    pub name: String,
    /// Task to send, e.g. proj.tasks.cleanup
    pub task: String,
    /// Interval (e.g. 30s, 5m, 1h, 1d).
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// Crontab 'MINUTE HOUR DAY_OF_MONTH MONTH DAY_OF_WEEK' (Celery syntax, Sunday = 0).
    #[arg(long)]
    pub crontab: Option<String>,
    /// Time zone of the crontab (IANA name).
    #[arg(long = "tz", default_value = "UTC")]
    pub tz: String,
    /// Solar event (sunrise, sunset, solar_noon, dawn_civil, …); needs --lat and --lon.
    #[arg(long, requires_all = ["lat", "lon"])]
    pub solar: Option<String>,
    /// Latitude for --solar (degrees north).
    #[arg(long, allow_hyphen_values = true)]
    pub lat: Option<f64>,
    /// Longitude for --solar (degrees east).
    #[arg(long, allow_hyphen_values = true)]
    pub lon: Option<f64>,
    /// Run once at this RFC 3339 instant (implies --one-off).
    #[arg(long)]
    pub clocked: Option<DateTime<Utc>>,
    /// Positional arguments (JSON array).
    #[arg(long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments (JSON object).
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    /// Extra headers (JSON object).
    #[arg(long, default_value = "{}")]
    pub headers: String,
    /// Queue.
    #[arg(long, short = 'q')]
    pub queue: Option<String>,
    /// Priority 0..255.
    #[arg(long)]
    pub priority: Option<u8>,
    /// Disable the schedule at this RFC 3339 instant (sent tasks expire then too).
    #[arg(long, conflicts_with = "expire_seconds")]
    pub expires: Option<DateTime<Utc>>,
    /// Sent tasks expire this many seconds after being sent.
    #[arg(long)]
    pub expire_seconds: Option<u32>,
    /// Disable after one run.
    #[arg(long)]
    pub one_off: bool,
    /// Not before this RFC 3339 instant.
    #[arg(long)]
    pub start_time: Option<DateTime<Utc>>,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Update the task of the same name instead of failing.
    #[arg(long)]
    pub update: bool,
}

/// `celeriac schedule next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// A stored periodic task (instead of --crontab).
    #[arg(conflicts_with = "crontab", required_unless_present = "crontab")]
    pub name: Option<String>,
    /// Crontab 'MINUTE HOUR DAY_OF_MONTH MONTH DAY_OF_WEEK'.
    #[arg(long)]
    pub crontab: Option<String>,
    /// Time zone of --crontab.
    #[arg(long = "tz", default_value = "UTC")]
    pub tz: String,
    /// Start after this RFC 3339 instant (default: now).
    #[arg(long)]
    pub after: Option<DateTime<Utc>>,
    /// How many.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
}

impl Global {
    /// The `[beat]` section of the configuration file (empty when absent).
    pub fn beat_section(&self) -> anyhow::Result<BeatSection> {
        Ok(self
            .file()?
            .section::<BeatSection>("beat")?
            .unwrap_or_default())
    }

    /// Schema of the django_celery_beat tables: flag/env, else `[beat] django_schema`, else
    /// public.
    pub fn django_schema(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.django_schema {
            return Ok(s.clone());
        }
        Ok(self
            .beat_section()?
            .django_schema
            .unwrap_or_else(|| DEFAULT_DJANGO_SCHEMA.into()))
    }

    /// Beat settings from flags, the file and defaults.
    pub fn beat_config(&self, a: Option<&BeatArgs>) -> anyhow::Result<BeatConfig> {
        let section = self.beat_section()?;
        let mut c = BeatConfig {
            django_schema: self.django_schema()?,
            ..BeatConfig::default()
        };
        if let Some(l) = &section.lease {
            c.lease = crate::beat::toml::parse_duration(l).context("[beat] lease")?;
        }
        if let Some(r) = &section.reload_interval {
            c.reload_interval =
                crate::beat::toml::parse_duration(r).context("[beat] reload_interval")?;
        }
        if let Some(a) = a {
            if let Some(l) = a.lease {
                c.lease = l;
            }
            if let Some(r) = a.reload_interval {
                c.reload_interval = r;
            }
            if let Some(h) = &a.hostname {
                c.hostname = h.clone();
            }
        }
        anyhow::ensure!(
            c.lease >= Duration::from_millis(300),
            "the beat lease must be at least 300ms"
        );
        Ok(c)
    }
}

fn admin(g: &Global) -> anyhow::Result<Admin> {
    let config = g.config()?;
    let store = Store::connect(&config)?;
    Ok(Admin::new(&store, &config, &g.django_schema()?)?)
}

/// Upsert the TOML file's schedules; prints nothing, logs what changed.
pub(super) async fn apply_toml(g: &Global, config: &Config) -> anyhow::Result<()> {
    let section = g.beat_section()?;
    let requests = section.requests()?;
    if requests.is_empty() {
        return Ok(());
    }
    let store = Store::connect(config)?;
    let admin = Admin::new(&store, config, &g.django_schema()?)?;
    for r in &requests {
        let outcome = admin
            .upsert(r)
            .await
            .with_context(|| format!("writing schedule {:?} from the config file", r.name))?;
        match outcome {
            Upserted::Created(id) => {
                tracing::info!(schedule = %r.name, id, "schedule created from the config file")
            }
            Upserted::Updated(id) => {
                tracing::info!(schedule = %r.name, id, "schedule updated from the config file")
            }
            Upserted::Unchanged => {}
        }
    }
    store.pool().close().await;
    Ok(())
}

/// `celeriac beat`.
pub(super) async fn beat(g: &Global, a: BeatArgs) -> anyhow::Result<i32> {
    let config = g.config()?;
    let bcfg = g.beat_config(Some(&a))?;
    if a.check {
        return check(g, &config).await;
    }
    if a.status {
        let store = Store::connect(&config)?;
        let st = store.beat_status().await?;
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(0);
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    super::commands::wait_for_schema(&config, &shutdown).await?;
    apply_toml(g, &config).await?;
    let beat = Beat::new(&config, bcfg)?;
    beat.run(shutdown.soft().clone()).await?;
    Ok(0)
}

async fn check(g: &Global, config: &Config) -> anyhow::Result<i32> {
    let store = Store::connect(config)?;
    let tables = store.beat_tables(&g.django_schema()?)?;
    let mut problems = 0;
    // The TOML schedules are checked too (without writing them).
    if let Err(e) = g.beat_section().and_then(|s| Ok(s.requests()?)) {
        println!("config file: {e:#}");
        problems += 1;
    }
    let existing = tables.tables_existing().await?;
    if existing.len() < crate::store::DJANGO_BEAT_TABLES.len() {
        println!(
            "django-celery-beat tables missing in schema {} (found {}): run `celeriac migrate`",
            tables.schema(),
            existing.len()
        );
        return Ok(1);
    }
    let triggers = tables.triggers_installed().await?;
    if triggers < crate::store::DJANGO_BEAT_TABLES.len() as i64 {
        println!(
            "change triggers on {triggers} of 6 django tables: run `celeriac migrate` (edits by QuerySet.update() or raw SQL are otherwise seen only at the periodic reload)"
        );
        problems += 1;
    }
    let (rows, bad) = crate::beat::check(&tables).await?;
    for b in &bad {
        let action = match b.action {
            BadAction::Skip => "skipped by beat",
            BadAction::Disable => "disabled by beat",
            BadAction::Warn => "scheduled anyway",
        };
        println!("{} (id {}): {} [{action}]", b.name, b.id, b.reason);
    }
    problems += bad.len();
    println!(
        "{rows} periodic task(s) in {}.django_celery_beat_periodictask, {} problem row(s)",
        tables.schema(),
        bad.len()
    );
    Ok(if problems > 0 { 1 } else { 0 })
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{flag} is not valid JSON: {e}"))
}

fn rfc(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// `celeriac schedule …`.
pub(super) async fn schedule(g: &Global, cmd: ScheduleCmd) -> anyhow::Result<i32> {
    match cmd {
        ScheduleCmd::Next(a) => {
            let after = a.after.unwrap_or_else(Utc::now);
            let times = match (&a.crontab, &a.name) {
                (Some(expr), _) => next_crontab(expr, &a.tz, after, a.count)?,
                (None, Some(name)) => admin(g)?.next_fires(name, a.after, a.count).await?,
                (None, None) => bail!("give a periodic task name or --crontab"),
            };
            for t in times {
                println!("{}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            }
            Ok(0)
        }
        ScheduleCmd::List { json } => {
            let list = admin(g)?.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            println!(
                "{:<28} {:<28} {:<7} {:<21} {:>6} {:<21} SCHEDULE",
                "NAME", "TASK", "ENABLED", "LAST_RUN", "RUNS", "NEXT"
            );
            for s in list {
                println!(
                    "{:<28} {:<28} {:<7} {:<21} {:>6} {:<21} {}{}",
                    s.name,
                    s.task,
                    if s.enabled { "yes" } else { "no" },
                    rfc(s.last_run_at),
                    s.total_run_count,
                    rfc(s.next_fire_at),
                    s.schedule,
                    s.problem.map(|p| format!("  !! {p}")).unwrap_or_default()
                );
            }
            Ok(0)
        }
        ScheduleCmd::Add(a) => {
            let a = *a;
            let kinds = [
                a.every.is_some(),
                a.crontab.is_some(),
                a.solar.is_some(),
                a.clocked.is_some(),
            ]
            .iter()
            .filter(|k| **k)
            .count();
            if kinds != 1 {
                bail!("give exactly one of --every, --crontab, --solar, --clocked");
            }
            let spec = if let Some(d) = a.every {
                ScheduleSpec::every_micros(d.as_micros().min(i64::MAX as u128) as i64)?
            } else if let Some(c) = &a.crontab {
                ScheduleSpec::crontab(c, &a.tz)?
            } else if let Some(ev) = &a.solar {
                ScheduleSpec::Solar {
                    event: ev.clone(),
                    latitude: a.lat.unwrap_or_default(),
                    longitude: a.lon.unwrap_or_default(),
                }
            } else {
                ScheduleSpec::Clocked {
                    at: a.clocked.unwrap_or_default(),
                }
            };
            let mut req = ScheduleRequest::new(a.name.clone(), a.task.clone(), spec);
            req.args = parse_json("--args", &a.args)?;
            req.kwargs = parse_json("--kwargs", &a.kwargs)?;
            req.headers = parse_json("--headers", &a.headers)?;
            req.queue = a.queue;
            req.priority = a.priority;
            req.expires = a.expires;
            req.expire_seconds = a.expire_seconds;
            req.one_off = a.one_off || a.clocked.is_some();
            req.start_time = a.start_time;
            req.enabled = !a.disabled;
            req.description = a.description;
            let admin = admin(g)?;
            if a.update {
                match admin.upsert(&req).await? {
                    Upserted::Created(id) => println!("created {} (id {id})", req.name),
                    Upserted::Updated(id) => println!("updated {} (id {id})", req.name),
                    Upserted::Unchanged => println!("{} unchanged", req.name),
                }
            } else {
                let id = admin.add(&req).await?;
                println!("created {} (id {id})", req.name);
            }
            Ok(0)
        }
        ScheduleCmd::Enable { name } => {
            let changed = admin(g)?.set_enabled(&name, true).await?;
            println!(
                "{name} {}",
                if changed {
                    "enabled"
                } else {
                    "was already enabled"
                }
            );
            Ok(0)
        }
        ScheduleCmd::Disable { name } => {
            let changed = admin(g)?.set_enabled(&name, false).await?;
            println!(
                "{name} {}",
                if changed {
                    "disabled"
                } else {
                    "was already disabled"
                }
            );
            Ok(0)
        }
        ScheduleCmd::Remove { name } => {
            admin(g)?.remove(&name).await?;
            println!("{name} removed");
            Ok(0)
        }
        ScheduleCmd::RunNow { name } => {
            let id = admin(g)?.run_now(&name).await?;
            println!("{id}");
            Ok(0)
        }
    }
}
