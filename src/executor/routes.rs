//! Routing: the `[routes]` section of the configuration file maps task names (exact, or globs
//! like `billing.*`) to an executor: a built-in/Rust handler, an HTTP webhook, or the process
//! pool.
//!
//! ```toml
//! [routes.pool]                          # the process pool (flags --pool/--exec/… win)
//! exec = "python -m celeriac.runner --django mysite.settings"
//! processes = 8                          # default: the worker's -c
//! max_tasks_per_child = 1000
//! max_memory_per_child = "512MiB"        # or a number of KiB, as in Celery
//!
//! [[routes.task]]
//! match = "billing.*"
//! executor = "http"
//! url = "https://billing.internal/celeriac/"
//! secret_env = "BILLING_WEBHOOK_SECRET"  # default CELERIAC_WEBHOOK_SECRET
//! timeout = "30s"
//!
//! [[routes.task]]
//! match = "myapp.*"
//! executor = "process"
//! time_limit = "5m"
//! on_worker_lost = "retry"
//! ```
//!
//! Matching: an exact `match` wins over globs; among globs the first in file order wins. With
//! `--pool process` (or `[routes.pool] default = true`), every other name goes to the pool.
//! A name nothing matches fails `NotRegistered`, as without a file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::process::{LostPolicy, PoolConfig, ProcessPool};
use super::webhook::{Webhook, WebhookConfig};
use crate::error::{Error, Result};
use crate::registry::{BoxFuture, Handler, HandlerResult, Registry, TaskContext, TaskOptions};
use crate::task::RetryPolicy;

/// `[routes]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesSection {
    /// `[routes.pool]`: the process pool.
    #[serde(default)]
    pub pool: Option<PoolSection>,
    /// `[[routes.task]]`: one entry per name or glob.
    #[serde(default, rename = "task")]
    pub tasks: Vec<RouteEntry>,
}

/// `[routes.pool]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// The child command, run with `/bin/sh -c "exec …"`.
    pub exec: Option<String>,
    /// Number of children (default: the worker's concurrency).
    pub processes: Option<usize>,
    /// Replace a child after it ran this many tasks.
    pub max_tasks_per_child: Option<u64>,
    /// Replace a child whose resident memory exceeds this after a task (KiB, or "512MiB").
    pub max_memory_per_child: Option<Size>,
    /// How long a child may take to say it is ready (default 60 s).
    #[serde(default, deserialize_with = "de_secs")]
    pub startup_timeout: Option<f64>,
    /// Send every name no route matches to the pool (what `--pool process` does).
    #[serde(default)]
    pub default: bool,
}

/// A memory size: a number of KiB (Celery's `--max-memory-per-child`) or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Int(n) if n > 0 => Ok(Size(n as u64)),
            NumOrStr::Str(s) => parse_size_kib(&s)
                .map(Size)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "expected a positive number of KiB or a size like \"512MiB\"",
            )),
        }
    }
}

/// Parse a memory size into KiB: a plain number is KiB (as Celery's flag); units `K`/`KiB`/`KB`,
/// `M`/`MiB`/`MB`, `G`/`GiB`/`GB` (all binary).
pub fn parse_size_kib(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim().to_ascii_lowercase());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 512MiB, 2GiB or a number of KiB)"))?;
    let scale = match unit.as_str() {
        "" | "k" | "kb" | "kib" => 1.0,
        "m" | "mb" | "mib" => 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0,
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB or GiB)")),
    };
    let kib = n * scale;
    if !kib.is_finite() || !(1.0..=1e12).contains(&kib) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(kib as u64)
}

/// Which executor a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A handler compiled into the binary (built-ins, or the library user's Rust handlers).
    #[serde(alias = "rust")]
    Builtin,
    /// POST to a URL.
    Http,
    /// The supervised process pool.
    Process,
}

/// One `[[routes.task]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Exact task name or glob (`*` any run of characters, `?` one).
    #[serde(rename = "match")]
    pub pattern: String,
    /// The executor.
    pub executor: ExecutorKind,
    /// http: the URL to POST to.
    pub url: Option<String>,
    /// http: the environment variable holding the shared secret (default
    /// `CELERIAC_WEBHOOK_SECRET`).
    pub secret_env: Option<String>,
    /// http: request timeout, which is also the hard time limit (default 30 s).
    #[serde(default, deserialize_with = "de_secs")]
    pub timeout: Option<f64>,
    /// http: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// process: what to do when the child dies while running the task (default `fail`).
    pub on_worker_lost: Option<LostPolicy>,
    /// What to do when the hard time limit kills the task: `fail` (default, FAILURE
    /// `TimeLimitExceeded`) or `retry` (while retries remain).
    pub on_time_limit: Option<LostPolicy>,
    /// Retries allowed (default: the worker's, Celery's 3; 5 for http).
    pub max_retries: Option<u32>,
    /// Seconds between retries without backoff.
    #[serde(default, deserialize_with = "de_secs_or_zero")]
    pub retry_delay: Option<f64>,
    /// Exponential backoff factor (s); http routes default to 1 s.
    #[serde(default, deserialize_with = "de_secs_or_zero")]
    pub retry_backoff: Option<f64>,
    /// Cap on the backoff delay.
    #[serde(default, deserialize_with = "de_secs_or_zero")]
    pub retry_backoff_max: Option<f64>,
    /// Full jitter on the backoff delay.
    pub retry_jitter: Option<bool>,
    /// Soft time limit.
    #[serde(default, deserialize_with = "de_secs")]
    pub soft_time_limit: Option<f64>,
    /// Hard time limit (http: derived from the timeout).
    #[serde(default, deserialize_with = "de_secs")]
    pub time_limit: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Int(i64),
    Float(f64),
    Str(String),
}

/// Seconds: a positive number, or a string such as `"30s"`, `"500ms"`, `"5m"`.
fn de_secs<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    let secs = de_secs_or_zero(d)?.unwrap_or(0.0);
    if secs <= 0.0 {
        return Err(serde::de::Error::custom(format!(
            "expected a positive duration, got {secs}"
        )));
    }
    Ok(Some(secs))
}

/// Seconds, zero allowed.
fn de_secs_or_zero<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<f64>, D::Error> {
    let secs = match NumOrStr::deserialize(d)? {
        NumOrStr::Int(n) => n as f64,
        NumOrStr::Float(f) => f,
        NumOrStr::Str(s) => crate::durations::parse_duration(&s)
            .map_err(serde::de::Error::custom)?
            .as_secs_f64(),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(serde::de::Error::custom(format!(
            "expected a duration, got {secs}"
        )));
    }
    Ok(Some(secs))
}

/// Settings of the process pool given on the command line; they win over `[routes.pool]`.
#[derive(Debug, Clone, Default)]
pub struct PoolFlags {
    /// `--pool process`: run every unrouted name in the pool.
    pub process_default: bool,
    /// `--exec`.
    pub exec: Option<String>,
    /// `-c` (the default number of children).
    pub concurrency: usize,
    /// `--max-tasks-per-child`.
    pub max_tasks_per_child: Option<u64>,
    /// `--max-memory-per-child` (KiB).
    pub max_memory_per_child_kib: Option<u64>,
}

/// A registry with the routes applied, and the process pool they use (if any).
pub struct Routing {
    /// What the worker runs.
    pub registry: Registry,
    /// The pool, to shut down after the worker stopped.
    pub pool: Option<Arc<ProcessPool>>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("registry", &self.registry)
            .field("pool", &self.pool.is_some())
            .finish()
    }
}

impl Routing {
    /// Apply `section` (and the command-line `flags`) to `base`, starting the process pool when a
    /// route or the flags need it. Fails on a bad route, a missing secret, or a pool whose
    /// children do not start.
    pub async fn build(
        base: Registry,
        section: Option<RoutesSection>,
        flags: PoolFlags,
    ) -> Result<Routing> {
        let section = section.unwrap_or_default();
        let pool_section = section.pool.clone().unwrap_or_default();
        for r in &section.tasks {
            validate(r)?;
        }
        let default_to_pool = flags.process_default || pool_section.default;
        let needs_pool = default_to_pool
            || section
                .tasks
                .iter()
                .any(|r| r.executor == ExecutorKind::Process);
        if flags.exec.is_some() && !needs_pool {
            return Err(Error::Invalid(
                "--exec is the command of the process pool: add --pool process (or a route with executor = \"process\")".into(),
            ));
        }
        let pool = if needs_pool {
            let command = flags.exec.clone().or(pool_section.exec.clone()).ok_or_else(|| {
                Error::Invalid(
                    "the process pool needs a command: --exec 'python -m celeriac.runner …' or [routes.pool] exec"
                        .into(),
                )
            })?;
            let cfg = PoolConfig {
                command,
                processes: pool_section.processes.unwrap_or(flags.concurrency).max(1),
                max_tasks_per_child: flags
                    .max_tasks_per_child
                    .or(pool_section.max_tasks_per_child)
                    .filter(|n| *n > 0),
                max_memory_per_child_kib: flags
                    .max_memory_per_child_kib
                    .or(pool_section.max_memory_per_child.map(|s| s.0)),
                startup_timeout: Duration::from_secs_f64(
                    pool_section.startup_timeout.unwrap_or(60.0),
                ),
                ..PoolConfig::default()
            };
            Some(ProcessPool::start(cfg).await?)
        } else {
            None
        };
        let mut registry = base.clone();
        let http = super::webhook::http_client();
        // Exact names first (they win regardless of order), then globs in file order.
        let (exact, globs): (Vec<&RouteEntry>, Vec<&RouteEntry>) = section
            .tasks
            .iter()
            .partition(|r| !r.pattern.contains(['*', '?']));
        for r in exact.into_iter().chain(globs) {
            let (handler, options): (Arc<dyn Handler>, TaskOptions) = match r.executor {
                ExecutorKind::Builtin => {
                    let options = options_for(r, None, None);
                    if !r.pattern.contains(['*', '?']) {
                        let found = base.resolve(&r.pattern).ok_or_else(|| {
                            Error::Invalid(format!(
                                "[[routes.task]] {:?}: executor \"builtin\" but no built-in or Rust handler has that name (known: {})",
                                r.pattern,
                                base.names().join(", ")
                            ))
                        })?;
                        let merged = merge(&options, &found.options);
                        (found.handler.clone(), merged)
                    } else {
                        (Arc::new(Forward { base: base.clone() }), options)
                    }
                }
                ExecutorKind::Http => {
                    let timeout = r.timeout.unwrap_or(30.0);
                    let hook = Webhook::new(WebhookConfig {
                        url: r.url.clone().unwrap_or_default(),
                        secret_env: r
                            .secret_env
                            .clone()
                            .unwrap_or_else(|| "CELERIAC_WEBHOOK_SECRET".into()),
                        timeout: Duration::from_secs_f64(timeout),
                        headers: r.headers.clone(),
                        client: http.clone(),
                    })
                    .map_err(|e| Error::Invalid(format!("[[routes.task]] {:?}: {e}", r.pattern)))?;
                    // Retry with backoff by default; the hard limit leaves the request its
                    // whole timeout (a timeout is retried, a hard limit is not).
                    let default_retry = RetryPolicy {
                        max_retries: 5,
                        backoff: 1.0,
                        backoff_max: 600.0,
                        jitter: true,
                        ..RetryPolicy::default()
                    };
                    let options = options_for(r, Some(default_retry), Some(timeout + 2.0));
                    (Arc::new(hook), options)
                }
                ExecutorKind::Process => {
                    let Some(pool) = &pool else {
                        unreachable!("a process route always starts the pool")
                    };
                    let policy = r.on_worker_lost.unwrap_or_default();
                    (Arc::new(pool.executor(policy)), options_for(r, None, None))
                }
            };
            tracing::info!(route = %r.pattern, executor = ?r.executor, "route");
            registry.insert(r.pattern.clone(), handler, options);
        }
        if default_to_pool
            && let Some(pool) = &pool
            && !section.tasks.iter().any(|r| r.pattern == "*")
        {
            registry.insert(
                "*".into(),
                Arc::new(pool.executor(LostPolicy::default())),
                TaskOptions::default(),
            );
        }
        Ok(Routing { registry, pool })
    }

    /// Stop the pool's children (after the worker stopped).
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.shutdown().await;
        }
    }
}

fn validate(r: &RouteEntry) -> Result<()> {
    let bad = |m: &str| {
        Err(Error::Invalid(format!(
            "[[routes.task]] {:?}: {m}",
            r.pattern
        )))
    };
    if r.pattern.trim().is_empty() {
        return Err(Error::Invalid(
            "[[routes.task]]: `match` must not be empty".into(),
        ));
    }
    let http_only =
        r.url.is_some() || r.secret_env.is_some() || r.timeout.is_some() || !r.headers.is_empty();
    match r.executor {
        ExecutorKind::Http => {
            if r.url.is_none() {
                return bad("executor \"http\" needs a url");
            }
            if r.time_limit.is_some() {
                return bad("an http route's hard time limit is its `timeout`; remove time_limit");
            }
        }
        _ if http_only => {
            return bad("url, secret_env, timeout and headers are for executor \"http\"");
        }
        _ => {}
    }
    if r.on_worker_lost.is_some() && r.executor != ExecutorKind::Process {
        return bad("on_worker_lost is for executor \"process\"");
    }
    Ok(())
}

/// The route's options; `None` fields keep the task's registered (or the worker's) defaults.
fn options_for(
    r: &RouteEntry,
    default_retry: Option<RetryPolicy>,
    time_limit: Option<f64>,
) -> TaskOptions {
    let any_retry = r.max_retries.is_some()
        || r.retry_delay.is_some()
        || r.retry_backoff.is_some()
        || r.retry_backoff_max.is_some()
        || r.retry_jitter.is_some();
    let retry = if any_retry || default_retry.is_some() {
        let base = default_retry.unwrap_or_default();
        Some(base.with_overrides(
            r.max_retries.map(|n| n.min(i32::MAX as u32) as i32),
            r.retry_delay,
            r.retry_backoff,
            r.retry_backoff_max,
            r.retry_jitter,
        ))
    } else {
        None
    };
    TaskOptions {
        retry,
        soft_time_limit: r.soft_time_limit,
        time_limit: r.time_limit.or(time_limit),
        retry_on_time_limit: r.on_time_limit == Some(LostPolicy::Retry),
    }
}

/// Route options on top of a handler's registered ones.
fn merge(route: &TaskOptions, registered: &TaskOptions) -> TaskOptions {
    TaskOptions {
        retry: route.retry.or(registered.retry),
        soft_time_limit: route.soft_time_limit.or(registered.soft_time_limit),
        time_limit: route.time_limit.or(registered.time_limit),
        retry_on_time_limit: route.retry_on_time_limit || registered.retry_on_time_limit,
    }
}

/// A `builtin` glob route: run the compiled-in handler of that name, if there is one.
struct Forward {
    base: Registry,
}

impl Handler for Forward {
    fn call(&self, ctx: TaskContext) -> BoxFuture<HandlerResult> {
        match self.base.resolve(&ctx.name) {
            Some(reg) => reg.handler.call(ctx),
            None => {
                let known = self.base.names().join(", ");
                Box::pin(async move {
                    Err(crate::registry::TaskError::fail(
                        "NotRegistered",
                        format!(
                            "task {:?} is routed to the built-ins, which have no such task (they know: {known})",
                            ctx.name
                        ),
                    ))
                })
            }
        }
    }
}

/// The `eta` of an envelope: when the task was due, if that was later than its enqueue
/// (countdown, ETA or a retry); `null` for a task that ran as soon as it could.
pub(crate) fn eta_of(ctx: &TaskContext) -> Value {
    if ctx.run_at > ctx.created_at + chrono::Duration::milliseconds(1) {
        Value::String(
            ctx.run_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )
    } else {
        Value::Null
    }
}

/// Celery's `periodic_task_name` header (set by beat), if present.
pub(crate) fn periodic_task_name(ctx: &TaskContext) -> Value {
    ctx.headers
        .get("periodic_task_name")
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conffile::ConfigFile;

    fn section(text: &str) -> Result<RoutesSection> {
        Ok(ConfigFile::parse(text)?
            .section::<RoutesSection>("routes")?
            .unwrap_or_default())
    }

    #[test]
    fn routes_parse() {
        let s = section(
            r#"
[routes.pool]
exec = "python -m celeriac.runner"
max_memory_per_child = "1GiB"
startup_timeout = "10s"

[[routes.task]]
match = "billing.*"
executor = "http"
url = "http://127.0.0.1:9/x"
timeout = 5

[[routes.task]]
match = "reports.build"
executor = "process"
time_limit = "2m"
on_worker_lost = "retry"
"#,
        )
        .unwrap();
        let pool = s.pool.unwrap();
        assert_eq!(pool.max_memory_per_child, Some(Size(1024 * 1024)));
        assert_eq!(pool.startup_timeout, Some(10.0));
        assert_eq!(s.tasks.len(), 2);
        assert_eq!(s.tasks[0].timeout, Some(5.0));
        assert_eq!(s.tasks[1].time_limit, Some(120.0));
        assert_eq!(s.tasks[1].on_worker_lost, Some(LostPolicy::Retry));
    }

    #[test]
    fn bad_routes_are_rejected() {
        let err = section("[[routes.task]]\nmatch = \"a\"\nexecutor = \"ftp\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[routes]"), "{err}");
        let err = section("[[routes.task]]\nmatch = \"a\"\nexecutor = \"http\"\nurl = \"http://x\"\ntimeout = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("positive duration"), "{err}");
        let s = section("[[routes.task]]\nmatch = \"a\"\nexecutor = \"http\"\n").unwrap();
        assert!(validate(&s.tasks[0]).is_err());
        let s = section("[[routes.task]]\nmatch = \"a\"\nexecutor = \"builtin\"\nurl = \"x\"\n")
            .unwrap();
        assert!(validate(&s.tasks[0]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_kib("2048").unwrap(), 2048);
        assert_eq!(parse_size_kib("512MiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size_kib("1 GB").unwrap(), 1024 * 1024);
        assert!(parse_size_kib("12parsecs").is_err());
        assert!(parse_size_kib("0").is_err());
    }

    #[tokio::test]
    async fn builtin_routes_need_a_handler_and_globs_forward() {
        let s = section("[[routes.task]]\nmatch = \"nope\"\nexecutor = \"builtin\"\n").unwrap();
        let err = Routing::build(Registry::with_builtins(), Some(s), PoolFlags::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no built-in"), "{err}");
        let s = section(
            "[[routes.task]]\nmatch = \"celeriac.e*\"\nexecutor = \"builtin\"\ntime_limit = 7\n",
        )
        .unwrap();
        let r = Routing::build(Registry::with_builtins(), Some(s), PoolFlags::default())
            .await
            .unwrap();
        // The exact built-in still wins over the glob; other names go through the glob.
        assert!(r.registry.resolve("celeriac.echo").is_some());
        assert_eq!(
            r.registry
                .resolve("celeriac.else")
                .unwrap()
                .options
                .time_limit,
            Some(7.0)
        );
        assert!(r.registry.resolve("other").is_none());
    }

    #[tokio::test]
    async fn process_routes_need_a_command() {
        let s = section("[[routes.task]]\nmatch = \"a.*\"\nexecutor = \"process\"\n").unwrap();
        let err = Routing::build(Registry::new(), Some(s), PoolFlags::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--exec"), "{err}");
    }
}
