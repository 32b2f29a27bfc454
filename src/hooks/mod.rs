//! Webhook setup and recovery (DESIGN §12).
//!
//! - [`cli`]: `runnerhub hooks install|list|status|remove`, the webhook through the REST API.
//! - [`target`]: which hooks a command means (scope, URL, secret) from flags and config.

pub mod cli;
pub mod target;

/// The webhook endpoint's path, appended to a URL given without one.
pub const WEBHOOK_PATH: &str = "/api/webhooks/github";
