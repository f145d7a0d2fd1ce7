//! `celeriac serve`: the HTTP API, dashboard and metrics (also run inside `celeriac dev`).

use anyhow::Context;
use clap::Args;

use super::Global;
use crate::client::Client;
use crate::config::Config;
use crate::http::{
    self, AppState, DEFAULT_BIND, ENV_ADMIN_TOKEN, ENV_READ_TOKEN, Secret, ServerConfig,
    ServerSection,
};
use crate::store::Store;
use crate::worker::Shutdown;

/// `celeriac serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// ADDR:PORT to listen on (default 127.0.0.1:5555, or [server] bind). A non-loopback
    /// address needs a token (CELERIAC_API_TOKEN).
    #[arg(long, env = "CELERIAC_BIND")]
    pub bind: Option<String>,
    /// Largest request body in bytes (default 1048576, or [server] body_limit).
    #[arg(long, env = "CELERIAC_BODY_LIMIT")]
    pub body_limit: Option<usize>,
}

/// A token from the environment (an empty variable counts as unset), else the file.
fn token(env: &str, from_file: Option<String>) -> Option<Secret> {
    std::env::var(env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or(from_file.filter(|t| !t.trim().is_empty()))
        .map(|t| Secret::new(t.trim()))
}

/// Server settings: flags and environment first, then `[server]`, then defaults.
pub(super) fn server_config(
    g: &Global,
    bind: Option<String>,
    body_limit: Option<usize>,
) -> anyhow::Result<ServerConfig> {
    let file = g
        .file()?
        .section::<ServerSection>("server")?
        .unwrap_or_default();
    let body_limit = body_limit
        .or(file.body_limit)
        .unwrap_or(http::DEFAULT_BODY_LIMIT);
    anyhow::ensure!(
        body_limit >= 1024,
        "--body-limit must be at least 1024 bytes"
    );
    Ok(ServerConfig {
        bind: bind.or(file.bind).unwrap_or_else(|| DEFAULT_BIND.into()),
        admin_token: token(ENV_ADMIN_TOKEN, file.token),
        read_token: token(ENV_READ_TOKEN, file.read_token),
        body_limit,
        django_schema: g.django_schema()?,
        ..ServerConfig::default()
    })
}

/// Bind and serve until `shutdown`; `who` prefixes the line telling where it listens.
pub(super) async fn serve(
    config: &Config,
    scfg: &ServerConfig,
    shutdown: Shutdown,
    who: &str,
) -> anyhow::Result<()> {
    let client = Client::connect(config)?;
    let state = AppState::new(client, scfg)?;
    let listener = http::bind(&scfg.bind, state.auth()).await?;
    let addr = listener.local_addr().context("listener address")?;
    eprintln!("{who}: dashboard and API at http://{addr}/");
    http::serve(listener, state, shutdown.soft().clone()).await?;
    Ok(())
}

pub(super) async fn run(g: &Global, a: ServeArgs) -> anyhow::Result<i32> {
    let config = g.config()?;
    let scfg = server_config(g, a.bind, a.body_limit)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    // Serve even when the database is away or not migrated: /readyz says so.
    match Store::connect(&config)?.migration_status().await {
        Ok(st) if !st.is_current() => tracing::warn!(
            pending = ?st.pending,
            "schema {} is not migrated: run `celeriac migrate` (/readyz answers 503 until then)",
            config.schema
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "database not reachable yet (/readyz answers 503)"),
    }
    serve(&config, &scfg, shutdown, "celeriac serve").await?;
    Ok(0)
}
