//! runnerhub: a self-hosted GitHub Actions runner orchestrator.
//!
//! # Layout
//! - [`config`]: the one `Config`, defaults < TOML file < environment, validated with key names.
//! - [`github`]: GitHub access; [`github::sim`] is the GitHub simulator for tests and demos.

pub mod config;
pub mod github;
