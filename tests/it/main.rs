//! Integration tests: real PostgreSQL (a fresh database per test), real worker processes.

mod beat;
mod common;
mod core_cli;
mod core_sql;
mod core_worker;
mod flow;
mod http;
mod http_dashboard;
mod http_flows;
mod http_periodic;
mod limits;
mod runner;
