//! Durable state behind one trait, so that callers never know the backend.
//!
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default; PostgreSQL
//! ([`postgres::PostgresStore`]) keeps the same state in a database server. Each has its own
//! migrations (`migrations/sqlite`, `migrations/postgres`) and both answer every method alike
//! (`tests/store_contract.rs` checks it); nothing above this module knows which one it has.

mod filters;
pub mod fleet;
mod history;
mod hot_payloads;
mod live;
pub mod postgres;
mod postgres_fleet;
mod postgres_history;
mod postgres_live;
mod postgres_prune;
mod postgres_quota;
mod postgres_recovery;
mod postgres_write;
mod prune;
mod recovery;
mod serving_lock;
pub mod sqlite;
mod sqlite_batch;
mod sqlite_checkpoint;
mod sqlite_events;
mod sqlite_history;
mod sqlite_identity;
mod sqlite_prune;
mod sqlite_recovery;
mod sqlite_runners;
mod sqlite_script;
mod types;
mod wal_sync;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use history::{JobWait, PoolMinute, PoolSample};
pub use live::*;
pub use prune::{Prunable, RUN_LIFETIME_LIMIT, Reclaimed};
pub use recovery::*;
pub use types::*;

use crate::domain::{Job, JobId, JobOutcome, Runner, WorkflowRun};
use crate::webhook::intake::NewDelivery;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Durability(#[from] wal_sync::SyncFailed),
    /// Another daemon serves from this database.
    #[error("{0}")]
    InUse(String),
    /// The database file was removed or replaced while in use: nothing written since is kept.
    #[error("the database is gone: {0}")]
    Lost(String),
    /// The database is configured so that it cannot keep runnerhub's promises.
    #[error("unsafe database configuration: {0}")]
    Unsafe(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Resolves once a commit is on disk.
pub type Durable = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<()>> + Send>>;

/// The result of a committed transaction that may not be on disk yet.
pub struct Committed<T> {
    pub value: T,
    pub durable: Durable,
}

#[async_trait]
pub trait Store: RecoveryStore + Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// Periodic housekeeping off the request path (SQLite: WAL checkpoints; PostgreSQL: the
    /// serving lock's session is still there). Called ten times a second by the app; cheap
    /// when there is nothing to do. [`StoreError::InUse`] means another daemon took the
    /// database over: the caller must stop serving.
    async fn maintain(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Makes this process the one daemon serving from this database for as long as it runs,
    /// or fails naming the one that does: two daemons on one database would both launch a
    /// runner for every job. (`runnerhub migrate` does not take it.)
    async fn lock_for_serving(&self, instance: &str) -> StoreResult<()>;

    /// Joins the fleet serving from this database (`database.fleet`): shares the database with
    /// the other instances, holds `instance` (`server.instance_id`) alone, and is refused while
    /// a daemon without `fleet` serves from it. PostgreSQL only.
    /// The fleet's coordination (heartbeats, leases, claims) in this database, if it can hold
    /// it: PostgreSQL can, SQLite serves one instance.
    fn fleet_store(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn fleet::FleetStore>> {
        None
    }

    async fn lock_for_fleet(&self, _instance: &str) -> StoreResult<()> {
        Err(StoreError::Unsafe(
            "database.fleet needs a PostgreSQL database".to_owned(),
        ))
    }

    /// Lets go of what [`Store::lock_for_serving`] took (at the end of `serve`; a process that
    /// dies lets go by itself).
    async fn unlock_serving(&self);

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Appends deliveries in one transaction (a group commit) and returns as soon as it has
    /// committed, with one outcome per input, in order: a genuine delivery whose GUID is
    /// already stored is a `Duplicate`. The commit is on disk once [`Committed::durable`]
    /// resolves; acknowledge only then. Returning earlier lets the caller start the next
    /// transaction while the disk syncs this one.
    async fn append_deliveries(
        &self,
        batch: &[NewDelivery],
    ) -> StoreResult<Committed<Vec<InsertOutcome>>>;

    /// How many [`Store::append_deliveries`] the ingest writer may run at once. SQLite has one
    /// write connection and overlaps a transaction with the previous one's fsync by itself; a
    /// PostgreSQL commit returns only after its fsync, so the writer keeps several in flight
    /// and the server flushes their commits together.
    fn concurrent_appends(&self) -> usize {
        1
    }

    /// [`Store::append_deliveries`], returning once the batch is durable.
    async fn insert_deliveries(&self, batch: &[NewDelivery]) -> StoreResult<Vec<InsertOutcome>> {
        let committed = self.append_deliveries(batch).await?;
        committed.durable.await?;
        Ok(committed.value)
    }

    /// Deliveries not yet processed and due (retry backoff elapsed), oldest first.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>>;

    /// The stored jobs with these ids (missing ids are simply absent).
    async fn jobs_by_id(&self, ids: &[JobId]) -> StoreResult<Vec<Job>>;

    /// The stored runs with these ids.
    async fn runs_by_id(&self, ids: &[i64]) -> StoreResult<Vec<WorkflowRun>>;

    /// Writes the result of processing deliveries, atomically: upserted jobs and runs, and
    /// each delivery's outcome.
    async fn commit_processing(&self, batch: &ProcessingBatch) -> StoreResult<()>;

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Page<EventRecord>>;

    async fn event(&self, id: i64) -> StoreResult<Option<EventRecord>>;

    /// The stored delivery with this GUID (`X-GitHub-Delivery`). Refused attempts may share a
    /// genuine delivery's GUID: the genuine one is preferred, then the latest.
    async fn event_by_delivery(&self, delivery_id: &str) -> StoreResult<Option<EventRecord>>;

    async fn event_statistics(&self, since: DateTime<Utc>) -> StoreResult<EventStatistics>;

    async fn ingest_health(&self) -> StoreResult<IngestHealth>;

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Page<Job>>;

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;

    /// Jobs waiting for a runner of some pool: the scheduler's queue, rebuilt at start.
    async fn schedulable_jobs(&self) -> StoreResult<Vec<Job>>;

    /// Records that runnerhub will launch no runner for a job, and why, unless an outcome is
    /// recorded already (the first stands); returns the job as stored after when this call
    /// recorded it (`None`: recorded before, or no such job).
    async fn record_job_outcome(
        &self,
        id: JobId,
        outcome: JobOutcome,
        detail: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>>;

    /// Inserts or updates a runner record.
    async fn save_runner(&self, runner: &Runner) -> StoreResult<()>;

    /// Every runner not yet removed.
    async fn live_runners(&self) -> StoreResult<Vec<Runner>>;

    async fn runner_by_name(&self, name: &str) -> StoreResult<Option<Runner>>;

    /// Every registration scope a runner was recorded at (removed runners within retention
    /// included), sorted: where a registration may have leaked after a crash or a retried
    /// registration, even with no live runner there any more.
    async fn registered_scopes(&self) -> StoreResult<Vec<String>>;

    async fn list_runners(&self, filter: &RunnerFilter) -> StoreResult<Page<Runner>>;
    // ---- live feed (`GET /ws`, dashboard) ----

    /// Appends live messages and sets the seq reservation, in one transaction.
    async fn insert_live_events(
        &self,
        events: &[LiveEventRow],
        reserved_seq: i64,
    ) -> StoreResult<()>;

    /// Highest stored seq, the seq reservation and the pruning boundary.
    async fn live_event_bounds(&self) -> StoreResult<LiveEventBounds>;

    /// Stored live messages with `after < seq <= through`, oldest first, at most `limit`.
    async fn live_events_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> StoreResult<Vec<LiveEventRow>>;

    /// Deletes live messages beyond the newest `keep_last` or older than `older_than`, and
    /// records the boundary. Returns how many were deleted.
    async fn prune_live_events(
        &self,
        keep_last: i64,
        older_than: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // ---- retention (`crate::retention`) ----

    /// Deletes, in one short transaction, at most `limit` rows of `what` older than `before`,
    /// oldest first, and returns how many. Only rows nothing needs any more (see [`Prunable`]):
    /// never an unprocessed delivery, an unfinished job or a runner not removed.
    async fn prune(&self, what: Prunable, before: DateTime<Utc>, limit: u32) -> StoreResult<u64>;

    /// Gives at most `max_pages` free database pages back to the filesystem, in one short
    /// transaction. SQLite with incremental auto-vacuum shrinks its file this way (at the next
    /// checkpoint); elsewhere this does nothing.
    async fn reclaim_space(&self, _max_pages: u32) -> StoreResult<Reclaimed> {
        Ok(Reclaimed::default())
    }

    /// Jobs not yet started (queued or waiting), highest priority first, then oldest.
    async fn pending_jobs(&self, repository: Option<&str>, limit: u32) -> StoreResult<Vec<Job>>;

    /// Repositories of the jobs updated at or after `since`, the most recently active first,
    /// at most `limit`: where catching up on missed deliveries looks.
    async fn job_repositories_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// Jobs that started or completed at or after `since` (for headline numbers).
    async fn jobs_active_since(
        &self,
        since: DateTime<Utc>,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;

    // ---- pool history (`crate::history`) ----

    /// Records `instance`'s counters of each pool for `minute` (a time truncated to the
    /// minute), replacing what the same instance recorded for the same minute and pool.
    async fn record_pool_samples(
        &self,
        instance: &str,
        minute: DateTime<Utc>,
        samples: &[PoolSample],
    ) -> StoreResult<()>;

    /// Jobs waiting for a runner, per pool (the queue that [`Store::schedulable_jobs`]
    /// rebuilds, refused jobs left out: in a fleet, the whole fleet's), pools by name.
    async fn queued_jobs_per_pool(&self) -> StoreResult<Vec<(String, u64)>>;

    /// Every pool's minutes at or after `since`, by pool then minute; each minute adds up the
    /// instances that sampled it as [`PoolMinute`] says.
    async fn pool_minutes(&self, since: DateTime<Utc>) -> StoreResult<Vec<PoolMinute>>;

    /// Jobs that started on a runner at or after `since` and know when they were queued, the
    /// latest `limit` of them.
    async fn job_waits(&self, since: DateTime<Utc>, limit: u32) -> StoreResult<Vec<JobWait>>;
}
