//! runnerhub: a self-hosted GitHub Actions runner orchestrator.
//!
//! # Layout
//! - [`config`]: the one `Config`, defaults < TOML file < environment, validated with key names.
//! - [`docker`]: the container runtime trait, runner container specs, the bollard implementation.
//! - [`github`]: the GitHub REST client (JIT runners, PAT / App auth, retries, rate limits).

pub mod config;
pub mod docker;
pub mod github;
