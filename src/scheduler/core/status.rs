//! What clients see of the core's state: per-pool counters, stalled pools and waiting jobs.
//!
//! A pool is *stalled* when some of its queued jobs cannot get a runner for a reason other
//! than capacity, for `scheduling.stall_after` (default 5 min) or longer: its launches keep
//! failing (the pool's backoff has not cleared: image missing, Docker down, runners that never
//! come online), or GitHub keeps refusing registrations at a job's scope. A full pool is not
//! stalled: its jobs wait their turn. A job that can never be served leaves the queue instead
//! ([`super::refusals`]): so a repository that is not `owner/name`, or a scope GitHub has
//! answered 404 for as long, refuses its jobs rather than stalling the pool.
//! `GET /api/webhooks/health` says `degraded` with the cause while `/readyz` stays ready,
//! since every instance of a fleet would see the same stall and none of them should leave the
//! load balancer for it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Core;
use super::backoff::BackoffKey;
use super::queue::QueuedJob;

/// The stall check walks the queue, so it runs at most this often (and at the deadlines it
/// asks for), not at every step of a busy queue.
const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why a pool cannot launch for some of its queued jobs, and since when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocked {
    pub reason: String,
    /// When the cause began (the first failure of the run, or when the job was queued).
    pub since: DateTime<Utc>,
    /// Queued jobs of the pool that cannot get a runner for it.
    pub jobs: usize,
}

/// Per-pool counters, as `GET /api/runners/pool/status` and `pool` events show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub labels: Vec<String>,
    pub max_runners: u32,
    pub min_idle: u32,
    /// Requested or creating: on the way, not yet online.
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    /// Jobs waiting for this pool.
    pub queued: usize,
    /// Launch failures in a row (launches pause with backoff while > 0).
    pub consecutive_failures: u32,
    /// Set while the pool is stalled (see the module documentation).
    pub stalled: Option<Blocked>,
}

/// The pools whose launches are blocked, as of the last check.
#[derive(Debug, Default)]
pub(super) struct Stalls {
    blocked: BTreeMap<String, Blocked>,
    checked_at: Option<DateTime<Utc>>,
    /// `scheduling.stall_after` at the last check.
    after: chrono::Duration,
}

impl Stalls {
    /// `pool`'s blocker once it has lasted `scheduling.stall_after` (as of the last check).
    pub(super) fn stalled(&self, pool: &str) -> Option<&Blocked> {
        let checked_at = self.checked_at?;
        self.blocked
            .get(pool)
            .filter(|b| checked_at - b.since >= self.after)
    }
}

/// A `std` duration from the configuration as `chrono`'s (durations that large are refused
/// by no one, so saturate rather than panic).
pub(super) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Core {
    /// Looks again at which pools are blocked (at most every [`STALL_CHECK_INTERVAL`]), and
    /// logs a pool that becomes stalled or recovers.
    pub(super) fn check_stalls(&mut self, now: DateTime<Utc>) {
        let interval = chrono::Duration::from_std(STALL_CHECK_INTERVAL).expect("in range");
        if self.stalls.checked_at.is_some_and(|at| now - at < interval) {
            return;
        }
        self.refuse_unknown_scopes(now);
        let before: Vec<String> = self.stalled_pools().map(str::to_owned).collect();
        let blocked = self
            .config
            .pools
            .iter()
            .filter_map(|p| Some((p.name.clone(), self.launch_blocker(&p.name)?)))
            .collect();
        self.stalls = Stalls {
            blocked,
            checked_at: Some(now),
            after: chrono_duration(self.config.scheduling.stall_after),
        };
        for (pool, blocked) in &self.stalls.blocked {
            if self.stalls.stalled(pool).is_some() && !before.contains(pool) {
                tracing::warn!(
                    %pool, reason = %blocked.reason, since = %blocked.since, jobs = blocked.jobs,
                    "pool stalled: queued jobs cannot get a runner"
                );
            }
        }
        for pool in before {
            if self.stalls.stalled(&pool).is_none() {
                tracing::info!(%pool, "pool no longer stalled");
            }
        }
    }

    fn stalled_pools(&self) -> impl Iterator<Item = &str> {
        self.stalls
            .blocked
            .keys()
            .filter(|p| self.stalls.stalled(p).is_some())
            .map(String::as_str)
    }

    /// When the stall check wants to run again: while any pool is blocked, every
    /// [`STALL_CHECK_INTERVAL`], to see it reach `scheduling.stall_after` or clear (a clearing input
    /// may arrive between two checks, and nothing may follow it).
    pub(super) fn next_stall_check(&self) -> Option<DateTime<Utc>> {
        let interval = chrono::Duration::from_std(STALL_CHECK_INTERVAL).expect("in range");
        let checked_at = self.stalls.checked_at?;
        (!self.stalls.blocked.is_empty()).then_some(checked_at + interval)
    }

    /// Why `pool` cannot launch for some of its queued jobs: the pool's own launches fail
    /// (every job waits), or GitHub refuses registrations at a job's scope. `None` when every
    /// queued job could get a runner as soon as there is room.
    fn launch_blocker(&self, pool: &str) -> Option<Blocked> {
        let queued = self.queue.pool_len(pool);
        if queued == 0 {
            return None;
        }
        if let Some(failing) = self.backoff.failing(&BackoffKey::Pool(pool.to_owned())) {
            return Some(Blocked {
                reason: format!("runner launches fail: {}", failing.cause),
                since: failing.since,
                jobs: queued,
            });
        }
        let mut worst: Option<Blocked> = None;
        let mut jobs = 0;
        for job in self.queue.pool_iter(pool) {
            // A job with no scope never stays queued (refusals.rs).
            let Some(scope) = self.job_scope(&job.repository) else {
                continue;
            };
            let key = BackoffKey::Scope {
                pool: pool.to_owned(),
                scope: scope.api_path(),
            };
            let Some(failing) = self.backoff.failing(&key) else {
                continue;
            };
            let blocked = Blocked {
                reason: format!(
                    "GitHub refuses runner registrations at {}: {}",
                    scope.api_path(),
                    failing.cause
                ),
                since: failing.since,
                jobs: 0,
            };
            jobs += 1;
            if worst.as_ref().is_none_or(|w| blocked.since < w.since) {
                worst = Some(blocked);
            }
        }
        worst.map(|w| Blocked { jobs, ..w })
    }
}

/// A waiting job as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub id: i64,
    pub pool: String,
    pub repository: String,
    pub labels: Vec<String>,
    pub priority: i64,
    pub band: &'static str,
    pub queued_at: chrono::DateTime<chrono::Utc>,
    pub wait_seconds: f64,
    /// Why it waits (DESIGN §13), and the sentence for people.
    pub wait_reason: Option<super::wait::WaitReason>,
    pub wait_detail: Option<String>,
}

impl QueueEntry {
    pub fn new(
        job: &QueuedJob,
        now: chrono::DateTime<chrono::Utc>,
        wait: Option<super::wait::WaitInfo>,
    ) -> Self {
        let (wait_reason, wait_detail) = wait.map(|w| (w.reason, w.detail)).unzip();
        QueueEntry {
            id: job.id,
            pool: job.pool.clone(),
            repository: job.repository.clone(),
            labels: job.labels.clone(),
            priority: job.priority,
            band: job.band(),
            queued_at: job.queued_at,
            wait_seconds: ((now - job.queued_at).num_milliseconds().max(0)) as f64 / 1000.0,
            wait_reason,
            wait_detail,
        }
    }
}
