//! In a fleet, the queue comes from the database: the leader alone processes deliveries, so
//! every instance reads the jobs that changed (every [`SYNC_INTERVAL`]) and, now and then, the
//! whole queue, and feeds them to its core; a job another instance claimed leaves this one's
//! queue ([`Input::ClaimedElsewhere`]) until the claim is released.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use super::actor::Scheduler;
use super::core::Input;
use super::core::policy::RunnersElsewhere;
use crate::domain::JobId;
use crate::fleet::Member;
use crate::store::fleet::ClaimedJob;
use crate::telemetry::repeats::{self, Repeats};

/// How often changed jobs are read.
pub(super) const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// The least time between two reads when the leader rings: processing rings after every
/// batch, and each read takes the last [`OVERLAP`] of changes again.
pub(super) const MIN_SYNC_GAP: Duration = Duration::from_millis(200);
/// How often the whole queue is read: it catches what an incremental read missed (a row
/// committed with an `updated_at` older than the overlap, from a host whose clock lags).
const FULL_SYNC_EVERY: Duration = Duration::from_secs(15);
/// Each read starts this long before the last one's database time, so a transaction that
/// committed after that read with an earlier `updated_at` is not skipped.
const OVERLAP: TimeDelta = TimeDelta::seconds(10);

#[derive(Debug, Default)]
pub(crate) struct SyncCursor {
    since: Option<DateTime<Utc>>,
    last_full: Option<Instant>,
}

/// Resolves when the fleet has declared this instance dead and heard from it again; never for
/// a daemon alone.
pub(super) async fn revived(revivals: &mut Option<watch::Receiver<u64>>) -> Option<()> {
    match revivals {
        Some(revivals) => revivals.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// What the core learns of a job: it, or that another instance has it.
fn input_for(claimed: ClaimedJob, me: &str) -> Input {
    match claimed.claimed_by {
        Some(by) if by != me && claimed.job.status.is_pending() => Input::ClaimedElsewhere {
            job_id: claimed.job.id,
        },
        _ => Input::Job(Box::new(claimed.job)),
    }
}

impl Scheduler {
    /// With quotas or fair share, the other instances' runners by pool and repository, when
    /// they changed: the core counts the fleet's runners, not only its own.
    async fn runners_elsewhere(&self, member: &Member) -> Option<Input> {
        if !self.core.policy().counts_repositories() {
            return None;
        }
        match member.store.slots_held_elsewhere(&member.instance).await {
            Ok(held) => {
                let elsewhere = RunnersElsewhere::new(
                    held.into_iter().map(|h| (h.pool, h.repository, h.runners)),
                );
                (elsewhere != *self.core.runners_elsewhere())
                    .then_some(Input::RunnersElsewhere(elsewhere))
            }
            Err(error) => {
                // The counts stay as last read; each claim checks quotas in the database anyway.
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::warn!(%error, "fleet: cannot read the other instances' runners{held}");
                }
                None
            }
        }
    }

    /// Reads the jobs that changed in the database and feeds them to the core.
    pub(super) async fn sync_fleet(&mut self) {
        let Some(member) = self.deps.fleet.as_member().cloned() else {
            return;
        };
        let full = self.sync.since.is_none()
            || self
                .sync
                .last_full
                .is_none_or(|at| at.elapsed() >= FULL_SYNC_EVERY);
        let since = if full { None } else { self.sync.since };
        let changes = match member.store.job_changes(since).await {
            Ok(changes) => changes,
            Err(error) => {
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::warn!(%error, "fleet: cannot read the queue from the database{held}");
                }
                return;
            }
        };
        let listed: HashSet<JobId> = changes.jobs.iter().map(|c| c.job.id).collect();
        let mut inputs: Vec<Input> = changes
            .jobs
            .into_iter()
            .map(|c| input_for(c, &member.instance))
            .collect();
        if full {
            // Queued here, no longer queued there: read what became of them.
            let gone: Vec<JobId> = self
                .core
                .queue()
                .iter_ordered()
                .iter()
                .map(|j| j.id)
                .filter(|id| !listed.contains(id))
                .collect();
            if !gone.is_empty() {
                match self.deps.store.jobs_by_id(&gone).await {
                    Ok(jobs) => {
                        let found: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
                        inputs.extend(jobs.into_iter().map(|j| Input::Job(Box::new(j))));
                        // Deleted meanwhile (retention): nothing left to wait for.
                        inputs.extend(
                            gone.into_iter()
                                .filter(|id| !found.contains(id))
                                .map(|job_id| Input::ClaimedElsewhere { job_id }),
                        );
                    }
                    Err(error) => {
                        tracing::warn!(%error, "fleet: cannot read jobs that left the queue")
                    }
                }
            }
            self.sync.last_full = Some(Instant::now());
        }
        self.sync.since = Some(changes.as_of - OVERLAP);
        inputs.extend(self.runners_elsewhere(&member).await);
        if !inputs.is_empty() {
            self.step(inputs).await;
        }
    }
}
