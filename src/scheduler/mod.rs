//! Scheduling: the decision core ([`core`]: every decision, no IO) and the one task that
//! drives it ([`actor`]: it runs the delivery processor, feeds the core, and carries out its
//! effects — store writes, launches and teardowns, reconciliation with Docker and GitHub).

mod actor;
pub mod catch_up;
pub mod core;
mod effects;
mod fleet_sync;
pub mod handle;
pub mod launcher;
pub mod processor;
mod waits;
mod watch;

pub use actor::{RECONCILE_INTERVAL, SchedulerDeps, pool_event_data, runner_event, start};
pub use handle::{PoolStatus, QueueEntry, RemoveError, SchedulerHandle, SchedulerSnapshot};
pub use processor::Processor;
pub use waits::job_json_with_wait;
