//! The decision core: every scheduling decision the daemon makes, as plain synchronous Rust
//! (DESIGN §11).
//!
//! Inputs and the current time go in ([`Core::handle`]), effects come out ([`Effect`]): which
//! job gets the next runner, pool and host capacity, warm pools and pre-warming, bootstrap and
//! idle timeouts, launch backoff, aging, drains, replacing a runner that crashed, when to look
//! at Docker and GitHub again. Nothing here awaits, reads a clock, spawns, or touches a socket,
//! a file or a database: the daemon's scheduler task carries the effects out and reports their
//! outcomes back as inputs, and `runnerhub replay` drives the very same core in virtual time.
//! [`Core::next_deadline`] says when the core wants a [`Input::Tick`], so no one polls it.

mod backoff;
mod jobs;
mod launches;
pub mod outcomes;
pub mod plan;
pub mod policy;
pub mod queue;
mod reconcile;
mod refusals;
mod runner_events;
mod scopes;
pub mod status;
mod teardowns;
mod timeouts;
pub mod wait;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::docker::ManagedContainer;
use crate::domain::{Job, JobId, JobOutcome, Runner, RunnerId, RunnerState};
use crate::github::{RegisteredRunner, RunnerScope};

pub use self::reconcile::{POLL_INTERVAL, RECONCILE_INTERVAL};

use self::backoff::Backoffs;
use self::outcomes::{LaunchFailure, Launched, Teardown, TeardownRequest};
use self::policy::{Policy, RunnersElsewhere};
use self::queue::JobQueue;
use self::refusals::UnknownScopes;
use self::scopes::KnownScopes;
use self::status::{PoolStatus, Stalls};

/// Where new runner ids come from: UUIDs in the daemon, a counter in replay. The core takes no
/// randomness it is not given.
pub trait RunnerIds {
    fn next_runner_id(&mut self) -> RunnerId;
}

/// Everything the core learns from the outside world.
#[derive(Debug, Clone)]
pub enum Input {
    /// The database's jobs and live runners at start, and every scope runners were
    /// registered at (where a registration may have leaked).
    Restored {
        jobs: Vec<Job>,
        runners: Vec<Runner>,
        scopes: Vec<String>,
    },
    /// A processed delivery (or catch-up) changed a job.
    Job(Box<Job>),
    /// A `push` or `pull_request` arrived: pools that pre-warm on it may want a runner.
    Prewarm { event: String },
    /// The new runner of an [`Effect::Launch`] could not be recorded, so it was not launched.
    LaunchNotRecorded { runner_id: RunnerId },
    Launched {
        runner_id: RunnerId,
        result: Result<Launched, LaunchFailure>,
    },
    TornDown {
        runner_id: RunnerId,
        outcome: Teardown,
    },
    /// A runner's container stopped (Docker's `die`).
    ContainerExited {
        runner_id: RunnerId,
        exit_code: Option<i64>,
        oom: bool,
    },
    /// A runner's container was removed.
    ContainerRemoved { runner_id: RunnerId },
    /// Docker's event stream was lost: events may have been missed.
    DockerStreamLost,
    /// Answer to [`Effect::ListContainers`].
    Containers(Result<Vec<ManagedContainer>, String>),
    /// Answer to [`Effect::ListGithubRunners`].
    GithubRunners {
        full: bool,
        observed: Vec<(RunnerScope, Result<Vec<RegisteredRunner>, String>)>,
    },
    /// An operator asked to remove a runner (drain: now when idle, after its job when busy).
    Drain { runner_id: RunnerId },
    /// A reloaded configuration: pools, limits and rules apply from this step on.
    Reconfigured(Arc<Config>),
    /// In a fleet, another instance claimed this queued job: it launches for it, this one
    /// forgets it (it comes back if the claim is released).
    ClaimedElsewhere { job_id: JobId },
    /// In a fleet, the other instances' live runners (and claims not yet a runner), read from
    /// the database: quotas and fair share count the whole fleet.
    RunnersElsewhere(RunnersElsewhere),
    /// In a fleet, launches stop while this instance cannot reach the database (its claims
    /// would fail, and the others may soon take its jobs over), and resume after.
    LaunchesPaused(bool),
    /// The time of [`Core::next_deadline`] has come.
    Tick,
}

/// What the core asks the outside world to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Record the runner's new state, then publish it.
    SaveRunner(Runner),
    /// Record this new runner, then register it and start its container; report
    /// [`Input::Launched`] (or [`Input::LaunchNotRecorded`] when it could not be recorded).
    Launch(Runner),
    /// Deregister the runner and remove its container; report [`Input::TornDown`].
    Teardown {
        runner_id: RunnerId,
        request: TeardownRequest,
    },
    /// Report [`Input::Containers`].
    ListContainers,
    /// Remove a container no live runner owns.
    RemoveContainer { container_id: String, name: String },
    /// Report [`Input::GithubRunners`] (`full`: a reconciliation, else a poll of starting runners).
    ListGithubRunners {
        scopes: Vec<RunnerScope>,
        full: bool,
    },
    /// Delete a GitHub registration named like ours that no record here owns (unless a live
    /// record under another instance id does).
    RemoveRegistration {
        scope: RunnerScope,
        github_runner_id: i64,
        name: String,
    },
    /// Metric: a job waited this long for its runner.
    JobWaited { pool: String, seconds: f64 },
    /// Metric: a runner came online this long after its launch.
    RunnerOnline { pool: String, seconds: f64 },
    /// Metric: a launch failed.
    LaunchFailed { pool: String, reason: &'static str },
    /// Record that the job gets no runner, for good, and why; publish it. `pool`: the pool
    /// whose queue it left.
    RefuseJob {
        job_id: JobId,
        pool: String,
        outcome: JobOutcome,
        detail: String,
    },
}

/// The scheduler's decisions and the state they need; see the module documentation.
pub struct Core {
    config: Arc<Config>,
    /// Quotas and fair share, compiled from `config`.
    policy: Policy,
    queue: JobQueue,
    runners: HashMap<RunnerId, Runner>,
    /// The repository each runner counts for in quotas and fair share: the job it runs, else
    /// the job it was launched for (warm runners count once they take a job).
    runner_repos: HashMap<RunnerId, String>,
    /// In a fleet, the other instances' runners ([`Input::RunnersElsewhere`]).
    elsewhere: RunnersElsewhere,
    backoff: Backoffs,
    /// Runners whose state changed in this step (saved and published at its end).
    dirty: BTreeSet<RunnerId>,
    teardown_in_flight: HashSet<RunnerId>,
    last_teardown_attempt: HashMap<RunnerId, DateTime<Utc>>,
    /// Runners restored in `requested`: their launch died with the previous process, and only
    /// the container list tells whether it got as far as a running container (then it is
    /// adopted, since it may already run a job) or not (then it failed).
    unconfirmed: HashSet<RunnerId>,
    /// Pools a push asked to pre-warm (one runner each, at the end of this step).
    pending_prewarm: BTreeSet<String>,
    polling: bool,
    last_poll: Option<DateTime<Utc>>,
    reconciling: bool,
    /// When the next full reconciliation is due (`None`: now).
    next_reconcile: Option<DateTime<Utc>>,
    /// Every scope runners were registered at: a full reconciliation sweeps them ([`scopes`]).
    known_scopes: KnownScopes,
    /// No launches ([`Input::LaunchesPaused`]).
    launches_paused: bool,
    /// Pools with queued jobs they cannot launch for (see [`status`]).
    stalls: Stalls,
    /// Scopes GitHub answers registrations 404 for ([`refusals`]).
    unknown_scopes: UnknownScopes,
    effects: Vec<Effect>,
}

impl Core {
    pub fn new(config: Arc<Config>) -> Self {
        Core {
            policy: Policy::new(&config),
            config,
            queue: JobQueue::default(),
            runners: HashMap::new(),
            runner_repos: HashMap::new(),
            elsewhere: RunnersElsewhere::default(),
            backoff: Backoffs::default(),
            dirty: BTreeSet::new(),
            teardown_in_flight: HashSet::new(),
            last_teardown_attempt: HashMap::new(),
            unconfirmed: HashSet::new(),
            pending_prewarm: BTreeSet::new(),
            polling: false,
            last_poll: None,
            reconciling: false,
            next_reconcile: None,
            known_scopes: KnownScopes::default(),
            launches_paused: false,
            stalls: Stalls::default(),
            unknown_scopes: UnknownScopes::default(),
            effects: Vec::new(),
        }
    }

    /// Takes one input at `now`, makes every decision it leads to, and returns the effects.
    pub fn handle(
        &mut self,
        input: Input,
        now: DateTime<Utc>,
        ids: &mut dyn RunnerIds,
    ) -> Vec<Effect> {
        self.handle_all(std::iter::once(input), now, ids)
    }

    /// Takes several inputs that arrived together (a batch of processed deliveries), then
    /// decides once.
    pub fn handle_all(
        &mut self,
        inputs: impl IntoIterator<Item = Input>,
        now: DateTime<Utc>,
        ids: &mut dyn RunnerIds,
    ) -> Vec<Effect> {
        for input in inputs {
            self.apply(input, now);
        }
        self.schedule(now, ids);
        self.check_stalls(now);
        self.start_teardowns(now);
        self.flush();
        std::mem::take(&mut self.effects)
    }

    fn apply(&mut self, input: Input, now: DateTime<Utc>) {
        match input {
            Input::Restored {
                jobs,
                runners,
                scopes,
            } => self.restore(jobs, runners, scopes, now),
            Input::Job(job) => self.on_job(&job, now),
            Input::Prewarm { event } => self.prewarm(&event),
            Input::LaunchNotRecorded { runner_id } => {
                self.runners.remove(&runner_id);
                self.runner_repos.remove(&runner_id);
            }
            Input::Launched { runner_id, result } => self.on_launched(&runner_id, result, now),
            Input::TornDown { runner_id, outcome } => self.on_torn_down(&runner_id, outcome, now),
            Input::ContainerExited {
                runner_id,
                exit_code,
                oom,
            } => self.container_ended(&runner_id, exit_code, oom, now),
            Input::ContainerRemoved { runner_id } => {
                self.container_ended(&runner_id, None, false, now);
                if let Some(runner) = self.runners.get_mut(&runner_id) {
                    runner.container_id = None;
                }
            }
            Input::DockerStreamLost => self.reconcile(now),
            Input::Containers(listed) => self.on_containers(listed, now),
            Input::GithubRunners { full, observed } => self.on_github_runners(full, observed, now),
            Input::Drain { runner_id } => self.drain(&runner_id, now),
            Input::Reconfigured(config) => {
                self.policy = Policy::new(&config);
                self.config = config;
            }
            Input::ClaimedElsewhere { job_id } => {
                self.queue.remove(job_id);
            }
            Input::RunnersElsewhere(elsewhere) => self.elsewhere = elsewhere,
            Input::LaunchesPaused(paused) => self.launches_paused = paused,
            Input::Tick => self.on_tick(now),
        }
    }

    /// When the core next wants an [`Input::Tick`]: the earliest timeout, backoff end, teardown
    /// retry, poll or reconciliation. `None`: nothing is due until some input arrives.
    pub fn next_deadline(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [
            self.next_timeout(),
            self.backoff.next_end(now),
            self.next_teardown_retry(),
            self.next_poll(),
            self.next_reconcile_at(),
            self.next_stall_check(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    pub fn runners(&self) -> &HashMap<RunnerId, Runner> {
        &self.runners
    }

    pub fn runner(&self, id: &str) -> Option<&Runner> {
        self.runners.get(id)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn runners_elsewhere(&self) -> &RunnersElsewhere {
        &self.elsewhere
    }

    /// The repository a runner counts for in quotas and fair share, if any.
    pub fn runner_repository(&self, id: &str) -> Option<&str> {
        self.runner_repos.get(id).map(String::as_str)
    }

    /// Per-pool counters, in configuration order.
    pub fn pool_statuses(&self) -> Vec<PoolStatus> {
        self.config
            .pools
            .iter()
            .map(|p| {
                let count = |states: &[RunnerState]| {
                    self.runners
                        .values()
                        .filter(|r| r.pool == p.name && states.contains(&r.state))
                        .count()
                };
                PoolStatus {
                    name: p.name.clone(),
                    labels: p.labels.clone(),
                    max_runners: p.max_runners,
                    min_idle: p.min_idle,
                    starting: count(&[RunnerState::Requested, RunnerState::Creating]),
                    idle: count(&[RunnerState::Idle]),
                    busy: count(&[RunnerState::Busy]),
                    queued: self.queue.pool_len(&p.name),
                    consecutive_failures: self.backoff.pool_failures(&p.name),
                    stalled: self.stalls.stalled(&p.name).cloned(),
                }
            })
            .collect()
    }

    fn mark(&mut self, id: &str) {
        self.dirty.insert(id.to_owned());
    }

    fn on_tick(&mut self, now: DateTime<Utc>) {
        self.enforce_timeouts(now);
        self.poll_starting_runners(now);
        if self.next_reconcile.is_none_or(|at| now >= at) {
            self.reconcile(now);
        }
    }

    fn drain(&mut self, id: &str, now: DateTime<Utc>) {
        if let Some(runner) = self.runners.get_mut(id)
            && runner.state != RunnerState::Removed
        {
            runner.draining = true;
            runner.updated_at = now;
            self.mark(id);
        }
    }

    /// Saves changed runners; forgets removed ones.
    fn flush(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(runner) = self.runners.get(&id) else {
                continue;
            };
            self.effects.push(Effect::SaveRunner(runner.clone()));
            if runner.state == RunnerState::Removed {
                let (scope, at) = (runner.scope.clone(), runner.updated_at);
                self.known_scopes.removed_at(&scope, at);
                self.runners.remove(&id);
                self.runner_repos.remove(&id);
                self.last_teardown_attempt.remove(&id);
                self.unconfirmed.remove(&id);
            }
        }
    }
}

/// Seconds from `from` to `to`, for histograms.
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}
