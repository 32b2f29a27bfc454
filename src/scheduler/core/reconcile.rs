//! Matching the records with what Docker and GitHub say: the state restored at start, polls
//! of starting runners, and full reconciliations (DESIGN §8).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::outcomes::parse_scope;
use super::{Core, Effect, seconds_between};
use crate::docker::ManagedContainer;
use crate::domain::{Job, NameOwnership, Runner, RunnerState};
use crate::github::{RegisteredRunner, RunnerScope};

/// Full reconciliation against Docker and GitHub.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// A reconciliation that could not reach Docker is tried again after this.
const RECONCILE_RETRY: Duration = Duration::from_secs(5);
/// How often GitHub is asked whether starting runners are online yet.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

impl Core {
    /// The database's state at start; a reconciliation follows at once.
    pub(super) fn restore(
        &mut self,
        jobs: Vec<Job>,
        runners: Vec<Runner>,
        scopes: Vec<String>,
        now: DateTime<Utc>,
    ) {
        // A crash may have left registrations anywhere runnerhub registered: sweep them all.
        for scope in &scopes {
            self.known_scopes.removed_at(scope, now);
        }
        for job in &jobs {
            self.on_job(job, now);
        }
        for runner in runners {
            if runner.instance != self.config.server.instance_id {
                // Recorded under another `server.instance_id` (the database was served with
                // another configuration before): its containers carry that id, not ours.
                continue;
            }
            if runner.state == RunnerState::Requested {
                // Its launch task died with the previous process, perhaps after the container
                // started and took a job: the container list decides.
                self.unconfirmed.insert(runner.id.clone());
            }
            self.runners.insert(runner.id.clone(), runner);
        }
        self.restore_runner_repos(&jobs);
        tracing::info!(
            queued = self.queue.len(),
            runners = self.runners.len(),
            "scheduler state restored"
        );
        self.reconcile(now);
    }

    /// Asks GitHub which starting runners are online (only while some are starting).
    pub(super) fn poll_starting_runners(&mut self, now: DateTime<Utc>) {
        if self.next_poll().is_none_or(|at| at > now) {
            return;
        }
        let scopes = dedup(self.starting_scopes().collect());
        self.polling = true;
        self.last_poll = Some(now);
        self.effects.push(Effect::ListGithubRunners {
            scopes,
            full: false,
        });
    }

    fn starting_scopes(&self) -> impl Iterator<Item = RunnerScope> + '_ {
        self.runners
            .values()
            .filter(|r| r.state == RunnerState::Creating)
            .filter_map(|r| parse_scope(&r.scope))
    }

    pub(super) fn next_poll(&self) -> Option<DateTime<Utc>> {
        if self.polling || self.starting_scopes().next().is_none() {
            return None;
        }
        // The first poll a poll interval after the earliest start: nothing is online sooner.
        let first = self
            .runners
            .values()
            .filter(|r| r.state == RunnerState::Creating)
            .map(|r| r.created_at)
            .min()?;
        Some(self.last_poll.unwrap_or(first) + POLL_INTERVAL)
    }

    pub(super) fn next_reconcile_at(&self) -> Option<DateTime<Utc>> {
        if self.reconciling || self.config.pools.is_empty() {
            return None;
        }
        Some(self.next_reconcile.unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// Starts a full reconciliation: Docker containers first, then GitHub registrations.
    pub(super) fn reconcile(&mut self, now: DateTime<Utc>) {
        if self.reconciling || self.config.pools.is_empty() {
            return;
        }
        self.reconciling = true;
        self.next_reconcile = Some(now + RECONCILE_INTERVAL);
        self.effects.push(Effect::ListContainers);
    }

    pub(super) fn on_containers(
        &mut self,
        listed: Result<Vec<ManagedContainer>, String>,
        now: DateTime<Utc>,
    ) {
        let containers = match listed {
            Ok(containers) => containers,
            Err(error) => {
                self.reconciling = false;
                // Docker is likely down or restarting: look again soon, not in a minute.
                self.next_reconcile = Some(now + RECONCILE_RETRY);
                tracing::warn!(%error, "reconcile: cannot list Docker containers; retrying");
                return;
            }
        };
        let instance = self.config.server.instance_id.clone();
        let mine: Vec<&ManagedContainer> = containers
            .iter()
            .filter(|c| c.instance.as_deref() == Some(instance.as_str()))
            .collect();
        let container_of = |id: &str| mine.iter().find(|c| c.runner_id.as_deref() == Some(id));
        // Runners restored mid-launch: a running container is adopted (it may be running a
        // job: killing it would kill the job); none, or a stopped one, means the launch died.
        for id in std::mem::take(&mut self.unconfirmed) {
            let container = container_of(&id).map(|c| (c.id.clone(), c.running));
            let Some(runner) = self.runners.get_mut(&id) else {
                continue;
            };
            if runner.state != RunnerState::Requested {
                continue;
            }
            match container {
                Some((container_id, true)) => {
                    tracing::info!(runner = %runner.name, "adopting a runner whose launch a restart interrupted");
                    runner.container_id = Some(container_id);
                    runner.advance(RunnerState::Creating, now);
                }
                Some((container_id, false)) => {
                    runner.container_id = Some(container_id);
                    runner.fail("launch interrupted by a restart", now);
                }
                None => {
                    runner.fail("launch interrupted by a restart", now);
                }
            }
            self.mark(&id);
        }
        // Containers no live record owns: orphans.
        let orphans: Vec<Effect> = mine
            .iter()
            .filter(|c| {
                !c.runner_id
                    .as_deref()
                    .and_then(|id| self.runners.get(id))
                    .is_some_and(|r| r.state != RunnerState::Removed)
            })
            .map(|c| Effect::RemoveContainer {
                container_id: c.id.clone(),
                name: c.name.clone(),
            })
            .collect();
        self.effects.extend(orphans);
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
            .filter_map(|r| match container_of(&r.id) {
                Some(c) if c.running => None,
                Some(c) => Some((r.id.clone(), c.exit_code)),
                None => Some((r.id.clone(), None)),
            })
            .collect();
        for (id, exit_code) in ended {
            self.container_ended(&id, exit_code, false, now);
        }
        // Then GitHub: the scopes of live runners, where warm runners go, and the scopes a
        // registration may have leaked at (see `scopes.rs`).
        let mut scopes: Vec<RunnerScope> = self
            .runners
            .values()
            .map(|r| r.scope.as_str())
            .chain(self.known_scopes.due(now))
            .filter_map(parse_scope)
            .collect();
        scopes.extend(
            self.config
                .pools
                .iter()
                .filter_map(|p| self.warm_scope(&p.name)),
        );
        let scopes = dedup(scopes);
        if scopes.is_empty() {
            self.reconciling = false;
        } else {
            self.effects
                .push(Effect::ListGithubRunners { scopes, full: true });
        }
    }

    pub(super) fn on_github_runners(
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
                Ok(listed) => {
                    if full {
                        self.known_scopes.listed(&scope.api_path(), now);
                    }
                    listed
                }
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
                // An adopted runner's launch never reported its GitHub id.
                runner.github_runner_id.get_or_insert(registered.id);
                let to = if registered.busy {
                    RunnerState::Busy
                } else if registered.status == "online" {
                    RunnerState::Idle
                } else {
                    return;
                };
                if runner.advance(to, now) {
                    let pool = runner.pool.clone();
                    if to == RunnerState::Idle {
                        let seconds = seconds_between(runner.created_at, now);
                        tracing::info!(runner = %runner.name, pool = %runner.pool, "runner online");
                        self.effects.push(Effect::RunnerOnline {
                            pool: runner.pool.clone(),
                            seconds,
                        });
                    }
                    let id = runner.id.clone();
                    self.backoff.online(&pool);
                    self.mark(&id);
                }
            }
            // Failed before its launch reported the id (a restart): the teardown needs it.
            Some(runner) if runner.github_runner_id.is_none() => {
                runner.github_runner_id = Some(registered.id);
            }
            Some(_) => {}
            None if full
                && Runner::name_ownership(&registered.name, &self.config.runner_name_prefix())
                    != NameOwnership::Foreign =>
            {
                // Registered by runnerhub, but no live record here: left behind by a crash.
                // An old-style name is deleted only if the database recorded it (effects.rs).
                self.effects.push(Effect::RemoveRegistration {
                    scope: scope.clone(),
                    github_runner_id: registered.id,
                    name: registered.name.clone(),
                });
            }
            None => {}
        }
    }
}

fn dedup(mut scopes: Vec<RunnerScope>) -> Vec<RunnerScope> {
    scopes.sort_by_key(|s| s.api_path());
    scopes.dedup();
    scopes
}
