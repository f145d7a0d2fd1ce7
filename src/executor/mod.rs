//! Ways to run a task besides a Rust closure. Each is a [`crate::registry::Handler`].
//!
//! - [`builtins`]: `celeriac.*` and `http.request`.
//! - [`routes`]: the `[routes]` section of the configuration file: task name / glob → built-in,
//!   HTTP webhook or process pool.
//! - [`webhook`]: POST a signed JSON envelope to a URL.
//! - [`http`]: what the HTTP executors share (send under cancellation, retry rules).
//! - [`process`]: a supervised pool of long-lived child processes speaking JSON lines (the
//!   Python package's `celeriac.runner`, or any program implementing the protocol).

pub mod builtins;
pub mod http;
pub mod process;
pub mod routes;
pub mod webhook;
