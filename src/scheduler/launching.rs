//! Bringing runners up and taking them down: the scheduler's side of launches and teardowns
//! (the slow calls themselves run in `launcher` tasks that report back).

use std::time::{Duration, Instant};

use chrono::Utc;

use super::actor::{Event, Scheduler, runner_event};
use super::plan::Launch;
use crate::config::Registration;
use crate::domain::{Runner, RunnerId, RunnerState};
use std::sync::Arc;

use crate::docker::ContainerRuntime;
use crate::github::{GithubApi, RunnerScope};

/// Teardowns that failed are retried this often.
const TEARDOWN_RETRY: Duration = Duration::from_secs(10);
/// Launch backoff after consecutive failures: 2^n seconds, capped.
const MAX_LAUNCH_BACKOFF: Duration = Duration::from_secs(60);

impl Scheduler {
    /// Runs a slow GitHub/Docker call in its own task; its result comes back as an event, so
    /// the scheduler never waits on the outside world.
    fn spawn_side_effect<Work, Done>(&self, work: Work)
    where
        Work: FnOnce(Arc<dyn GithubApi>, Arc<dyn ContainerRuntime>) -> Done + Send + 'static,
        Done: std::future::Future<Output = Event> + Send + 'static,
    {
        let (github, docker, events, shutdown) = (
            self.deps.github.clone(),
            self.deps.docker.clone(),
            self.events.clone(),
            self.shutdown.clone(),
        );
        self.tasks.spawn(async move {
            tokio::select! {
                done = work(github, docker) => { let _ = events.send(done); }
                _ = shutdown.cancelled() => {}
            }
        });
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

    pub(super) fn job_scope(&self, repository: &str) -> Option<RunnerScope> {
        match self.config.github.registration {
            Registration::Organization => self
                .config
                .github
                .organization
                .as_deref()
                .map(RunnerScope::organization),
            Registration::Repository => RunnerScope::repository(repository),
        }
    }

    /// Records the runner (durably, before any side effect), then starts its launch task.
    pub(super) async fn start_launch(&mut self, launch: Launch) {
        let (pool_name, launched_for, labels, scope) = match &launch {
            Launch::ForJob { pool, job_id } => {
                let Some(job) = self.queue.get(*job_id) else {
                    return;
                };
                (
                    pool.clone(),
                    Some(*job_id),
                    job.labels.clone(),
                    self.job_scope(&job.repository),
                )
            }
            Launch::Warm { pool } => {
                let labels = self
                    .config
                    .pool(pool)
                    .map(|p| p.labels.clone())
                    .unwrap_or_default();
                (pool.clone(), None, labels, self.warm_scope(pool))
            }
        };
        let (Some(pool), Some(scope)) = (self.config.pool(&pool_name).cloned(), scope) else {
            return;
        };
        let id = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        let runner = Runner {
            name: Runner::name_for(&pool.name, &id),
            id: id.clone(),
            pool: pool.name.clone(),
            state: RunnerState::Requested,
            failure_reason: None,
            labels: labels.clone(),
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
        if let Err(error) = self.deps.store.save_runner(&runner).await {
            tracing::error!(%error, pool = %pool.name, "cannot record a new runner; not launching");
            return;
        }
        tracing::info!(runner = %runner.name, pool = %pool.name, job.id = ?launched_for, %scope, "launching runner");
        self.deps.bus.publish(runner_event(&runner));
        let request = super::launcher::LaunchRequest {
            runner_id: id.clone(),
            name: runner.name.clone(),
            labels,
            scope,
            runner_group_id: self.config.github.runner_group_id,
            pool,
            instance: self.config.server.instance_id.clone(),
        };
        self.runners.insert(id.clone(), runner);
        self.spawn_side_effect(move |github, docker| async move {
            Event::Launched {
                runner_id: id,
                result: super::launcher::launch(github, docker, request).await,
            }
        });
    }

    pub(super) fn record_launch_failure(&mut self, pool: &str, reason: &'static str) {
        metrics::counter!(crate::metrics::RUNNER_LAUNCH_FAILURES_TOTAL, "pool" => pool.to_owned(), "reason" => reason)
            .increment(1);
        let backoff = self.backoff.entry(pool.to_owned()).or_default();
        backoff.failures += 1;
        let delay = Duration::from_secs(1 << backoff.failures.min(6)).min(MAX_LAUNCH_BACKOFF);
        backoff.until = Some(Instant::now() + delay);
    }

    pub(super) fn record_launch_success(&mut self, pool: &str) {
        self.backoff.remove(pool);
    }

    /// Starts teardown tasks for runners that owe one (finished, failed, draining).
    pub(super) fn start_teardowns(&mut self) {
        let due: Vec<RunnerId> = self
            .runners
            .values()
            .filter(|r| owes_teardown(r))
            .filter(|r| !self.teardown_in_flight.contains(&r.id))
            .filter(|r| {
                self.last_teardown_attempt
                    .get(&r.id)
                    .is_none_or(|at| at.elapsed() >= TEARDOWN_RETRY)
            })
            .map(|r| r.id.clone())
            .collect();
        for id in due {
            let runner = &self.runners[&id];
            let request = super::launcher::TeardownRequest {
                scope: super::launcher::parse_scope(&runner.scope),
                github_runner_id: runner.github_runner_id,
                container_id: runner
                    .container_id
                    .clone()
                    .or_else(|| Some(runner.name.clone())),
            };
            self.teardown_in_flight.insert(id.clone());
            self.last_teardown_attempt
                .insert(id.clone(), Instant::now());
            self.spawn_side_effect(move |github, docker| async move {
                Event::TornDown {
                    runner_id: id,
                    outcome: super::launcher::teardown(github, docker, request).await,
                }
            });
        }
    }
}

/// Finished and failed runners are taken down; a draining one once it is up and not busy
/// (a launch in flight reports first; a busy one finishes its job first).
fn owes_teardown(r: &Runner) -> bool {
    match r.state {
        RunnerState::Finished | RunnerState::Failed => true,
        RunnerState::Creating | RunnerState::Idle => r.draining,
        RunnerState::Requested | RunnerState::Busy | RunnerState::Removed => false,
    }
}
