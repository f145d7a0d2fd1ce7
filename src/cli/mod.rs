//! The `celeriac` command line. The only module that prints to stdout.

mod beat;
mod bench;
mod commands;
mod serve;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::conffile::{ConfigFile, DatabaseSection};
use crate::config::{Config, DEFAULT_SCHEMA, MaintenanceConfig, WorkerConfig};
use crate::executor::routes::{PoolFlags, RoutesSection, Routing};
use crate::registry::Registry;

pub use crate::durations::parse_duration;

/// Celeriac: a job queue and periodic scheduler that keeps everything in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "celeriac", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// PostgreSQL URL, e.g. postgres://user:pass@host:5432/db
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Schema holding Celeriac's tables.
    #[arg(long, env = "CELERIAC_SCHEMA", default_value = DEFAULT_SCHEMA, global = true)]
    pub schema: String,
    /// TOML configuration file (see README, "Configuration file").
    #[arg(long = "config", env = "CELERIAC_CONFIG", global = true)]
    pub config_path: Option<std::path::PathBuf>,
    /// Schema of django-celery-beat's tables (default: `[beat] django_schema`, else public).
    #[arg(long, env = "CELERIAC_DJANGO_SCHEMA", global = true)]
    pub django_schema: Option<String>,
    /// Log format on stderr.
    #[arg(long, env = "CELERIAC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade Celeriac's schema (idempotent; safe to run concurrently).
    Migrate,
    /// Run a worker: claim tasks from queues and run them.
    Worker(WorkerArgs),
    /// Enqueue a task and print its id.
    Call(CallArgs),
    /// Show a task's state and result.
    Result(ResultArgs),
    /// Show queues (depth, oldest ready age), workers and running tasks.
    Inspect(InspectArgs),
    /// Revoke every waiting task of a queue (reason "purged"); running tasks finish.
    Purge {
        /// The queue.
        queue: String,
    },
    /// Revoke a task.
    Revoke {
        /// Task id.
        id: String,
        /// Also cancel it if it is running.
        #[arg(long)]
        terminate: bool,
    },
    /// Stop claiming from a queue on every worker (running tasks finish).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Rate limits and concurrency caps across all workers.
    #[command(subcommand)]
    Limit(LimitCommand),
    /// Everything in one process for development: migrate, then a worker (with maintenance),
    /// on DATABASE_URL or a private PostgreSQL started from the machine's binaries.
    Dev(DevArgs),
    /// Measure enqueue rate, drain rate and latency on the database; one JSON line per measure.
    Bench(bench::BenchArgs),
    /// Fire periodic tasks from django-celery-beat's tables (one leader among all beats).
    Beat(beat::BeatArgs),
    /// Edit periodic tasks: list, add, enable, disable, remove, run-now, next.
    Schedule {
        #[command(subcommand)]
        cmd: beat::ScheduleCmd,
    },
    /// Serve the HTTP API, the dashboard and /metrics (tokens: CELERIAC_API_TOKEN,
    /// CELERIAC_API_READ_TOKEN).
    Serve(serve::ServeArgs),
}

/// `celeriac limit …`.
#[derive(Debug, Subcommand)]
pub enum LimitCommand {
    /// Set (or replace) the limit of a task name or a queue.
    Set {
        #[command(flatten)]
        target: LimitTarget,
        /// At most N starts per period: N/s, N/m or N/h (Celery's rate_limit syntax).
        #[arg(long)]
        rate: Option<String>,
        /// At most N running at once, across all workers.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Separate limits per value of this kwarg (e.g. customer_id).
        #[arg(long)]
        partition_by: Option<String>,
    },
    /// Remove the limit of a task name or a queue.
    Remove {
        #[command(flatten)]
        target: LimitTarget,
    },
    /// List limits with their current use.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--task NAME` or `--queue NAME`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct LimitTarget {
    /// A task name.
    #[arg(long)]
    pub task: Option<String>,
    /// A queue name.
    #[arg(long)]
    pub queue: Option<String>,
}

impl LimitTarget {
    /// (kind, name).
    pub fn split(&self) -> (crate::limits::LimitKind, String) {
        match (&self.task, &self.queue) {
            (Some(t), _) => (crate::limits::LimitKind::Task, t.clone()),
            (None, Some(q)) => (crate::limits::LimitKind::Queue, q.clone()),
            (None, None) => (crate::limits::LimitKind::Task, String::new()),
        }
    }
}

/// `celeriac worker`.
#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// Queues to consume, comma-separated, in claim order.
    #[arg(
        short = 'Q',
        long = "queues",
        env = "CELERIAC_QUEUES",
        value_delimiter = ',',
        default_value = "celery"
    )]
    pub queues: Vec<String>,
    /// Tasks run at once.
    #[arg(short = 'c', long, env = "CELERIAC_CONCURRENCY", default_value_t = 10)]
    pub concurrency: usize,
    /// Fallback poll interval when no notification arrives (e.g. 1s, 500ms).
    #[arg(long, env = "CELERIAC_POLL_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    /// Heartbeat interval.
    #[arg(long, env = "CELERIAC_HEARTBEAT", value_parser = parse_duration, default_value = "5s")]
    pub heartbeat: Duration,
    /// Lease: a worker silent this long is dead and its running tasks run again elsewhere.
    #[arg(long, env = "CELERIAC_LEASE", value_parser = parse_duration, default_value = "20s")]
    pub lease: Duration,
    /// On SIGTERM/SIGINT, how long running tasks may take before being handed back.
    #[arg(long, env = "CELERIAC_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "30s")]
    pub grace: Duration,
    /// Times a task may lose its worker before ending FAILURE WorkerLostError.
    #[arg(long, env = "CELERIAC_MAX_LOST", default_value_t = 5)]
    pub max_lost: u32,
    /// Finished tasks are deleted this long after they finished (e.g. 1d, 12h).
    #[arg(long, env = "CELERIAC_RETENTION", value_parser = parse_duration, default_value = "1d")]
    pub retention: Duration,
    /// Do not run maintenance (rescue of dead workers' tasks, pruning) in this process.
    #[arg(long)]
    pub no_maintenance: bool,
    /// Commit claims synchronously (by default a claim skips its WAL flush: a claim lost in a
    /// server crash only makes the task claimable again).
    #[arg(long)]
    pub sync_claims: bool,
    /// Host name shown by `inspect`.
    #[arg(long, env = "CELERIAC_HOSTNAME")]
    pub hostname: Option<String>,
    /// How tasks without a route run: `async` (built-in and Rust handlers) or `process` (in a
    /// pool of -c child processes started with --exec).
    #[arg(short = 'P', long, env = "CELERIAC_POOL", value_enum, default_value_t = PoolKind::Async)]
    pub pool: PoolKind,
    /// Command of a pool child, e.g. 'python -m celeriac.runner --django mysite.settings'.
    #[arg(long, env = "CELERIAC_EXEC")]
    pub exec: Option<String>,
    /// Replace a pool child after it ran this many tasks.
    #[arg(long, env = "CELERIAC_MAX_TASKS_PER_CHILD")]
    pub max_tasks_per_child: Option<u64>,
    /// Replace a pool child whose resident memory exceeds this after a task (KiB, or 512MiB).
    #[arg(long, env = "CELERIAC_MAX_MEMORY_PER_CHILD", value_parser = crate::executor::routes::parse_size_kib)]
    pub max_memory_per_child: Option<u64>,
}

/// `--pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolKind {
    /// Tasks run as async handlers inside the worker (built-ins, Rust handlers, webhooks).
    Async,
    /// Tasks without another route run in the supervised process pool (--exec).
    Process,
}

impl WorkerArgs {
    /// The worker and maintenance settings these flags describe.
    pub fn configs(&self) -> anyhow::Result<(WorkerConfig, Option<MaintenanceConfig>)> {
        let queues: Vec<String> = self
            .queues
            .iter()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect();
        anyhow::ensure!(!queues.is_empty(), "--queues: give at least one queue name");
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.heartbeat < self.lease,
            "--heartbeat ({:?}) must be shorter than --lease ({:?})",
            self.heartbeat,
            self.lease
        );
        let defaults = WorkerConfig::default();
        let worker = WorkerConfig {
            queues,
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            heartbeat_interval: self.heartbeat,
            lease: self.lease,
            shutdown_grace: self.grace,
            max_lost: self.max_lost,
            async_claim_commit: !self.sync_claims,
            hostname: self.hostname.clone().unwrap_or(defaults.hostname.clone()),
            pool: match self.pool {
                PoolKind::Async => "async",
                PoolKind::Process => "process",
            }
            .into(),
            ..defaults
        };
        let maintenance = (!self.no_maintenance).then(|| MaintenanceConfig {
            retention: self.retention,
            ..MaintenanceConfig::default()
        });
        Ok((worker, maintenance))
    }

    /// The process-pool settings these flags give (they win over `[routes.pool]`).
    pub fn pool_flags(&self) -> PoolFlags {
        PoolFlags {
            process_default: self.pool == PoolKind::Process,
            exec: self.exec.clone(),
            concurrency: self.concurrency,
            max_tasks_per_child: self.max_tasks_per_child,
            max_memory_per_child_kib: self.max_memory_per_child,
        }
    }

    /// The registry (built-ins plus the file's `[routes]`) and the pool it uses, started.
    pub async fn routing(&self, file: &ConfigFile) -> anyhow::Result<Routing> {
        let section = file.section::<RoutesSection>("routes")?;
        Ok(Routing::build(Registry::with_builtins(), section, self.pool_flags()).await?)
    }
}

/// `celeriac call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Task name, e.g. celeriac.echo
    pub task: String,
    /// Positional arguments as a JSON array.
    #[arg(long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    /// Headers as a JSON object.
    #[arg(long, default_value = "{}")]
    pub headers: String,
    /// Queue (default: celery).
    #[arg(long, short = 'q')]
    pub queue: Option<String>,
    /// Priority 0..255, higher first.
    #[arg(long, default_value_t = 0)]
    pub priority: u8,
    /// Run no earlier than this long from now (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration, conflicts_with = "eta")]
    pub countdown: Option<Duration>,
    /// Run no earlier than this instant (RFC 3339).
    #[arg(long)]
    pub eta: Option<chrono::DateTime<chrono::Utc>>,
    /// Revoke if not started by then: a duration (e.g. 10m) or an RFC 3339 instant.
    #[arg(long)]
    pub expires: Option<String>,
    /// Use this task id (UUID).
    #[arg(long)]
    pub id: Option<String>,
    /// Retries allowed.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Soft time limit (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub soft_time_limit: Option<Duration>,
    /// Hard time limit (e.g. 60s).
    #[arg(long, value_parser = parse_duration)]
    pub time_limit: Option<Duration>,
    /// Do not store the result.
    #[arg(long)]
    pub ignore_result: bool,
}

/// `celeriac result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Task id.
    pub id: String,
    /// Wait up to this long for the task to finish (e.g. 10, 30s, 2m).
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Print the whole record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `celeriac inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// What to show (default: everything).
    #[arg(value_enum)]
    pub what: Option<InspectWhat>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Sections of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectWhat {
    /// Queue depth, oldest ready age, running, consumers.
    Queues,
    /// Registered workers and their heartbeats.
    Workers,
    /// Running tasks.
    Active,
}

/// `celeriac dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Data directory of the private PostgreSQL (used when DATABASE_URL is not set).
    #[arg(long, env = "CELERIAC_DEV_DATA", default_value = ".celeriac/pgdata")]
    pub data_dir: std::path::PathBuf,
    /// ADDR:PORT of the dashboard and API (port 0: any free port).
    #[arg(long, env = "CELERIAC_BIND", default_value = crate::http::DEFAULT_BIND)]
    pub bind: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Do not run beat in this process.
    #[arg(long)]
    pub no_beat: bool,
}

impl Global {
    /// The configuration file, or an empty one when none is given.
    pub fn file(&self) -> anyhow::Result<ConfigFile> {
        Ok(match &self.config_path {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::empty(),
        })
    }

    /// The database URL: flag or DATABASE_URL, else the file's `[database] url`.
    pub fn database_url(&self) -> anyhow::Result<Option<String>> {
        if let Some(url) = &self.database_url {
            return Ok(Some(url.clone()));
        }
        Ok(self
            .file()?
            .section::<DatabaseSection>("database")?
            .and_then(|d| d.url))
    }

    /// The schema: flag or CELERIAC_SCHEMA, else the file's `[database] schema`, else default.
    pub fn schema(&self) -> anyhow::Result<String> {
        let from_cli =
            self.schema != DEFAULT_SCHEMA || std::env::var_os("CELERIAC_SCHEMA").is_some();
        if !from_cli
            && let Some(s) = self
                .file()?
                .section::<DatabaseSection>("database")?
                .and_then(|d| d.schema)
        {
            return Ok(s);
        }
        Ok(self.schema.clone())
    }

    /// Settings for commands that need a database.
    pub fn config(&self) -> anyhow::Result<Config> {
        let url = self.database_url()?.context(
            "no database: set DATABASE_URL or pass --database-url (or use `celeriac dev`, which can start its own PostgreSQL)",
        )?;
        Ok(Config::new(url).with_schema(self.schema()?))
    }
}

/// Parse arguments, run the command, and return the process exit code. Errors are printed as
/// one line on stderr.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
            }
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad arguments");
            eprintln!("{line} (see --help)");
            return 2;
        }
    };
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            1
        }
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let long_running = matches!(
        cli.command,
        Command::Worker(_) | Command::Dev(_) | Command::Beat(_) | Command::Serve(_)
    );
    let default = if long_running {
        "info,sqlx=warn"
    } else {
        "warn,sqlx=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}
