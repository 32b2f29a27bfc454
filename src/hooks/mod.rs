//! Webhook setup and recovery (DESIGN §12).
//!
//! - [`cli`]: `runnerhub hooks install|list|status|remove`, the webhook through the REST API.
//! - [`target`]: which hooks a command means (scope, URL, secret) from flags and config.
//! - [`redelivery`]: the background task that asks GitHub to redeliver failed deliveries
//!   that the audit log lacks.
//! - [`redelivery_plan`]: its decisions (failed? ask now, wait, give up?), without IO.
//! - [`sightings`]: hooks named by received deliveries (`X-GitHub-Hook-ID`), remembered for it.

pub mod cli;
pub mod redelivery;
pub mod redelivery_plan;
pub mod sightings;
pub mod target;

/// The webhook endpoint's path, appended to a URL given without one.
pub const WEBHOOK_PATH: &str = "/api/webhooks/github";
