//! runnerhub: a self-hosted GitHub Actions runner orchestrator.
//!
//! # Layout
//! - [`config`]: the one `Config`, defaults < TOML file < environment, validated with key names.

pub mod config;
