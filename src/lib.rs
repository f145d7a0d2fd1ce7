//! Celeriac: a job queue and periodic scheduler that keeps everything in PostgreSQL.
//!
//! # Codemap
//!
//! - [`task`]: plain data: ids, states, [`task::NewTask`] and its options, the retry policy.
//!   No I/O.
//! - [`store`]: the only module that runs SQL. Every statement lives in `sql/<noun>_<verb>.sql`
//!   and has a method of the same name on [`store::Store`]; migrations live in `migrations/`.
//! - [`config`], [`conffile`]: typed settings and their defaults; the optional TOML file,
//!   whose sections each area parses itself.
//! - [`client`]: enqueue (also inside the caller's transaction), results, revoke, inspect;
//!   used by the CLI, the HTTP API and library users.
//! - [`canvas`]: workflows (chain, group, chord) as JSON for `celeriac.apply`; [`lock`]: named
//!   lease locks with fencing tokens; [`limits`]: rate limits and concurrency caps across workers.
//! - [`registry`]: task name → handler, the [`registry::TaskContext`] handlers get.
//! - [`executor`]: ways to run a task besides a Rust closure: the built-ins (`celeriac.*`,
//!   `http.request`), the `[routes]` config (name/glob → built-in, HTTP webhook or process
//!   pool), the webhook executor and the supervised process pool (JSON-lines children).
//! - [`worker`]: claims tasks (producer), runs them (executor), writes outcomes in batches
//!   (completer), and keeps its lease alive (heartbeat).
//! - [`maintenance`]: leader lease, rescue of dead workers' tasks, pruning.
//! - [`beat`]: periodic tasks from django-celery-beat's tables (Celery's crontab, interval,
//!   solar, clocked semantics), fired by one elected beat; schedule editing (`beat::admin`).
//! - [`metrics`]: task counters and histograms as plain data: workers count and add their
//!   deltas to the database on each heartbeat; the HTTP server renders the sums.
//! - [`http`]: the HTTP server (`celeriac serve`): REST API with its OpenAPI document (tasks,
//!   queues, workers, and periodic tasks through `beat::admin`), dashboard, `/metrics`, health. Request/response types are separate from storage rows.
//! - [`pgproc`]: a private PostgreSQL server started from the machine's binaries (`dev`, tests).
//! - [`cli`]: the `celeriac` command line; the only place that prints to stdout.
//!
//! # Invariants
//!
//! - Only [`store`] contains SQL, and every statement is a file under `sql/`. In those files and
//!   in `migrations/`, the token `celeriac.` means "our schema" and is rendered for the
//!   configured schema name (see [`store::Schema`]).
//! - Time comes from the database clock (`now()`), never from the worker's clock, so hosts with
//!   skewed clocks agree on due times, leases and expiry. Durations are passed as seconds.
//! - A task attempt is fenced by its `attempt` number: every write of an attempt's outcome or
//!   progress carries it and is ignored once the attempt is no longer current.
//! - [`worker`], [`beat`] and [`maintenance`] never import [`cli`] or [`http`].
//! - A periodic task's send and the write-back of its `last_run_at` commit together, and at
//!   most once per slot (guarded write-back plus the fire log's key).
//! - Nothing is dropped silently: a task ends SUCCESS, FAILURE or REVOKED with a reason, or is
//!   still in the table waiting to run.

pub mod beat;
pub mod canvas;
pub mod cli;
pub mod client;
pub mod conffile;
pub mod config;
pub mod durations;
pub mod error;
pub mod executor;
pub mod http;
pub mod limits;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod pgproc;
pub mod registry;
pub mod store;
pub mod task;
pub mod worker;

pub use client::{AsyncResult, Client};
pub use config::Config;
pub use error::{Error, Result};
pub use registry::{Registry, TaskContext, TaskError};
pub use task::{NewTask, TaskId, TaskState};
pub use worker::Worker;
