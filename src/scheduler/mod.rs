//! The one task that owns job and runner state: it drives the delivery processor, keeps the
//! priority queue, launches and tears down runners, and reconciles with Docker and GitHub.

mod actor;
pub mod catch_up;
pub mod handle;
pub mod launcher;
mod launching;
pub mod plan;
pub mod processor;
pub mod queue;
mod runners;
mod watch;

pub use actor::{RECONCILE_INTERVAL, SchedulerDeps, runner_event, start};
pub use handle::{PoolStatus, QueueEntry, RemoveError, SchedulerHandle, SchedulerSnapshot};
pub use processor::Processor;
