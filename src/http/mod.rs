//! The HTTP server: REST API under `/api/v1` (with its OpenAPI document), the dashboard at `/`,
//! Prometheus metrics at `/metrics`, and `/healthz` / `/readyz`. Everything is read from
//! PostgreSQL, so history survives restarts and any number of servers can run side by side.
//!
//! - [`router`] builds the whole application for an [`AppState`]; [`serve`] runs it on a
//!   listener until a shutdown token fires (tests call both with a port-0 listener).
//! - `api/`: one module per resource; handlers are documented with `utoipa` and registered
//!   through `utoipa-axum`, so the OpenAPI document and the routes come from the same source.
//! - `types`: request/response bodies, separate from the storage rows.
//! - `auth`: bearer tokens (admin, read-only), compared in constant time; handlers take a
//!   [`auth::Read`] or [`auth::Admin`] argument, so the scope is visible in the signature.
//! - `error`: [`ApiError`], which logs causes server-side and tells the client only a code, a
//!   message and the field at fault.
//! - `dashboard`: server-rendered page shells plus one vanilla-JS file that calls the API with
//!   the same token scopes as any client.
//! - `metrics`: the Prometheus text exposition.

mod api;
pub mod auth;
mod dashboard;
mod error;
mod extract;
mod metrics;
pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::beat::admin::Admin as BeatAdmin;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::store::Store;

pub use auth::{Auth, Scope, Secret};
pub use error::ApiError;

/// Where `celeriac serve` listens by default (Flower's port, loopback only).
pub const DEFAULT_BIND: &str = "127.0.0.1:5555";
/// Largest request body accepted by default (bytes).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Longest a listing query may run before it is cancelled.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable holding the admin token.
pub const ENV_ADMIN_TOKEN: &str = "CELERIAC_API_TOKEN";
/// Environment variable holding the read-only token.
pub const ENV_READ_TOKEN: &str = "CELERIAC_API_READ_TOKEN";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `ADDR:PORT` to listen on.
    pub bind: String,
    /// Token of the admin scope.
    pub admin_token: Option<Secret>,
    /// Token of the read-only scope.
    pub read_token: Option<Secret>,
    /// Largest request body, bytes (larger: 413).
    pub body_limit: usize,
    /// Statement timeout of listing queries.
    pub query_timeout: Duration,
    /// Schema of django-celery-beat's tables (the periodic-task endpoints).
    pub django_schema: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: DEFAULT_BIND.into(),
            admin_token: None,
            read_token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            django_schema: crate::beat::DEFAULT_DJANGO_SCHEMA.into(),
        }
    }
}

/// `[server]` in the configuration file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `ADDR:PORT` (the `--bind` flag wins).
    pub bind: Option<String>,
    /// Admin token (CELERIAC_API_TOKEN wins).
    pub token: Option<String>,
    /// Read-only token (CELERIAC_API_READ_TOKEN wins).
    pub read_token: Option<String>,
    /// Largest request body, bytes (the `--body-limit` flag wins).
    pub body_limit: Option<usize>,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    client: Client,
    store: Store,
    /// Periodic-task editing (the same code as `celeriac schedule`).
    beat_admin: BeatAdmin,
    auth: Auth,
    body_limit: usize,
    query_timeout: Duration,
    /// The OpenAPI document, rendered once.
    openapi: String,
}

impl AppState {
    /// State for a server using `client` (which must not be eager) with `config`.
    pub fn new(client: Client, config: &ServerConfig) -> Result<Self> {
        let store = client
            .store()
            .cloned()
            .ok_or_else(|| Error::Invalid("the HTTP server needs a database client".into()))?;
        let auth = Auth::new(config.admin_token.as_ref(), config.read_token.as_ref())?;
        let beat_admin = BeatAdmin::with_client(client.clone(), &config.django_schema)?;
        let openapi = serde_json::to_string_pretty(&api::openapi())
            .map_err(|e| Error::Invalid(format!("rendering the OpenAPI document: {e}")))?;
        Ok(AppState {
            inner: Arc::new(StateInner {
                client,
                store,
                beat_admin,
                auth,
                body_limit: config.body_limit,
                query_timeout: config.query_timeout,
                openapi,
            }),
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn beat_admin(&self) -> &BeatAdmin {
        &self.inner.beat_admin
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    pub(crate) fn query_timeout(&self) -> Duration {
        self.inner.query_timeout
    }

    pub(crate) fn openapi_json(&self) -> &str {
        &self.inner.openapi
    }
}

/// The OpenAPI document of the API (what `/api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::openapi()
}

/// The whole application: API, dashboard, metrics, health.
pub fn router(state: AppState) -> Router {
    let (api, _) = api::routes().split_for_parts();
    Router::new()
        .merge(api)
        .merge(dashboard::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit()))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers every answer carries: no sniffing, no framing, no referrer.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuse to expose a server without tokens beyond this machine.
pub fn check_exposure(addr: SocketAddr, auth: &Auth) -> Result<()> {
    if auth.is_open() && !addr.ip().is_loopback() {
        return Err(Error::Invalid(format!(
            "refusing to serve on {addr} without an API token: anyone who can reach it could \
             enqueue, revoke and purge tasks; set {ENV_ADMIN_TOKEN} (and optionally \
             {ENV_READ_TOKEN}) or [server] token, or bind to 127.0.0.1"
        )));
    }
    Ok(())
}

/// Resolve `bind` and listen on it, refusing a non-loopback address without a token.
pub async fn bind(bind: &str, auth: &Auth) -> Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(bind)
        .await
        .map_err(|e| Error::Invalid(format!("--bind {bind:?}: not ADDR:PORT ({e})")))?
        .collect();
    let Some(first) = addrs.first() else {
        return Err(Error::Invalid(format!(
            "--bind {bind:?}: resolves to no address"
        )));
    };
    for a in &addrs {
        check_exposure(*a, auth)?;
    }
    TcpListener::bind(first)
        .await
        .map_err(|e| Error::Invalid(format!("cannot listen on {first}: {e}")))
}

/// Serve `router(state)` on `listener` until `shutdown` fires, then finish the requests in
/// flight. Refuses (before serving anything) a non-loopback listener without tokens.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("listener has no address: {e}")))?;
    check_exposure(addr, state.auth())?;
    if state.auth().is_open() {
        tracing::warn!(
            %addr,
            "no API token configured: anyone on this machine has admin access (set {ENV_ADMIN_TOKEN})"
        );
    }
    tracing::info!(%addr, "HTTP server listening: dashboard at http://{addr}/");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Invalid(format!("HTTP server on {addr} failed: {e}")))
}
