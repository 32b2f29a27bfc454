//! runnerhub: a self-hosted GitHub Actions runner orchestrator.
//!
//! # Layout
//! - [`app`]: long-lived handles (`App`), `AppState`, and `run(config, listener, shutdown)`.
//! - [`config`]: the one `Config`, defaults < TOML file < environment, validated with key names.
//! - [`demo`]: `runnerhub demo`, the whole flow against the simulator and local Docker.
//! - [`docker`]: the container runtime trait, runner container specs, the bollard implementation.
//! - [`domain`]: jobs, workflow runs, label matching, priority. Pure, no IO.
//! - [`events`]: the bus of state changes: numbered (`seq`), broadcast, logged in `live_events`.
//! - [`github`]: the GitHub REST client (JIT runners, PAT / App auth, retries, rate limits) and
//!   [`github::sim`], the GitHub simulator for tests and the demo.
//! - [`history`]: pool history for the dashboard's charts: a sample per pool and minute, and
//!   queue waits per hour (`GET /api/history`).
//! - [`hooks`]: `runnerhub hooks install|list|status|remove`, and redelivery of failed
//!   deliveries (DESIGN §12).
//! - [`lifecycle`]: signals, systemd notifications (ready, watchdog, reload, stopping), SIGHUP.
//! - [`metrics`]: the catalog of Prometheus metric names and the recorder behind `/metrics`.
//! - [`http`]: routers per resource, the error envelope, bearer-token guard, the live feed
//!   (`ws`, `snapshot`) and the embedded dashboard; the listener's accept loop and connection
//!   bound ([`http::serve`]), bodies under a budget and deadline ([`http::body`]), and the
//!   open mode's browser checks.
//! - [`replay`]: `events export` and `replay`: recorded deliveries through the scheduler's
//!   decisions in virtual time, for capacity planning.
//! - [`retention`]: old history deleted in small batches (`database.retention`, the cleanup
//!   endpoint), and the space given back.
//! - [`scheduler`]: the task that owns job state; the delivery processor.
//! - [`store`]: the `Store` trait and its SQLite and PostgreSQL backends.
//! - [`supervisor`]: the daemon's own tasks, watched: a panic stops the daemon (non-zero).
//! - [`telemetry`]: logging setup.
//! - [`webhook`]: delivery checks, signature, payload decoding, group-commit ingest.

pub mod app;
pub mod config;
pub mod demo;
pub mod docker;
pub mod domain;
pub mod events;
pub mod fleet;
pub mod github;
pub mod history;
pub mod hooks;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod replay;
pub mod retention;
pub mod scheduler;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod webhook;
