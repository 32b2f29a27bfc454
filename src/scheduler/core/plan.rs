//! What to launch next: a pure function of the queue, the runners and the pools' limits.
//!
//! Demand is counted per pool, not per job: GitHub may hand any idle matching runner any
//! matching job, so a pool needs `queued + min_idle` runners that can still take work, and
//! launches cover the best uncovered jobs first. Each launch for a job is registered with that
//! job's labels, so GitHub can only give it jobs with the same or fewer labels.

use std::collections::{HashMap, HashSet};

use crate::domain::{JobId, Runner, RunnerId, RunnerState};

use super::policy::{Policy, RunnersElsewhere, pool_runners_by_repo};
use super::queue::{JobQueue, QueuedJob};

mod fair;

/// A pool's limits as the planner needs them.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub name: String,
    pub max_runners: usize,
    pub min_idle: usize,
    /// Warm runners need somewhere to register (an organization, or the pool's repository).
    pub can_warm: bool,
    /// Launch failures recently: no launches until the backoff ends.
    pub backing_off: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// For a job: registered with the job's labels, at the job's repository (or the org).
    ForJob { pool: String, job_id: JobId },
    /// A warm runner with the pool's labels.
    Warm { pool: String },
}

impl Launch {
    pub fn pool(&self) -> &str {
        match self {
            Launch::ForJob { pool, .. } | Launch::Warm { pool } => pool,
        }
    }
}

/// Plans launches in priority order across pools until demand or capacity runs out.
/// `launchable` says whether a job may get a runner now (false while its repository's
/// registrations are backing off): a job it refuses is passed over, not waited for, so one
/// refused repository does not stall the pool.
pub fn plan_launches(
    pools: &[PoolLimits],
    queue: &JobQueue,
    runners: &HashMap<String, Runner>,
    global_max: usize,
    launchable: &dyn Fn(&QueuedJob) -> bool,
) -> Vec<Launch> {
    let no_policy = PlanPolicy {
        policy: &Policy::default(),
        runner_repos: &HashMap::new(),
        elsewhere: &RunnersElsewhere::default(),
    };
    plan_with_policy(pools, queue, runners, global_max, launchable, &no_policy)
}

/// What the planner needs of the scheduling policy (DESIGN §13).
pub struct PlanPolicy<'a> {
    pub policy: &'a Policy,
    /// The repository each runner counts for (the job it runs, else the job it was launched
    /// for).
    pub runner_repos: &'a HashMap<RunnerId, String>,
    /// In a fleet, the other instances' runners: quotas and fair share count them too (pool
    /// and host capacity are this instance's own).
    pub elsewhere: &'a RunnersElsewhere,
}

/// [`plan_launches`] under quotas and fair share: a job whose quotas are full is passed over
/// (the rest of the pool stays usable), and with fair share each pool's candidates come in
/// fair order ([`fair::fair_order`]).
pub fn plan_with_policy(
    pools: &[PoolLimits],
    queue: &JobQueue,
    runners: &HashMap<String, Runner>,
    global_max: usize,
    launchable: &dyn Fn(&QueuedJob) -> bool,
    policy: &PlanPolicy<'_>,
) -> Vec<Launch> {
    let mut slots_used = runners.values().filter(|r| r.state.holds_slot()).count();
    let mut pool_used: HashMap<&str, usize> = HashMap::new();
    let mut supply: HashMap<&str, usize> = HashMap::new();
    let mut covered: HashSet<JobId> = HashSet::new();
    for r in runners.values() {
        if r.state.holds_slot() {
            *pool_used.entry(r.pool.as_str()).or_default() += 1;
        }
        // A runner GitHub reports busy before any delivery said with which job is running one
        // of the queued jobs (most likely its own): until that delivery arrives it still
        // counts against the queue, or a poll that beats the webhook launches a second runner.
        let busy_unlinked = r.state == RunnerState::Busy && r.job_id.is_none();
        if (r.state.is_supply() && !r.draining) || busy_unlinked {
            *supply.entry(r.pool.as_str()).or_default() += 1;
            if let Some(job) = r.launched_for {
                covered.insert(job);
            }
        }
    }
    let quotas = policy.policy;
    let mut quota_usage = quotas.usage(runners, policy.runner_repos, policy.elsewhere);
    let quotas_of = |job: &QueuedJob| {
        if quotas.has_quotas() {
            quotas.quotas_of(&job.repository)
        } else {
            Vec::new()
        }
    };

    // Per pool: how many runners are missing for queued jobs, and which jobs to launch for,
    // best first (quotas counted as if each pool had them alone; rechecked below).
    let mut per_pool: Vec<std::vec::IntoIter<&QueuedJob>> = Vec::new();
    for pool in pools.iter().filter(|p| !p.backing_off) {
        let demand = queue.pool_demand(&pool.name);
        let have = supply.get(pool.name.as_str()).copied().unwrap_or(0);
        let missing = demand.saturating_sub(have);
        if missing == 0 {
            continue;
        }
        let eligible = |j: &QueuedJob| !covered.contains(&j.id) && !j.needs_approval;
        let room = pool
            .max_runners
            .saturating_sub(pool_used.get(pool.name.as_str()).copied().unwrap_or(0))
            .min(global_max.saturating_sub(slots_used));
        // No more than the pool has room for: a long queue behind a full pool would otherwise
        // be walked at every decision (most of a 100,000-job replay's time). With quotas, the
        // merge below may refuse some of these, and the next ones may then fit.
        let wanted = if quotas.has_quotas() {
            missing
        } else {
            missing.min(room)
        };
        if wanted == 0 {
            continue;
        }
        let candidates: Vec<&QueuedJob> = if quotas.fair_share {
            let counts =
                pool_runners_by_repo(&pool.name, runners, policy.runner_repos, policy.elsewhere);
            fair::fair_order(
                queue,
                &pool.name,
                counts,
                &eligible,
                launchable,
                &quotas_of,
                quota_usage.clone(),
                missing.min(room),
            )
        } else {
            let mut local = quota_usage.clone();
            queue
                .pool_iter(&pool.name)
                .filter(|j| eligible(j) && launchable(j))
                .filter(|j| {
                    let indices = quotas_of(j);
                    let room = local.all_have_room(&indices);
                    if room {
                        local.take(&indices);
                    }
                    room
                })
                .take(wanted)
                .collect()
        };
        per_pool.push(candidates.into_iter());
    }

    // The next free slot goes to the best head of the pools' lists whose pool has room.
    let limits: HashMap<&str, &PoolLimits> = pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut launches = Vec::new();
    let mut launched: HashMap<&str, usize> = HashMap::new();
    let mut heads: Vec<std::iter::Peekable<_>> =
        per_pool.into_iter().map(|c| c.peekable()).collect();
    loop {
        let best = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| h.peek().map(|j| (j.sort_key(), i)))
            .min();
        let Some((_, index)) = best else {
            break;
        };
        let job = heads[index].next().expect("peeked");
        let Some(pool) = limits.get(job.pool.as_str()) else {
            continue;
        };
        let used = pool_used.entry(pool.name.as_str()).or_default();
        if slots_used >= global_max || *used >= pool.max_runners {
            continue;
        }
        let indices = quotas_of(job);
        if !quota_usage.all_have_room(&indices) {
            continue;
        }
        quota_usage.take(&indices);
        *used += 1;
        slots_used += 1;
        *launched.entry(pool.name.as_str()).or_default() += 1;
        launches.push(Launch::ForJob {
            pool: pool.name.clone(),
            job_id: job.id,
        });
    }

    // Warm runners: keep min_idle spare beyond what the queue will consume.
    for pool in pools
        .iter()
        .filter(|p| !p.backing_off && p.can_warm && p.min_idle > 0)
    {
        let name = pool.name.as_str();
        let have =
            supply.get(name).copied().unwrap_or(0) + launched.get(name).copied().unwrap_or(0);
        let want = queue.pool_demand(name) + pool.min_idle;
        let used = pool_used.entry(name).or_default();
        for _ in have..want {
            if slots_used >= global_max || *used >= pool.max_runners {
                break;
            }
            *used += 1;
            slots_used += 1;
            launches.push(Launch::Warm {
                pool: pool.name.clone(),
            });
        }
    }
    launches
}

#[cfg(test)]
mod tests;
