//! What retention may delete ([`Prunable`]) and what reclaiming space reports ([`Reclaimed`]).
//! The SQL is per backend (`sqlite_prune.rs`, `postgres_prune.rs`); the schedule and the
//! batching are `crate::retention`'s.

use chrono::{DateTime, TimeDelta, Utc};

/// A kind of row that retention deletes once it is older than a cutoff, and only once nothing
/// needs it any more: a delivery the processor has not processed yet (its backlog, retries
/// included), a job not completed, or a runner not removed (container and registration gone)
/// is never deleted, however old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prunable {
    /// Genuine (signature-valid) deliveries received before the cutoff and processed, with
    /// their payloads.
    Deliveries,
    /// Deliveries whose signature failed, received before the cutoff, with their (capped)
    /// bodies. They were never processed: they are settled as `rejected` on arrival.
    ForgedDeliveries,
    /// Completed jobs last updated before the cutoff.
    Jobs,
    /// Workflow runs completed and last updated (GitHub's `updated_at`, else `created_at`)
    /// before the cutoff; and runs whose `completed` delivery never came, once their last
    /// update is [`RUN_LIFETIME_LIMIT`] older than the cutoff (GitHub has ended them by then).
    Runs,
    /// Runners removed (container and registration deleted) before the cutoff.
    Runners,
    /// Redeliveries last asked of GitHub before the cutoff. GitHub lists a delivery for 3
    /// days and `database.retention` is at least that, so none of them can be asked again.
    Redeliveries,
    /// Pool history samples (`crate::history`) of minutes before the cutoff.
    PoolSamples,
}

impl Prunable {
    /// In the order retention deletes them (none depends on another).
    pub const ALL: [Prunable; 7] = [
        Prunable::Deliveries,
        Prunable::ForgedDeliveries,
        Prunable::Jobs,
        Prunable::Runs,
        Prunable::Runners,
        Prunable::Redeliveries,
        Prunable::PoolSamples,
    ];

    /// The name in metrics and in the cleanup endpoint's answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Prunable::Deliveries => "deliveries",
            Prunable::ForgedDeliveries => "forged_deliveries",
            Prunable::Jobs => "jobs",
            Prunable::Runs => "runs",
            Prunable::Runners => "runners",
            Prunable::Redeliveries => "redeliveries",
            Prunable::PoolSamples => "pool_samples",
        }
    }
}

/// GitHub ends every workflow run within 35 days ("each workflow run is limited to 35 days"),
/// so a run not updated for that long past the cutoff is over even if its `completed` delivery
/// was lost; without this it would stay forever.
pub const RUN_LIFETIME_LIMIT: TimeDelta = TimeDelta::days(35);

/// The cutoff for runs that never completed: [`RUN_LIFETIME_LIMIT`] before `before`.
pub(super) fn unfinished_run_cutoff(before: DateTime<Utc>) -> DateTime<Utc> {
    before - RUN_LIFETIME_LIMIT
}

/// One step of giving free database pages back to the filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Bytes this step gave back (the file shrinks by as much at the next checkpoint).
    pub bytes: u64,
    /// Bytes still free inside the database file after this step that a further step could
    /// give back (0 when the database cannot shrink, e.g. SQLite without incremental
    /// auto-vacuum, or PostgreSQL, whose autovacuum makes space reusable instead).
    pub left: u64,
}
