//! Why each queued job is still waiting (DESIGN §13): a reason from a fixed set, for
//! dashboards and alerts, and a short sentence for people.
//!
//! The reasons are checked in this order, and the first that applies is given:
//!
//! 1. `waiting_approval`: GitHub holds the job for an environment approval.
//! 2. `launch_backoff`: launches for the pool (or at the job's registration scope) pause after
//!    failures.
//! 3. `runner_starting`: a runner is on its way (or idle) for the job: one launched for it,
//!    or one of the pool's spare runners, which GitHub hands the oldest matching jobs.
//! 4. `quota`: a quota that counts the job's repository is full.
//! 5. `fair_share`: fair share is on and another repository with fewer of the pool's runners
//!    has a job of the same rule score waiting, so it goes first.
//! 6. `pool_full`, then `host_full`: no free slot in the pool, or on this host.
//!
//! `runner_starting` is checked before the capacity reasons because a job whose runner is on
//! its way needs no free slot; `fair_share` before them because, when slots are short, it is
//! what decides that other repositories' jobs go first. A job that none of these describe is
//! about to get a runner at the next decision (`runner_starting`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Core;
use super::backoff::BackoffKey;
use super::policy::pool_runners_by_repo;
use super::queue::QueuedJob;
use crate::domain::{JobId, RunnerState};

/// Why a queued job waits; see the module documentation for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    WaitingApproval,
    LaunchBackoff,
    Quota,
    PoolFull,
    HostFull,
    FairShare,
    RunnerStarting,
}

impl WaitReason {
    pub const ALL: [WaitReason; 7] = [
        WaitReason::WaitingApproval,
        WaitReason::LaunchBackoff,
        WaitReason::Quota,
        WaitReason::PoolFull,
        WaitReason::HostFull,
        WaitReason::FairShare,
        WaitReason::RunnerStarting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::WaitingApproval => "waiting_approval",
            WaitReason::LaunchBackoff => "launch_backoff",
            WaitReason::Quota => "quota",
            WaitReason::PoolFull => "pool_full",
            WaitReason::HostFull => "host_full",
            WaitReason::FairShare => "fair_share",
            WaitReason::RunnerStarting => "runner_starting",
        }
    }

    /// Waiting for capacity alone: more runners would help, nothing is wrong.
    pub fn is_capacity(self) -> bool {
        matches!(
            self,
            WaitReason::PoolFull | WaitReason::HostFull | WaitReason::RunnerStarting
        )
    }
}

/// A queued job's reason and its sentence (`pool linux full: 10/10 runners`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitInfo {
    pub reason: WaitReason,
    pub detail: String,
}

impl WaitInfo {
    fn new(reason: WaitReason, detail: impl Into<String>) -> Self {
        WaitInfo {
            reason,
            detail: detail.into(),
        }
    }
}

impl Core {
    /// The wait reason of every queued job of a configured pool.
    pub fn wait_reasons(&self, now: DateTime<Utc>) -> HashMap<JobId, WaitInfo> {
        let mut reasons = HashMap::with_capacity(self.queue.len());
        let host_used = self
            .runners
            .values()
            .filter(|r| r.state.holds_slot())
            .count();
        let host_max = self.config.limits.max_runners as usize;
        let usage = self
            .policy
            .usage(&self.runners, &self.runner_repos, &self.elsewhere);
        let mut quotas_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for pool in &self.config.pools {
            let name = pool.name.as_str();
            // Registrations back off per pool and scope: per repository within this pool.
            let mut scope_backoff: HashMap<&str, Option<String>> = HashMap::new();
            let covered = self.covered_jobs(name);
            let pool_used = self
                .runners
                .values()
                .filter(|r| r.pool == name && r.state.holds_slot())
                .count();
            let pool_backoff = self
                .backoff
                .backing_off_after(&BackoffKey::Pool(name.to_owned()), now);
            let runners_by_repo =
                pool_runners_by_repo(name, &self.runners, &self.runner_repos, &self.elsewhere);
            let fewest = self
                .policy
                .fair_share
                .then(|| self.fewest_runners_by_tier(name, &covered, &runners_by_repo));
            for job in self.queue.pool_iter(name) {
                let info = if job.needs_approval {
                    WaitInfo::new(
                        WaitReason::WaitingApproval,
                        "waiting for an environment approval",
                    )
                } else if let Some(error) = pool_backoff {
                    WaitInfo::new(
                        WaitReason::LaunchBackoff,
                        format!("launch backoff after: {error}"),
                    )
                } else if let Some(error) = scope_backoff
                    .entry(&job.repository)
                    .or_insert_with(|| self.scope_backoff_error(job, now))
                {
                    WaitInfo::new(
                        WaitReason::LaunchBackoff,
                        format!("launch backoff after: {error}"),
                    )
                } else if let Some(detail) = covered.get(&job.id) {
                    WaitInfo::new(WaitReason::RunnerStarting, detail.clone())
                } else if let Some(detail) = self.policy.full_quota_detail(
                    &usage,
                    quotas_of
                        .entry(&job.repository)
                        .or_insert_with(|| self.policy.quotas_of(&job.repository)),
                ) {
                    WaitInfo::new(WaitReason::Quota, detail)
                } else if let Some(detail) = fewest
                    .as_ref()
                    .and_then(|fewest| fair_share_detail(job, name, fewest, &runners_by_repo))
                {
                    WaitInfo::new(WaitReason::FairShare, detail)
                } else if pool_used >= pool.max_runners as usize {
                    WaitInfo::new(
                        WaitReason::PoolFull,
                        format!("pool {name} full: {pool_used}/{} runners", pool.max_runners),
                    )
                } else if host_used >= host_max {
                    WaitInfo::new(
                        WaitReason::HostFull,
                        format!("host full: {host_used}/{host_max} runners"),
                    )
                } else {
                    WaitInfo::new(
                        WaitReason::RunnerStarting,
                        format!("a runner of pool {name} is being launched"),
                    )
                };
                reasons.insert(job.id, info);
            }
        }
        reasons
    }

    /// Jobs of `pool` a runner is on its way for, with a sentence saying which: those a
    /// supply runner was launched for, then, for each other spare runner, the best job left
    /// (GitHub hands a spare runner a matching job; which one is its choice).
    fn covered_jobs(&self, pool: &str) -> HashMap<JobId, String> {
        let mut covered = HashMap::new();
        let mut spare = 0usize;
        for r in self.runners.values().filter(|r| r.pool == pool) {
            let busy_unlinked = r.state == RunnerState::Busy && r.job_id.is_none();
            if !((r.state.is_supply() && !r.draining) || busy_unlinked) {
                continue;
            }
            let state = match r.state {
                RunnerState::Idle => "idle",
                RunnerState::Busy => "busy",
                _ => "starting",
            };
            match r.launched_for.filter(|id| self.queue.get(*id).is_some()) {
                Some(job) => {
                    covered.insert(job, format!("runner {} {state} for it", r.name));
                }
                None => spare += 1,
            }
        }
        let taken: HashSet<JobId> = covered.keys().copied().collect();
        for job in self
            .queue
            .pool_iter(pool)
            .filter(|j| !j.needs_approval && !taken.contains(&j.id))
            .take(spare)
        {
            covered.insert(
                job.id,
                format!("a spare runner of pool {pool} is starting or idle"),
            );
        }
        covered
    }

    /// Per rule score: the repository with the fewest of the pool's runners among those with
    /// a job of that score waiting for a slot, and its count.
    fn fewest_runners_by_tier(
        &self,
        pool: &str,
        covered: &HashMap<JobId, String>,
        runners_by_repo: &HashMap<&str, usize>,
    ) -> HashMap<i64, (usize, String)> {
        let mut fewest: HashMap<i64, (usize, String)> = HashMap::new();
        for ((priority, repository), entries) in self.queue.pool_groups(pool) {
            let waiting_for_slot = entries.iter().any(|(_, id)| {
                !covered.contains_key(id) && self.queue.get(*id).is_some_and(|j| !j.needs_approval)
            });
            if !waiting_for_slot {
                continue;
            }
            let n = runners_by_repo
                .get(repository.as_str())
                .copied()
                .unwrap_or(0);
            let entry = fewest
                .entry(*priority)
                .or_insert_with(|| (n, repository.clone()));
            if (n, repository) < (entry.0, &entry.1) {
                *entry = (n, repository.clone());
            }
        }
        fewest
    }

    fn scope_backoff_error(&self, job: &QueuedJob, now: DateTime<Utc>) -> Option<String> {
        let scope = self.job_scope(&job.repository)?;
        self.backoff
            .backing_off_after(
                &BackoffKey::Scope {
                    pool: job.pool.clone(),
                    scope: scope.api_path(),
                },
                now,
            )
            .map(str::to_owned)
    }
}

/// `fair share: acme/big has 8 runners of pool linux, acme/small 1` when another repository
/// with fewer runners has a job of the same rule score waiting.
fn fair_share_detail(
    job: &QueuedJob,
    pool: &str,
    fewest: &HashMap<i64, (usize, String)>,
    runners_by_repo: &HashMap<&str, usize>,
) -> Option<String> {
    let (least, other) = fewest.get(&job.priority)?;
    let mine = runners_by_repo
        .get(job.repository.as_str())
        .copied()
        .unwrap_or(0);
    (mine > *least).then(|| {
        format!(
            "fair share: {} has {mine} runners of pool {pool}, {other} {least}",
            job.repository
        )
    })
}
