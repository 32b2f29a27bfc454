//! The scheduler's reactions to what its tasks, Docker and GitHub report, and its clocks.

use chrono::{DateTime, Utc};

use super::actor::{Event, Scheduler, seconds_since};
use super::launcher::Teardown;
use crate::docker::{ContainerEvent, ManagedContainer};
use crate::domain::RunnerState;
use crate::github::{RegisteredRunner, RunnerScope};

/// A reconciliation that could not reach Docker is tried again after this.
const RECONCILE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Scheduler {
    pub(super) fn on_event(&mut self, event: Event) {
        let now = Utc::now();
        match event {
            Event::Launched { runner_id, result } => self.on_launched(&runner_id, result, now),
            Event::TornDown { runner_id, outcome } => self.on_torn_down(&runner_id, outcome, now),
            Event::GithubRunners { full, observed } => self.on_github_runners(full, observed, now),
            Event::Containers(Ok(containers)) => self.on_containers(containers, now),
            Event::Containers(Err(error)) => {
                self.reconciling = false;
                // Docker is likely down or restarting: look again soon, not in a minute.
                self.reconcile_again_in(RECONCILE_RETRY);
                tracing::warn!(%error, "reconcile: cannot list Docker containers; retrying");
            }
            Event::Docker(event) => self.on_docker_event(event, now),
            Event::DockerStreamLost => {
                // Events may have been missed while the stream was down.
                self.reconcile();
            }
        }
    }

    fn on_launched(
        &mut self,
        id: &str,
        result: Result<super::launcher::Launched, super::launcher::LaunchFailure>,
        now: DateTime<Utc>,
    ) {
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match result {
            Ok(up) => {
                runner.github_runner_id = Some(up.github_runner_id);
                runner.container_id = Some(up.container_id);
                runner.advance(RunnerState::Creating, now);
                tracing::info!(runner = %runner.name, pool = %runner.pool, "runner container started");
                let pool = runner.pool.clone();
                self.record_launch_success(&pool);
            }
            Err(failure) => {
                runner.github_runner_id = failure.github_runner_id;
                runner.fail(failure.message.clone(), now);
                tracing::warn!(runner = %runner.name, pool = %runner.pool, reason = failure.reason, "{}", failure.message);
                let pool = runner.pool.clone();
                self.record_launch_failure(&pool, failure.reason);
            }
        }
        self.mark(id);
    }

    fn on_torn_down(&mut self, id: &str, outcome: Teardown, now: DateTime<Utc>) {
        self.teardown_in_flight.remove(id);
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match outcome {
            Teardown::Done => {
                runner.advance(RunnerState::Removed, now);
                tracing::info!(runner = %runner.name, pool = %runner.pool, "runner removed");
            }
            Teardown::Busy if !runner.state.is_terminal() => {
                // It took a job while we were draining it: let the job finish.
                runner.draining = false;
                runner.advance(RunnerState::Busy, now);
            }
            Teardown::Busy => {
                tracing::info!(runner = %runner.name, "GitHub still reports the runner busy; retrying later")
            }
            Teardown::Retry(error) => {
                tracing::warn!(runner = %runner.name, %error, "runner teardown failed; retrying")
            }
        }
        self.mark(id);
    }

    fn on_docker_event(&mut self, event: ContainerEvent, now: DateTime<Utc>) {
        let (runner_id, exit_code, oom, gone) = match event {
            ContainerEvent::Started { .. } => return,
            ContainerEvent::Exited {
                runner_id,
                exit_code,
                oom,
                ..
            } => (runner_id, exit_code, oom, false),
            ContainerEvent::Destroyed { runner_id, .. } => (runner_id, None, false, true),
        };
        let Some(id) = runner_id else { return };
        self.container_ended(&id, exit_code, oom, now);
        if gone && let Some(runner) = self.runners.get_mut(&id) {
            runner.container_id = None;
        }
    }

    /// A runner's container stopped. Busy: its job is over (the job's state still comes from
    /// webhooks). Before that: it crashed, and the job it was for needs another runner.
    pub(super) fn container_ended(
        &mut self,
        id: &str,
        exit_code: Option<i64>,
        oom: bool,
        now: DateTime<Utc>,
    ) {
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match runner.state {
            RunnerState::Busy => {
                runner.advance(RunnerState::Finished, now);
            }
            RunnerState::Creating | RunnerState::Idle if !runner.draining => {
                let why = if oom {
                    "container was killed: out of memory".to_owned()
                } else {
                    format!(
                        "container exited (code {}) before taking a job",
                        exit_code.map_or("unknown".into(), |c| c.to_string())
                    )
                };
                tracing::warn!(runner = %runner.name, pool = %runner.pool, "{why}");
                runner.fail(why, now);
                let pool = runner.pool.clone();
                self.record_launch_failure(&pool, "crashed");
            }
            RunnerState::Creating | RunnerState::Idle => {
                runner.advance(RunnerState::Finished, now);
            }
            _ => return,
        }
        self.mark(id);
    }

    /// Bootstrap and idle timeouts.
    pub(super) fn enforce_timeouts(&mut self, now: DateTime<Utc>) {
        let mut failed = Vec::new();
        for runner in self.runners.values_mut() {
            let Some(pool) = self.config.pool(&runner.pool) else {
                continue;
            };
            let age = |since: DateTime<Utc>| (now - since).to_std().unwrap_or_default();
            match runner.state {
                RunnerState::Requested | RunnerState::Creating
                    if age(runner.created_at) > pool.bootstrap_timeout =>
                {
                    runner.fail(
                        format!(
                            "not online within bootstrap_timeout ({})",
                            humantime::format_duration(pool.bootstrap_timeout)
                        ),
                        now,
                    );
                    failed.push((runner.id.clone(), runner.pool.clone()));
                }
                RunnerState::Idle
                    if !runner.draining
                        && runner.idle_at.is_some_and(|at| age(at) > pool.idle_timeout) =>
                {
                    tracing::info!(runner = %runner.name, pool = %runner.pool, "idle timeout: removing runner");
                    runner.draining = true;
                    runner.updated_at = now;
                    failed.push((runner.id.clone(), String::new()));
                }
                _ => {}
            }
        }
        for (id, pool) in failed {
            if !pool.is_empty() {
                self.record_launch_failure(&pool, "bootstrap_timeout");
            }
            self.mark(&id);
        }
    }

    /// Asks GitHub which starting runners are online (only while some are starting).
    pub(super) fn poll_starting_runners(&mut self) {
        if self.polling {
            return;
        }
        let mut scopes: Vec<RunnerScope> = self
            .runners
            .values()
            .filter(|r| r.state == RunnerState::Creating)
            .filter_map(|r| super::launcher::parse_scope(&r.scope))
            .collect();
        scopes.sort_by_key(|s| s.api_path());
        scopes.dedup();
        if !scopes.is_empty() {
            self.polling = true;
            self.observe_github(scopes, false);
        }
    }

    pub(super) fn observe_github(&self, scopes: Vec<RunnerScope>, full: bool) {
        let (github, events) = (self.deps.github.clone(), self.events.clone());
        self.tasks.spawn(async move {
            let mut observed = Vec::with_capacity(scopes.len());
            for scope in scopes {
                let result = github.list_runners(&scope).await.map_err(|e| e.to_string());
                observed.push((scope, result));
            }
            let _ = events.send(Event::GithubRunners { full, observed });
        });
    }

    fn on_github_runners(
        &mut self,
        full: bool,
        observed: Vec<(RunnerScope, Result<Vec<RegisteredRunner>, String>)>,
        now: DateTime<Utc>,
    ) {
        if full {
            self.reconciling = false;
        } else {
            self.polling = false;
        }
        for (scope, result) in observed {
            let listed = match result {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::warn!(%scope, %error, "cannot list runners at GitHub");
                    continue;
                }
            };
            for registered in listed {
                self.on_registered_runner(&scope, &registered, full, now);
            }
        }
    }

    fn on_registered_runner(
        &mut self,
        scope: &RunnerScope,
        registered: &RegisteredRunner,
        full: bool,
        now: DateTime<Utc>,
    ) {
        let ours = self
            .runners
            .values_mut()
            .find(|r| r.name == registered.name);
        match ours {
            Some(runner) if !runner.state.is_terminal() => {
                let to = if registered.busy {
                    RunnerState::Busy
                } else if registered.status == "online" {
                    RunnerState::Idle
                } else {
                    return;
                };
                if runner.advance(to, now) {
                    if to == RunnerState::Idle {
                        let wait = seconds_since(runner.created_at, now);
                        metrics::histogram!(crate::metrics::QUEUED_TO_RUNNER_IDLE_SECONDS, "pool" => runner.pool.clone()).record(wait);
                        tracing::info!(runner = %runner.name, pool = %runner.pool, "runner online");
                    }
                    let id = runner.id.clone();
                    self.mark(&id);
                }
            }
            Some(_) => {}
            None if full && registered.name.starts_with("runnerhub-") => {
                // Registered by runnerhub, but no live record here: left behind by a crash.
                self.orphan_registration(scope.clone(), registered.id, registered.name.clone());
            }
            None => {}
        }
    }

    fn orphan_registration(&self, scope: RunnerScope, github_id: i64, name: String) {
        let (store, github, docker) = (
            self.deps.store.clone(),
            self.deps.github.clone(),
            self.deps.docker.clone(),
        );
        let instance = self.config.server.instance_id.clone();
        self.tasks.spawn(async move {
            // A live record under another `server.instance_id` owns it: not ours to remove.
            if let Ok(Some(record)) = store.runner_by_name(&name).await
                && record.instance != instance
                && !record.state.is_terminal()
            {
                return;
            }
            tracing::info!(runner = %name, %scope, "removing a GitHub runner registration no record owns");
            let request = super::launcher::TeardownRequest { scope: Some(scope), github_runner_id: Some(github_id), container_id: None };
            let outcome = super::launcher::teardown(github, docker, request).await;
            if outcome != Teardown::Done {
                tracing::warn!(runner = %name, ?outcome, "orphan registration not removed yet; next reconcile retries");
            }
        });
    }

    /// Starts a full reconciliation: Docker containers and GitHub registrations against records.
    pub(super) fn reconcile(&mut self) {
        if self.reconciling || self.config.pools.is_empty() {
            return;
        }
        self.reconciling = true;
        self.reconcile_again_in(super::actor::RECONCILE_INTERVAL);
        let (docker, events) = (self.deps.docker.clone(), self.events.clone());
        self.tasks.spawn(async move {
            let result = docker.list_managed().await.map_err(|e| e.to_string());
            let _ = events.send(Event::Containers(result));
        });
    }

    fn on_containers(&mut self, containers: Vec<ManagedContainer>, now: DateTime<Utc>) {
        let instance = self.config.server.instance_id.clone();
        let mine: Vec<&ManagedContainer> = containers
            .iter()
            .filter(|c| c.instance.as_deref() == Some(instance.as_str()))
            .collect();
        // Containers no live record owns: orphans.
        for container in &mine {
            let owned = container
                .runner_id
                .as_deref()
                .and_then(|id| self.runners.get(id))
                .is_some_and(|r| r.state != RunnerState::Removed);
            if !owned {
                tracing::info!(container = %container.name, "removing an orphaned runner container");
                let (docker, id) = (self.deps.docker.clone(), container.id.clone());
                self.tasks.spawn(async move {
                    if let Err(error) = docker.remove(&id).await {
                        tracing::warn!(container = %id, %error, "cannot remove orphaned container");
                    }
                });
            }
        }
        // Records whose container stopped or vanished while we were not looking.
        let ended: Vec<(String, Option<i64>)> = self
            .runners
            .values()
            .filter(|r| {
                matches!(
                    r.state,
                    RunnerState::Creating | RunnerState::Idle | RunnerState::Busy
                )
            })
            .filter_map(|r| {
                let container = mine
                    .iter()
                    .find(|c| c.runner_id.as_deref() == Some(r.id.as_str()));
                match container {
                    Some(c) if c.running => None,
                    Some(c) => Some((r.id.clone(), c.exit_code)),
                    None => Some((r.id.clone(), None)),
                }
            })
            .collect();
        for (id, exit_code) in ended {
            self.container_ended(&id, exit_code, false, now);
        }
        // Then GitHub: every scope we have registered runners in, plus where warm runners go.
        let mut scopes: Vec<RunnerScope> = self
            .runners
            .values()
            .filter_map(|r| super::launcher::parse_scope(&r.scope))
            .collect();
        scopes.extend(
            self.config
                .pools
                .iter()
                .filter_map(|p| self.warm_scope(&p.name)),
        );
        scopes.sort_by_key(|s| s.api_path());
        scopes.dedup();
        if scopes.is_empty() {
            self.reconciling = false;
        } else {
            self.observe_github(scopes, true);
        }
    }

    /// `push` / `pull_request` pre-warm one runner in pools that ask for it.
    pub(super) fn prewarm(&mut self, event: &str) {
        for pool in self
            .config
            .pools
            .iter()
            .filter(|p| p.prewarm_on.iter().any(|e| e == event))
        {
            let warm_or_starting = self
                .runners
                .values()
                .filter(|r| r.pool == pool.name && r.state.is_supply() && !r.draining)
                .count();
            if warm_or_starting == 0 {
                tracing::info!(pool = %pool.name, event, "pre-warming a runner");
                self.pending_prewarm.insert(pool.name.clone());
            }
        }
    }
}
