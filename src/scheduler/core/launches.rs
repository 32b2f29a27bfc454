//! Which runners to launch now: demand and warm pools through the planner, pre-warming, and
//! where each runner registers.

use chrono::{DateTime, Utc};

use super::backoff::BackoffKey;
use super::plan::{Launch, PlanPolicy, PoolLimits, plan_with_policy};
use super::{Core, Effect, RunnerIds};
use crate::config::Registration;
use crate::domain::{Runner, RunnerState};
use crate::github::RunnerScope;

impl Core {
    /// Plans launches within capacity and backoff, and emits them.
    pub(super) fn schedule(&mut self, now: DateTime<Utc>, ids: &mut dyn RunnerIds) {
        if self.config.pools.is_empty() || self.launches_paused || !self.wants_room() {
            self.pending_prewarm.clear();
            return;
        }
        let limits: Vec<PoolLimits> = self
            .config
            .pools
            .iter()
            .map(|p| PoolLimits {
                name: p.name.clone(),
                max_runners: p.max_runners as usize,
                min_idle: p.min_idle as usize,
                can_warm: self
                    .warm_scope(&p.name)
                    .is_some_and(|s| !self.scope_backing_off(&p.name, &s, now)),
                backing_off: self
                    .backoff
                    .is_backing_off(&BackoffKey::Pool(p.name.clone()), now),
            })
            .collect();
        let launchable = |job: &super::queue::QueuedJob| {
            self.job_scope(&job.repository)
                .is_some_and(|s| !self.scope_backing_off(&job.pool, &s, now))
        };
        let host_max = self.config.limits.max_runners as usize;
        let policy = PlanPolicy {
            policy: &self.policy,
            runner_repos: &self.runner_repos,
            elsewhere: &self.elsewhere,
        };
        let mut launches = plan_with_policy(
            &limits,
            &self.queue,
            &self.runners,
            host_max,
            &launchable,
            &policy,
        );
        let held = self.slots_held() + launches.len();
        let room = host_max.saturating_sub(held);
        let prewarm = std::mem::take(&mut self.pending_prewarm);
        for pool in prewarm
            .into_iter()
            .filter(|p| {
                limits
                    .iter()
                    .any(|l| &l.name == p && l.can_warm && !l.backing_off)
            })
            .take(room)
        {
            let used =
                self.pool_slots_held(&pool) + launches.iter().filter(|l| l.pool() == pool).count();
            if self
                .config
                .pool(&pool)
                .is_some_and(|p| used < p.max_runners as usize)
            {
                launches.push(Launch::Warm { pool });
            }
        }
        for launch in launches {
            self.start_launch(launch, now, ids);
        }
    }

    /// Whether any pool that could use a runner has room: the planner walks each pool's queue,
    /// which a long queue behind full pools would make every step pay for.
    fn wants_room(&self) -> bool {
        if self.slots_held() >= self.config.limits.max_runners as usize {
            return false;
        }
        self.config.pools.iter().any(|p| {
            let wanted = self.queue.pool_len(&p.name) > 0
                || p.min_idle > 0
                || self.pending_prewarm.contains(&p.name);
            wanted && self.pool_slots_held(&p.name) < p.max_runners as usize
        })
    }

    fn slots_held(&self) -> usize {
        self.runners
            .values()
            .filter(|r| r.state.holds_slot())
            .count()
    }

    fn pool_slots_held(&self, pool: &str) -> usize {
        self.runners
            .values()
            .filter(|r| r.pool == pool && r.state.holds_slot())
            .count()
    }

    fn scope_backing_off(&self, pool: &str, scope: &RunnerScope, now: DateTime<Utc>) -> bool {
        self.backoff.is_backing_off(
            &BackoffKey::Scope {
                pool: pool.to_owned(),
                scope: scope.api_path(),
            },
            now,
        )
    }

    /// Where a warm runner of `pool` registers: the organization, or the pool's repository.
    pub(super) fn warm_scope(&self, pool: &str) -> Option<RunnerScope> {
        match self.config.github.registration {
            Registration::Organization => self
                .config
                .github
                .organization
                .as_deref()
                .map(RunnerScope::organization),
            Registration::Repository => self
                .config
                .pool(pool)?
                .repository
                .as_deref()
                .and_then(RunnerScope::repository),
        }
    }

    /// Where a runner for a job of `repository` registers: the repository, or with
    /// organization registration the organization that owns it (DESIGN §12: a GitHub App
    /// installed on several organizations registers each job's runner with its own owner).
    pub(super) fn job_scope(&self, repository: &str) -> Option<RunnerScope> {
        let repo_scope = RunnerScope::repository(repository)?;
        match self.config.github.registration {
            Registration::Organization => match repo_scope {
                RunnerScope::Repository { owner, .. } => Some(RunnerScope::organization(&owner)),
                org => Some(org),
            },
            Registration::Repository => Some(repo_scope),
        }
    }

    /// A new runner record in `requested`, handed out as [`Effect::Launch`]: the outside
    /// records it durably before anything exists at GitHub or Docker.
    fn start_launch(&mut self, launch: Launch, now: DateTime<Utc>, ids: &mut dyn RunnerIds) {
        let (pool_name, launched_for, labels, scope, repository) = match &launch {
            Launch::ForJob { pool, job_id } => {
                let Some(job) = self.queue.get(*job_id) else {
                    return;
                };
                (
                    pool.clone(),
                    Some(*job_id),
                    job.labels.clone(),
                    self.job_scope(&job.repository),
                    Some(job.repository.clone()),
                )
            }
            Launch::Warm { pool } => {
                let labels = self
                    .config
                    .pool(pool)
                    .map(|p| p.labels.clone())
                    .unwrap_or_default();
                (pool.clone(), None, labels, self.warm_scope(pool), None)
            }
        };
        let (Some(_), Some(scope)) = (self.config.pool(&pool_name), scope) else {
            return;
        };
        let id = ids.next_runner_id();
        let runner = Runner {
            name: Runner::name_for(&self.config.runner_name_prefix(), &pool_name, &id),
            id: id.clone(),
            pool: pool_name,
            state: RunnerState::Requested,
            failure_reason: None,
            labels,
            scope: scope.api_path(),
            github_runner_id: None,
            container_id: None,
            instance: self.config.server.instance_id.clone(),
            launched_for,
            job_id: None,
            draining: false,
            created_at: now,
            idle_at: None,
            busy_at: None,
            finished_at: None,
            removed_at: None,
            updated_at: now,
        };
        self.known_scopes.removed_at(&runner.scope, now);
        self.effects.push(Effect::Launch(runner.clone()));
        if let Some(repository) = repository {
            self.runner_repos.insert(id.clone(), repository);
        }
        self.runners.insert(id, runner);
    }

    /// `push` / `pull_request` pre-warm one runner in pools that ask for it, when they have
    /// none idle or on the way.
    pub(super) fn prewarm(&mut self, event: &str) {
        let wanting: Vec<String> = self
            .config
            .pools
            .iter()
            .filter(|p| p.prewarm_on.iter().any(|e| e == event))
            .filter(|p| {
                !self
                    .runners
                    .values()
                    .any(|r| r.pool == p.name && r.state.is_supply() && !r.draining)
            })
            .map(|p| p.name.clone())
            .collect();
        self.pending_prewarm.extend(wanting);
    }
}
