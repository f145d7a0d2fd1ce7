//! What each subcommand does.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{CallArgs, Cli, Command, DevArgs, Global, InspectArgs, InspectWhat, ResultArgs};
use crate::client::Client;
use crate::config::Config;
use crate::error::Error;
use crate::pgproc::{PgProc, PgProcOptions};
use crate::store::Store;
use crate::task::{NewTask, TaskId, TaskRecord};
use crate::worker::{Shutdown, Worker};

pub(super) async fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Migrate => migrate(g).await,
        Command::Worker(args) => {
            let config = g.config()?;
            let (wcfg, mcfg) = args.configs()?;
            let shutdown = Shutdown::new();
            shutdown.on_signals()?;
            wait_for_schema(&config, &shutdown).await?;
            apply_config_limits(g, &Store::connect(&config)?).await?;
            let routing = args.routing(&g.file()?).await?;
            let outcome = match Worker::new(&config, routing.registry.clone(), wcfg, mcfg) {
                Ok(worker) => worker.run(shutdown).await.map(|_| ()),
                Err(e) => Err(e),
            };
            routing.shutdown().await;
            outcome?;
            Ok(0)
        }
        Command::Call(args) => call(g, args).await,
        Command::Result(args) => result(g, args).await,
        Command::Inspect(args) => inspect(g, args).await,
        Command::Purge { queue } => {
            let n = client(g)?.purge(&queue).await?;
            println!("purged {n} task(s) from queue {queue}");
            Ok(0)
        }
        Command::Revoke { id, terminate } => {
            let id: TaskId = id.parse()?;
            let state = client(g)?.revoke(id, terminate).await?;
            println!("{id} {state}");
            Ok(0)
        }
        Command::Pause { queue } => {
            client(g)?.set_paused(&queue, true).await?;
            println!("queue {queue} paused");
            Ok(0)
        }
        Command::Resume { queue } => {
            client(g)?.set_paused(&queue, false).await?;
            println!("queue {queue} resumed");
            Ok(0)
        }
        Command::Limit(cmd) => limit(g, cmd).await,
        Command::Dev(args) => dev(g, args).await,
        Command::Serve(args) => super::serve::run(g, args).await,
        Command::Bench(args) => super::bench::run(g, args).await,
        Command::Beat(args) => super::beat::beat(g, args).await,
        Command::Schedule { cmd } => super::beat::schedule(g, cmd).await,
    }
}

fn client(g: &Global) -> anyhow::Result<Client> {
    Ok(Client::connect(&g.config()?)?)
}

async fn migrate(g: &Global) -> anyhow::Result<i32> {
    let config = g.config()?;
    let store = Store::connect(&config)?;
    let status = store.migrate().await.context("migrating")?;
    if status.newly_applied.is_empty() {
        println!(
            "schema {} is up to date (versions {:?})",
            config.schema, status.applied
        );
    } else {
        println!(
            "schema {}: applied {}",
            config.schema,
            status.newly_applied.join(", ")
        );
    }
    let beat = install_beat_tables(g, &store).await?;
    println!("{beat}");
    Ok(0)
}

/// Create django-celery-beat's tables when they do not exist and add the change triggers;
/// returns a one-line description.
async fn install_beat_tables(g: &Global, store: &Store) -> anyhow::Result<String> {
    let tables = store.beat_tables(&g.django_schema()?)?;
    let done = tables
        .install()
        .await
        .context("installing django-celery-beat's tables")?;
    Ok(if done.created {
        format!(
            "django_celery_beat tables: created in schema {} (a Django project adopts them with `manage.py migrate django_celery_beat --fake`); change triggers on {}",
            done.schema, done.triggers
        )
    } else {
        format!(
            "django_celery_beat tables: found in schema {}; change triggers on {}",
            done.schema, done.triggers
        )
    })
}

/// Wait until the database answers and the schema is current; a worker started before its
/// database (or during a restart) waits instead of failing.
pub(super) async fn wait_for_schema(config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let store = Store::connect(config)?;
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.migration_status().await {
            Ok(st) if st.is_current() => return Ok(()),
            Ok(st) => bail!(
                "schema {} is not migrated (missing {}): run `celeriac migrate`",
                config.schema,
                st.pending.join(", ")
            ),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "database not reachable yet; retrying in {backoff:?}");
                tokio::select! {
                    _ = shutdown.soft().cancelled() => bail!("stopped before the database was reachable"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Upsert the `[limits]` of the configuration file, if any.
async fn apply_config_limits(g: &Global, store: &Store) -> anyhow::Result<()> {
    let Some(section) = g.file()?.section("limits")? else {
        return Ok(());
    };
    for spec in crate::limits::from_section(section)? {
        store.limit_set(&spec).await?;
        tracing::info!(kind = %spec.kind, target = %spec.target, "limit from the configuration file");
    }
    Ok(())
}

async fn limit(g: &Global, cmd: super::LimitCommand) -> anyhow::Result<i32> {
    use super::LimitCommand;
    let client = client(g)?;
    match cmd {
        LimitCommand::Set {
            target,
            rate,
            concurrency,
            partition_by,
        } => {
            let (kind, target) = target.split();
            let spec = crate::limits::LimitSpec {
                kind,
                target,
                rate,
                concurrency,
                partition_by,
            };
            client.set_limit(&spec).await?;
            println!("limit set on {} {}", spec.kind, spec.target);
        }
        LimitCommand::Remove { target } => {
            let (kind, target) = target.split();
            if client.remove_limit(kind, &target).await? {
                println!("limit removed from {kind} {target}");
            } else {
                bail!("no limit on {kind} {target}");
            }
        }
        LimitCommand::List { json } => {
            let rows = client.limits().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<6} {:<32} {:>10} {:>11} {:<14} {:>7} {:>9}",
                    "KIND", "TARGET", "RATE", "CONCURRENCY", "PARTITION_BY", "RUNNING", "THROTTLED"
                );
                for r in rows {
                    let rate = match (r.rate_count, r.rate_period) {
                        (Some(n), Some(p)) => format!(
                            "{n}/{}",
                            match p as i64 {
                                1 => "s",
                                60 => "m",
                                _ => "h",
                            }
                        ),
                        _ => "-".into(),
                    };
                    println!(
                        "{:<6} {:<32} {:>10} {:>11} {:<14} {:>7} {:>9}",
                        r.kind,
                        r.target,
                        rate,
                        r.concurrency
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.partition_by.unwrap_or_else(|| "-".into()),
                        r.running,
                        r.throttled
                    );
                }
            }
        }
    }
    Ok(0)
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{flag} is not valid JSON: {e}"))
}

async fn call(g: &Global, a: CallArgs) -> anyhow::Result<i32> {
    let mut task = NewTask::new(a.task)
        .args(parse_json("--args", &a.args)?)
        .kwargs(parse_json("--kwargs", &a.kwargs)?)
        .headers(parse_json("--headers", &a.headers)?)
        .priority(a.priority)
        .ignore_result(a.ignore_result);
    if let Some(q) = a.queue {
        task = task.queue(q);
    }
    if let Some(c) = a.countdown {
        task = task.countdown(c.as_secs_f64());
    }
    if let Some(eta) = a.eta {
        task = task.eta(eta);
    }
    if let Some(exp) = a.expires {
        task = match super::parse_duration(&exp) {
            Ok(d) => task.expires_in(d.as_secs_f64()),
            Err(_) => task.expires_at(
                chrono::DateTime::parse_from_rfc3339(&exp)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--expires {exp:?} is neither a duration (10m) nor an RFC 3339 instant"
                        )
                    })?
                    .with_timezone(&chrono::Utc),
            ),
        };
    }
    if let Some(id) = a.id {
        task = task.id(id.parse::<TaskId>()?);
    }
    if let Some(n) = a.max_retries {
        task = task.max_retries(n);
    }
    if let Some(s) = a.soft_time_limit {
        task = task.soft_time_limit(s.as_secs_f64());
    }
    if let Some(s) = a.time_limit {
        task = task.time_limit(s.as_secs_f64());
    }
    let r = client(g)?.enqueue(task).await?;
    println!("{}", r.id());
    Ok(0)
}

async fn result(g: &Global, a: ResultArgs) -> anyhow::Result<i32> {
    let id: TaskId = a.id.parse()?;
    let client = client(g)?;
    let handle = client.result(id);
    if let Some(wait) = a.wait {
        match handle.get(wait).await {
            Ok(_) | Err(Error::TaskFailed { .. }) => {}
            Err(Error::Timeout(_)) => {
                bail!("task {id} did not finish within {wait:?}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some(rec) = handle.info().await? else {
        bail!("no task with id {id} (never enqueued, or pruned after the retention)");
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        print_record(&rec);
    }
    Ok(match rec.celery_state.as_str() {
        "FAILURE" | "REVOKED" => 1,
        _ => 0,
    })
}

fn print_record(r: &TaskRecord) {
    println!("id:       {}", r.id);
    println!("task:     {} (queue {})", r.name, r.queue);
    println!("state:    {}", r.celery_state);
    println!("retries:  {} (attempt {})", r.retries, r.attempt);
    if let Some(v) = &r.result {
        println!("result:   {v}");
    }
    if let Some(e) = &r.error {
        println!("error:    {}: {}", e.kind, e.message);
        if let Some(tb) = &e.traceback {
            for line in tb.lines() {
                println!("          {line}");
            }
        }
    }
    if let Some(p) = &r.progress {
        println!("progress: {p}");
    }
    if let Some(reason) = &r.revoked_reason {
        println!("revoked:  {reason}");
    }
}

async fn inspect(g: &Global, a: InspectArgs) -> anyhow::Result<i32> {
    let client = client(g)?;
    let all = a.what.is_none();
    let want = |w: InspectWhat| all || a.what == Some(w);
    let queues = if want(InspectWhat::Queues) {
        Some(client.queue_stats().await?)
    } else {
        None
    };
    let workers = if want(InspectWhat::Workers) {
        Some(client.workers().await?)
    } else {
        None
    };
    let active = if want(InspectWhat::Active) {
        Some(client.running(1000).await?)
    } else {
        None
    };
    if a.json {
        let mut out = serde_json::Map::new();
        if let Some(q) = &queues {
            out.insert("queues".into(), json!(q));
        }
        if let Some(w) = &workers {
            out.insert("workers".into(), json!(w));
        }
        if let Some(t) = &active {
            out.insert("active".into(), json!(t));
        }
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
        return Ok(0);
    }
    if let Some(queues) = queues {
        println!(
            "{:<24} {:>8} {:>9} {:>8} {:>9} {:>12} {:>8} {:>7}",
            "QUEUE",
            "READY",
            "SCHEDULED",
            "RUNNING",
            "THROTTLED",
            "OLDEST_AGE_S",
            "WORKERS",
            "PAUSED"
        );
        for q in queues {
            println!(
                "{:<24} {:>8} {:>9} {:>8} {:>9} {:>12} {:>8} {:>7}",
                q.queue,
                q.ready,
                q.scheduled,
                q.running,
                q.throttled,
                q.oldest_ready_age_s
                    .map(|a| format!("{a:.1}"))
                    .unwrap_or_else(|| "-".into()),
                q.workers,
                if q.paused { "yes" } else { "no" }
            );
        }
        println!();
    }
    if let Some(workers) = workers {
        println!(
            "{:<36} {:<20} {:>7} {:>4} {:>7} {:<5} {:<8} QUEUES",
            "WORKER", "HOST", "PID", "C", "RUNNING", "ALIVE", "HEARTBEAT"
        );
        let now = chrono::Utc::now();
        for w in workers {
            println!(
                "{:<36} {:<20} {:>7} {:>4} {:>7} {:<5} {:<8} {}",
                w.id,
                w.hostname,
                w.pid,
                w.concurrency,
                w.running,
                if w.alive {
                    if w.stopping { "stop" } else { "yes" }
                } else {
                    "no"
                },
                format!("{}s ago", (now - w.heartbeat_at).num_seconds().max(0)),
                w.queues.join(",")
            );
        }
        println!();
    }
    if let Some(active) = active {
        println!(
            "{:<36} {:<28} {:<16} {:>7} {:<36}",
            "TASK", "NAME", "QUEUE", "ATTEMPT", "WORKER"
        );
        for t in active {
            println!(
                "{:<36} {:<28} {:<16} {:>7} {:<36}",
                t.id,
                t.name,
                t.queue,
                t.attempt,
                t.worker_id.map(|w| w.to_string()).unwrap_or_default()
            );
        }
    }
    Ok(0)
}

async fn dev(g: &Global, a: DevArgs) -> anyhow::Result<i32> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let mut private: Option<PgProc> = None;
    let url = match g.database_url()? {
        Some(url) => url,
        None => {
            let pg = PgProc::start(&a.data_dir, PgProcOptions::default()).await?;
            let url = pg.url();
            eprintln!(
                "celeriac dev: private PostgreSQL at {url} (data in {})",
                pg.data_dir().display()
            );
            private = Some(pg);
            url
        }
    };
    let config = Config::new(url.clone()).with_schema(g.schema()?);
    let outcome = async {
        let store = Store::connect(&config)?;
        let st = store.migrate().await.context("migrating")?;
        if !st.newly_applied.is_empty() {
            eprintln!("celeriac dev: applied {}", st.newly_applied.join(", "));
        }
        apply_config_limits(g, &store).await?;
        if !a.no_beat {
            eprintln!("celeriac dev: {}", install_beat_tables(g, &store).await?);
            super::beat::apply_toml(g, &config).await?;
        }
        let (wcfg, mcfg) = a.worker.configs()?;
        eprintln!(
            "celeriac dev: worker on queues {} with {} slots; try `DATABASE_URL={} celeriac call celeriac.echo --args '[1]'`",
            wcfg.queues.join(","),
            wcfg.concurrency,
            crate::config::redact_url(&url)
        );
        let routing = a.worker.routing(&g.file()?).await?;
        // Every component runs until the shared shutdown; one failing stops the others.
        let mut parts: Vec<(&'static str, Component)> = Vec::new();
        let worker = match Worker::new(&config, routing.registry.clone(), wcfg, mcfg) {
            Ok(w) => w,
            Err(e) => {
                routing.shutdown().await;
                return Err(e.into());
            }
        };
        let sd = shutdown.clone();
        parts.push((
            "worker",
            Box::pin(async move { worker.run(sd).await.map(|_| ()).map_err(Into::into) }),
        ));
        let scfg = super::serve::server_config(g, Some(a.bind.clone()), None)?;
        let (cfg, sd) = (config.clone(), shutdown.clone());
        parts.push((
            "server",
            Box::pin(async move { super::serve::serve(&cfg, &scfg, sd, "celeriac dev").await }),
        ));
        if !a.no_beat {
            let beat = crate::beat::Beat::new(&config, g.beat_config(None)?)?;
            let stop = shutdown.soft().clone();
            parts.push(("beat", Box::pin(async move { Ok(beat.run(stop).await?) })));
        }
        let outcome = run_components(parts, &shutdown).await;
        routing.shutdown().await;
        outcome
    }
    .await;
    if let Some(pg) = private
        && let Err(e) = pg.stop().await
    {
        tracing::warn!(error = %e, "stopping the private PostgreSQL failed");
    }
    outcome.map(|_| 0)
}

/// A long-running part of a process (worker, beat, HTTP server) that ends at shutdown.
type Component = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// Run components until all end; the first failure begins the shutdown of the others and is
/// returned.
async fn run_components(
    parts: Vec<(&'static str, Component)>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (name, fut) in parts {
        set.spawn(async move { (name, fut.await) });
    }
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        let (name, result) = joined.context("a component panicked")?;
        if let Err(e) = result {
            tracing::error!(component = name, error = %e, "component failed; stopping");
            shutdown.begin();
            first_err.get_or_insert(e.context(name));
        }
    }
    first_err.map_or(Ok(()), Err)
}
