//! What a fleet of instances shares through the database (DESIGN §9, `database.fleet`):
//! heartbeats, the leader's lease, claims on jobs, and the instances' view of the one queue.
//! PostgreSQL only (`postgres_fleet.rs`): it is the coordination engine, with no consensus of
//! runnerhub's own. Times that decide liveness are the database's clock, never an instance's.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreResult;
use crate::domain::{Job, JobId, Runner};

/// What an instance says of itself at each heartbeat.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub id: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub pools: Vec<String>,
    /// The same pools with their sizes, for the other instances' dashboards.
    pub pool_settings: Vec<PoolSetting>,
    /// `limits.max_runners`.
    pub capacity: i64,
}

/// A pool as an instance configures it: what another instance's dashboard needs to show
/// "2 of 4 runners" for a pool it does not serve (the counters come from the runners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSetting {
    pub name: String,
    pub labels: Vec<String>,
    pub max_runners: u32,
    pub min_idle: u32,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// The leader had declared this instance dead before this heartbeat: its queued jobs went
    /// to others and its idle runners were deregistered, so it must rebuild its state from the
    /// database (adopting what survived) before it launches again.
    pub revived: bool,
    /// This instance holds the leader's lease, for `lease` from when the heartbeat was sent.
    pub leader: bool,
}

/// A live event not numbered yet: the fleet's shared log numbers it ([`FleetStore::append_live_events`]).
#[derive(Debug, Clone)]
pub struct UnsequencedEvent {
    pub kind: String,
    pub repository: Option<String>,
    pub time: DateTime<Utc>,
    /// The message's JSON object without its `seq` (`{"type": …}`): the seq goes in front.
    pub body: String,
}

/// An instance as `GET /api/instances` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRecord {
    pub id: String,
    pub version: String,
    pub started: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// Heard from within `database.instance_timeout`, and not declared dead since.
    pub alive: bool,
    pub dead_since: Option<DateTime<Utc>>,
    pub leader: bool,
    pub pools: Vec<String>,
    /// The pools with their sizes, as the instance's last heartbeat described them.
    pub pool_settings: Vec<PoolSetting>,
    pub capacity: i64,
    /// Live runners (not removed) recorded under this instance.
    pub runners: i64,
}

/// A job and the instance that claimed it, if any.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    pub claimed_by: Option<String>,
}

/// Jobs changed since a point in the database's time.
#[derive(Debug, Clone)]
pub struct JobChanges {
    pub jobs: Vec<ClaimedJob>,
    /// The database's clock when the changes were read: the next read starts a little before
    /// it (rows committed late with an earlier `updated_at` are read again, harmlessly).
    pub as_of: DateTime<Utc>,
}

/// What a claim answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The job is this instance's to launch for.
    Claimed,
    /// Another instance holds it, or it is no longer queued.
    Elsewhere,
    /// A quota that counts its repository is full across the fleet (`quota acme/* 4/4`): the
    /// job stays queued, unclaimed, for later.
    OverQuota(String),
}

/// The quota check a claim makes in its own transaction (DESIGN §13): in a fleet, quotas hold
/// across instances, and two claiming the last slot at once cannot both have it.
pub struct QuotaGate<'a> {
    /// The names of the quotas that count the job's repository, sorted: each one's lock is
    /// taken in this order and held until the claim commits, so that claims under one quota
    /// are decided one at a time across the fleet.
    pub quotas: Vec<String>,
    /// Given the fleet's live runners by the repository each counts for (with the other
    /// instances' claims on jobs that have no runner yet, the claimed job left out): why the
    /// job may not have a runner now, or `None`.
    pub refusal: Box<QuotaRefusal<'a>>,
}

/// See [`QuotaGate::refusal`].
pub type QuotaRefusal<'a> = dyn Fn(&HashMap<String, usize>) -> Option<String> + Send + Sync + 'a;

/// Live runners of one pool counting for one repository, with claims not yet a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSlots {
    pub pool: String,
    pub repository: String,
    pub runners: usize,
}

/// A doorbell between the instances of a fleet (src/fleet/doorbell.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bell {
    /// An instance stored deliveries: the leader processes them.
    Deliveries,
    /// The leader changed jobs: the others read the queue.
    Jobs,
}

impl Bell {
    pub const ALL: [Bell; 2] = [Bell::Deliveries, Bell::Jobs];

    /// The PostgreSQL channel it rings on (one database, one fleet).
    pub fn channel(self) -> &'static str {
        match self {
            Bell::Deliveries => "runnerhub_deliveries",
            Bell::Jobs => "runnerhub_jobs",
        }
    }

    pub fn from_channel(channel: &str) -> Option<Bell> {
        Bell::ALL.into_iter().find(|b| b.channel() == channel)
    }
}

/// A ring heard: which bell and which instance rang it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    pub bell: Bell,
    pub by: String,
}

/// The rings of the whole fleet as they come; an error when the listening connection broke
/// and could not be made again (rings meanwhile are lost).
pub type Rings = futures::stream::BoxStream<'static, StoreResult<Ring>>;

#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    /// Rings `bell` for every instance listening, `me` included (NOTIFY).
    async fn ring(&self, bell: Bell, me: &str) -> StoreResult<()>;

    /// Listens to every bell on a connection of its own (LISTEN).
    async fn rings(&self) -> StoreResult<Rings>;

    /// Records that `me` is alive (clearing a `dead_since` the leader set), and takes or renews
    /// the leader's lease for `lease` if it is free, expired or already ours.
    async fn heartbeat(&self, me: &InstanceInfo, lease: Duration) -> StoreResult<Beat>;

    /// Gives the lease up (clean shutdown), so another instance leads at its next heartbeat.
    async fn resign(&self, me: &str) -> StoreResult<()>;

    /// Leader: marks instances silent for `timeout` dead, and puts the jobs they claimed that
    /// no runner has started back in the queue. Returns the instances newly declared dead.
    async fn declare_dead(&self, me: &str, timeout: Duration) -> StoreResult<Vec<String>>;

    /// Leader: live runner records of dead instances that are not running a job (or whose job
    /// has completed): their registrations are the leader's to delete.
    async fn runners_of_dead_instances(&self) -> StoreResult<Vec<Runner>>;

    /// Leader: records a dead instance's runner as removed once its registration is gone,
    /// unless the instance came back meanwhile. True when it was recorded.
    async fn remove_runner_of_dead_instance(&self, runner: &str, reason: &str)
    -> StoreResult<bool>;

    /// Claims a queued job for `me`, unless another instance holds it, it is no longer queued,
    /// or `quota` refuses it (then nothing changes). Claiming again what `me` holds succeeds.
    async fn claim_job(
        &self,
        job: JobId,
        me: &str,
        quota: Option<&QuotaGate<'_>>,
    ) -> StoreResult<Claim>;

    /// The other instances' live runners that count for a repository (the job each runs, else
    /// the one it was launched for), and their claims on queued jobs no runner has yet, by pool
    /// and repository: what quotas and fair share count beyond this instance's own.
    async fn slots_held_elsewhere(&self, me: &str) -> StoreResult<Vec<HeldSlots>>;

    /// Jobs updated at or after `since`; with `None`, every queued job a pool serves.
    async fn job_changes(&self, since: Option<DateTime<Utc>>) -> StoreResult<JobChanges>;

    /// Appends live events to the shared log, numbering them after every seq any instance
    /// committed before, under a lock held until the commit: seqs become visible in order.
    async fn append_live_events(&self, events: &[UnsequencedEvent]) -> StoreResult<()>;

    /// Every instance that joined, with whether it is alive and which one leads.
    async fn instances(&self, timeout: Duration) -> StoreResult<Vec<InstanceRecord>>;

    /// Deletes the row of an instance that left the fleet for good, so it is no longer listed
    /// (nor counted dead): refused while it is alive or still has live runners recorded. An
    /// instance forgotten by mistake joins again at its next heartbeat.
    async fn forget_instance(&self, id: &str, timeout: Duration) -> StoreResult<Forget>;
}

/// What [`FleetStore::forget_instance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    Forgotten,
    Unknown,
    Alive,
    /// Live runners are recorded under it: the leader deregisters those not busy, and a busy
    /// one's record ends with its job.
    HasRunners(i64),
}
