//! The replay simulation: the daemon's own decision core ([`Core`]) driven in virtual time
//! (milliseconds) against a model of GitHub and Docker. No clock, no IO.
//!
//! Every decision is the core's, exactly as in the daemon: its queue (aging included), its
//! planner (demand per pool, pool and host capacity, warm pools), pre-warming, idle and
//! bootstrap timeouts, teardowns, polls and reconciliations, each at the core's own next
//! deadline. What the outside world does is modelled here by its rules (DESIGN §1): a launch
//! registers a runner and starts its container at once; the runner is online `boot` later and
//! the core learns it at its next poll; any idle online runner whose labels contain all of a
//! job's labels takes the oldest such job; a runner takes one job and its container exits
//! when the job ends (ephemeral, JIT).
//!
//! The simulation runs until every job that can be served has run (the queue drains), not only
//! up to the last recorded event.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use crate::config::Config;
use crate::docker::ManagedContainer;
use crate::domain::{Job, JobId, JobStatus, LabelSet, Runner, RunnerId, RunnerState};
use crate::github::{RegisteredRunner, RunnerScope};
use crate::scheduler::core::outcomes::{Launched, Teardown};
use crate::scheduler::core::{Core, Effect, Input, RunnerIds};

use super::workload::{Fate, ReplayJob};

/// Everything the simulation is configured with: the daemon's configuration (pools, limits,
/// rules, registration) and the boot time of a runner.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub config: Config,
    pub boot_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "pools[{index}].bootstrap_timeout ({timeout}) is shorter than the boot time ({boot}): \
         no runner of pool {pool} would ever come online"
    )]
    BootOutlastsBootstrap {
        index: usize,
        pool: String,
        timeout: String,
        boot: String,
    },
}

impl SimSettings {
    pub fn from_config(config: &Config, boot: std::time::Duration) -> Result<Self, SettingsError> {
        for (index, p) in config.pools.iter().enumerate() {
            if p.bootstrap_timeout < boot {
                return Err(SettingsError::BootOutlastsBootstrap {
                    index,
                    pool: p.name.clone(),
                    timeout: humantime::format_duration(p.bootstrap_timeout).to_string(),
                    boot: humantime::format_duration(boot).to_string(),
                });
            }
        }
        Ok(SimSettings {
            config: config.clone(),
            boot_ms: boot.as_millis() as i64,
        })
    }
}

/// What happened to one simulated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub id: JobId,
    pub pool: String,
    /// Queued → started, for jobs a runner took.
    pub wait_ms: Option<i64>,
    pub cancelled: bool,
    pub live_wait_seconds: Option<f64>,
}

/// One runner's life, for runner-minutes and peaks.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerLife {
    pub pool: String,
    pub launched_ms: i64,
    pub removed_ms: i64,
}

/// Queue depth and runners of one pool at an instant (after every change).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct PoolSample {
    pub queued: u32,
    pub starting: u32,
    pub idle: u32,
    pub busy: u32,
}

#[derive(Debug, Default)]
pub struct SimOutcome {
    pub jobs: Vec<JobResult>,
    pub runners: Vec<RunnerLife>,
    /// `(time ms, per pool in configuration order)`, one entry per instant something changed.
    pub timeline: Vec<(i64, Vec<PoolSample>)>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What the model of the outside world does at a given time; at one instant, ends first
/// (they free slots), then arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    JobEnds { runner: usize },
    RunnerOnline { runner: usize },
    JobCancelled { job: usize },
    JobArrives { job: usize },
}

/// Queued jobs as (created ms, index), oldest first.
type JobsByAge = BTreeSet<(i64, usize)>;

/// A runner as GitHub and Docker see it.
struct OutsideRunner {
    record: Runner,
    labels: LabelSet,
    github_id: i64,
    registered: bool,
    online: bool,
    busy_with: Option<usize>,
    container_running: bool,
    launched_ms: i64,
    idle_since_ms: Option<i64>,
}

/// Runner ids in replay: a counter, so that runs repeat exactly. Eight digits first: a runner's
/// name keeps the first eight alphanumerics of its id ([`Runner::name_for`]), and names must
/// differ (the core finds the runner a delivery names by its name; `replay-100` and
/// `replay-10` once shared one and jobs were linked to the wrong runner).
struct Counter(usize);

impl RunnerIds for Counter {
    fn next_runner_id(&mut self) -> RunnerId {
        self.0 += 1;
        format!("{:08}-replay", self.0)
    }
}

struct Simulation<'a> {
    boot_ms: i64,
    jobs: &'a [ReplayJob],
    core: Core,
    ids: Counter,
    instance: String,
    now: i64,
    happenings: BinaryHeap<Reverse<(i64, Happening)>>,
    inputs: VecDeque<Input>,
    /// GitHub's queue by registration scope and label set, oldest first: its assignment looks
    /// at the label sets of the runner's scope that its labels contain, and takes the oldest
    /// head among them.
    by_labels: HashMap<(String, Vec<String>), (LabelSet, JobsByAge)>,
    /// Where runners for a job register (`registration`): a runner at a repository is handed
    /// that repository's jobs only; at an organization, any of its repositories'.
    organization: Option<String>,
    outside: Vec<OutsideRunner>,
    by_id: HashMap<RunnerId, usize>,
    /// Runners registered at GitHub, by scope, and runners whose container exists: what a poll
    /// and a reconciliation list, without walking every runner ever launched.
    registered: HashMap<String, BTreeSet<usize>>,
    containers: BTreeSet<usize>,
    /// Idle online runners as (idle since ms, index), longest idle first.
    idle: BTreeSet<(i64, usize)>,
    results: Vec<Option<JobResult>>,
    lives: Vec<RunnerLife>,
    timeline: Vec<(i64, Vec<PoolSample>)>,
    unresolved: usize,
    /// Runners running a job: the simulation goes on until they end (runner-minutes).
    busy: usize,
}

/// Runs `jobs` (oldest first) through the daemon's decision core under `settings`.
pub fn simulate(settings: &SimSettings, jobs: &[ReplayJob]) -> SimOutcome {
    let config = Arc::new(settings.config.clone());
    let start_ms = jobs.first().map_or(0, |j| j.created_ms);
    let mut sim = Simulation {
        boot_ms: settings.boot_ms,
        jobs,
        instance: config.server.instance_id.clone(),
        core: Core::new(config.clone()),
        ids: Counter(0),
        now: start_ms,
        happenings: BinaryHeap::new(),
        inputs: VecDeque::new(),
        by_labels: HashMap::new(),
        organization: match config.github.registration {
            crate::config::Registration::Organization => config.github.organization.clone(),
            crate::config::Registration::Repository => None,
        },
        outside: Vec::new(),
        by_id: HashMap::new(),
        registered: HashMap::new(),
        containers: BTreeSet::new(),
        idle: BTreeSet::new(),
        results: vec![None; jobs.len()],
        lives: Vec::new(),
        timeline: Vec::new(),
        unresolved: 0,
        busy: 0,
    };
    for (index, job) in jobs.iter().enumerate() {
        if config.pool(&job.pool).is_none() {
            continue;
        }
        sim.unresolved += 1;
        sim.at(job.created_ms, Happening::JobArrives { job: index });
        if let Fate::CancelledWhileQueued { at_ms } = job.fate {
            sim.at(
                at_ms.max(job.created_ms),
                Happening::JobCancelled { job: index },
            );
        }
    }
    // A daemon that was already running: warm pools exist from the start.
    sim.inputs.push_back(Input::Restored {
        jobs: Vec::new(),
        runners: Vec::new(),
        scopes: Vec::new(),
    });
    sim.settle();
    let mut last_progress = (sim.now, sim.unresolved);
    while sim.unresolved > 0 || sim.busy > 0 {
        let next_happening = sim.happenings.peek().map(|Reverse((at, _))| *at);
        let deadline = sim
            .core
            .next_deadline(time(sim.now))
            .map(|at| at.timestamp_millis());
        let Some(at) = [next_happening, deadline].into_iter().flatten().min() else {
            break;
        };
        // Warm runners cycle forever (idle timeout, refill); a queue that no runner has
        // served for a week of virtual time never will.
        if sim.unresolved != last_progress.1 {
            last_progress = (sim.now, sim.unresolved);
        } else if at - last_progress.0 > STALL_LIMIT_MS && sim.no_pending_arrivals() {
            break;
        }
        sim.now = at.max(sim.now);
        while let Some(Reverse((at, happening))) = sim.happenings.peek().copied() {
            if at > sim.now {
                break;
            }
            sim.happenings.pop();
            sim.happen(happening);
        }
        if deadline.is_some_and(|d| d <= sim.now) {
            sim.inputs.push_back(Input::Tick);
        }
        sim.settle();
    }
    sim.finish(start_ms)
}

/// Virtual time with no job resolved after which the simulation gives up on the rest.
const STALL_LIMIT_MS: i64 = 7 * 24 * 3_600_000;

impl<'a> Simulation<'a> {
    fn no_pending_arrivals(&self) -> bool {
        !self
            .happenings
            .iter()
            .any(|Reverse((_, h))| matches!(h, Happening::JobArrives { .. }))
    }

    fn at(&mut self, at: i64, happening: Happening) {
        self.happenings.push(Reverse((at, happening)));
    }

    /// Feeds the core until nothing more happens at this instant, then lets GitHub assign.
    /// What is pending is handed over together and decided on once, as the daemon hands over a
    /// batch of processed deliveries (one planning pass per input cost half the replay's time).
    fn settle(&mut self) {
        loop {
            while !self.inputs.is_empty() {
                let batch: Vec<Input> = self.inputs.drain(..).collect();
                let effects = self.core.handle_all(batch, time(self.now), &mut self.ids);
                for effect in effects {
                    self.carry_out(effect);
                }
            }
            self.assign();
            if self.inputs.is_empty() {
                break;
            }
        }
        self.sample();
    }

    fn happen(&mut self, happening: Happening) {
        match happening {
            Happening::JobArrives { job } => {
                self.enqueue(job);
                let record = job_record(&self.jobs[job], JobStatus::Queued, None, self.now);
                self.inputs.push_back(Input::Job(Box::new(record)));
            }
            Happening::JobCancelled { job } => {
                if self.dequeue(job) {
                    self.resolve(job, None, true);
                    let record = job_record(&self.jobs[job], JobStatus::Completed, None, self.now);
                    self.inputs.push_back(Input::Job(Box::new(record)));
                }
            }
            Happening::RunnerOnline { runner } => {
                let r = &mut self.outside[runner];
                if r.registered && r.container_running && !r.online {
                    r.online = true;
                    r.idle_since_ms = Some(self.now);
                    self.idle.insert((self.now, runner));
                }
            }
            Happening::JobEnds { runner } => {
                self.busy -= 1;
                let now = self.now;
                let r = &mut self.outside[runner];
                let job = r.busy_with.take();
                // Ephemeral: GitHub drops the registration, the runner process exits.
                r.container_running = false;
                let (name, id) = (r.record.name.clone(), r.record.id.clone());
                self.unregister(runner);
                if let Some(job) = job
                    && matches!(self.jobs[job].fate, Fate::Runs { .. })
                {
                    let record = job_record(&self.jobs[job], JobStatus::Completed, Some(name), now);
                    self.inputs.push_back(Input::Job(Box::new(record)));
                }
                self.inputs.push_back(Input::ContainerExited {
                    runner_id: id,
                    exit_code: Some(0),
                    oom: false,
                });
            }
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Launch(runner) => self.launch(runner),
            Effect::SaveRunner(runner) => {
                if runner.state == RunnerState::Removed
                    && let Some(&index) = self.by_id.get(&runner.id)
                {
                    self.lives.push(RunnerLife {
                        pool: runner.pool.clone(),
                        launched_ms: self.outside[index].launched_ms,
                        removed_ms: self.now,
                    });
                }
            }
            Effect::Teardown { runner_id, .. } => {
                let outcome = match self.by_id.get(&runner_id).copied() {
                    Some(index) if self.outside[index].busy_with.is_some() => Teardown::Busy,
                    Some(index) => {
                        self.unregister(index);
                        let r = &mut self.outside[index];
                        r.container_running = false;
                        self.containers.remove(&index);
                        Teardown::Done
                    }
                    None => Teardown::Done,
                };
                self.inputs
                    .push_back(Input::TornDown { runner_id, outcome });
            }
            Effect::ListContainers => {
                let listed = self
                    .containers
                    .iter()
                    .map(|&index| &self.outside[index])
                    .map(|r| ManagedContainer {
                        id: r.record.id.clone(),
                        name: r.record.name.clone(),
                        pool: Some(r.record.pool.clone()),
                        runner_id: Some(r.record.id.clone()),
                        instance: Some(self.instance.clone()),
                        running: r.container_running,
                        exit_code: (!r.container_running).then_some(0),
                        created: None,
                    })
                    .collect();
                self.inputs.push_back(Input::Containers(Ok(listed)));
            }
            Effect::ListGithubRunners { scopes, full } => {
                let observed = scopes
                    .into_iter()
                    .map(|scope| {
                        let listed = self.registered_at(&scope);
                        (scope, Ok(listed))
                    })
                    .collect();
                self.inputs
                    .push_back(Input::GithubRunners { full, observed });
            }
            // The job stays in GitHub's queue, unserved: the report counts it so.
            Effect::RefuseJob { job_id, .. } => {
                if let Some(index) = self.jobs.iter().position(|j| j.id == job_id)
                    && self.dequeue(index)
                {
                    self.resolve(index, None, false);
                }
            }
            // Nothing is ever orphaned here; metrics are the report's business.
            Effect::RemoveContainer { .. }
            | Effect::RemoveRegistration { .. }
            | Effect::JobWaited { .. }
            | Effect::RunnerOnline { .. }
            | Effect::LaunchFailed { .. } => {}
        }
    }

    fn registered_at(&self, scope: &RunnerScope) -> Vec<RegisteredRunner> {
        let Some(registered) = self.registered.get(&scope.api_path()) else {
            return Vec::new();
        };
        registered
            .iter()
            .map(|&index| &self.outside[index])
            .map(|r| RegisteredRunner {
                id: r.github_id,
                name: r.record.name.clone(),
                status: if r.online { "online" } else { "offline" }.into(),
                busy: r.busy_with.is_some(),
                labels: r.record.labels.clone(),
            })
            .collect()
    }

    /// A launch always works here: registered, container running, online `boot` later.
    fn launch(&mut self, runner: Runner) {
        let index = self.outside.len();
        self.by_id.insert(runner.id.clone(), index);
        self.outside.push(OutsideRunner {
            labels: LabelSet::new(&runner.labels),
            github_id: index as i64 + 1,
            registered: true,
            online: false,
            busy_with: None,
            container_running: true,
            launched_ms: self.now,
            idle_since_ms: None,
            record: runner.clone(),
        });
        self.registered
            .entry(runner.scope.clone())
            .or_default()
            .insert(index);
        self.containers.insert(index);
        self.at(
            self.now + self.boot_ms,
            Happening::RunnerOnline { runner: index },
        );
        self.inputs.push_back(Input::Launched {
            runner_id: runner.id,
            result: Ok(Launched {
                github_runner_id: index as i64 + 1,
                container_id: format!("container-{index}"),
            }),
        });
    }

    fn unregister(&mut self, index: usize) {
        let r = &mut self.outside[index];
        r.registered = false;
        r.online = false;
        if let Some(set) = self.registered.get_mut(&r.record.scope) {
            set.remove(&index);
        }
        if let Some(since) = r.idle_since_ms.take() {
            self.idle.remove(&(since, index));
        }
    }

    /// The scope a job's runners register at, which GitHub's assignment is confined to.
    fn scope_of(&self, job: &ReplayJob) -> String {
        match &self.organization {
            Some(org) => format!("orgs/{org}"),
            None => format!("repos/{}", job.repository),
        }
    }

    fn queue_key(&self, job: &ReplayJob) -> (String, Vec<String>) {
        (
            self.scope_of(job),
            job.labels.iter().map(str::to_owned).collect(),
        )
    }

    fn enqueue(&mut self, index: usize) {
        let job = &self.jobs[index];
        let key = self.queue_key(job);
        self.by_labels
            .entry(key)
            .or_insert_with(|| (job.labels.clone(), BTreeSet::new()))
            .1
            .insert((job.created_ms, index));
    }

    /// Removes a job from GitHub's queue; false when it was not queued (already taken).
    fn dequeue(&mut self, index: usize) -> bool {
        let job = &self.jobs[index];
        let key = self.queue_key(job);
        let Some((_, set)) = self.by_labels.get_mut(&key) else {
            return false;
        };
        let removed = set.remove(&(job.created_ms, index));
        if set.is_empty() {
            self.by_labels.remove(&key);
        }
        removed
    }

    fn resolve(&mut self, index: usize, wait_ms: Option<i64>, cancelled: bool) {
        let job = &self.jobs[index];
        self.results[index] = Some(JobResult {
            id: job.id,
            pool: job.pool.clone(),
            wait_ms,
            cancelled,
            live_wait_seconds: job.live_wait_seconds,
        });
        self.unresolved -= 1;
    }

    /// GitHub's rule: each idle runner, longest idle first, takes the oldest queued job whose
    /// labels its labels contain.
    fn assign(&mut self) {
        if self.by_labels.is_empty() {
            return;
        }
        let now = self.now;
        let idle: Vec<(i64, usize)> = self.idle.iter().copied().collect();
        for (since, runner) in idle {
            let (labels, scope) = (
                &self.outside[runner].labels,
                &self.outside[runner].record.scope,
            );
            let oldest = self
                .by_labels
                .iter()
                .filter(|((at, _), (set, _))| at == scope && set.is_subset_of(labels))
                .filter_map(|(_, (_, jobs))| jobs.first().copied())
                .min();
            let Some((created_ms, job)) = oldest else {
                continue;
            };
            self.dequeue(job);
            let end = match self.jobs[job].fate {
                Fate::Runs { run_ms } => {
                    self.resolve(job, Some(now - created_ms), false);
                    now + run_ms
                }
                // GitHub cancels it when the recording says it was cancelled.
                Fate::CancelledWhileQueued { at_ms } => {
                    self.resolve(job, None, true);
                    at_ms.max(now)
                }
            };
            let r = &mut self.outside[runner];
            r.busy_with = Some(job);
            r.idle_since_ms = None;
            let name = r.record.name.clone();
            self.idle.remove(&(since, runner));
            self.busy += 1;
            self.at(end, Happening::JobEnds { runner });
            let record = job_record(&self.jobs[job], JobStatus::InProgress, Some(name), now);
            self.inputs.push_back(Input::Job(Box::new(record)));
            if self.by_labels.is_empty() {
                break;
            }
        }
    }

    /// The core's per-pool counters (as [`Core::pool_statuses`] counts them, without copying
    /// every pool's name and labels at every instant).
    fn sample(&mut self) {
        let pools = &self.core.config().pools;
        let mut samples = vec![PoolSample::default(); pools.len()];
        for runner in self.core.runners().values() {
            let Some(sample) = pools
                .iter()
                .position(|p| p.name == runner.pool)
                .map(|i| &mut samples[i])
            else {
                continue;
            };
            match runner.state {
                RunnerState::Requested | RunnerState::Creating => sample.starting += 1,
                RunnerState::Idle => sample.idle += 1,
                RunnerState::Busy => sample.busy += 1,
                _ => {}
            }
        }
        for (sample, pool) in samples.iter_mut().zip(pools.iter()) {
            sample.queued = self.core.queue().pool_len(&pool.name) as u32;
        }
        if self.timeline.last().map(|(_, last)| last) != Some(&samples) {
            self.timeline.push((self.now, samples));
        }
    }

    /// Runners still there when the last job ended are counted up to that instant.
    fn finish(mut self, start_ms: i64) -> SimOutcome {
        let end_ms = self.now;
        let live: Vec<usize> = self
            .core
            .runners()
            .values()
            .filter_map(|r| self.by_id.get(&r.id).copied())
            .collect();
        for index in live {
            let r = &self.outside[index];
            self.lives.push(RunnerLife {
                pool: r.record.pool.clone(),
                launched_ms: r.launched_ms,
                removed_ms: end_ms,
            });
        }
        SimOutcome {
            jobs: self.results.into_iter().flatten().collect(),
            runners: self.lives,
            timeline: self.timeline,
            start_ms,
            end_ms,
        }
    }
}

/// The job as a delivery would leave it in the daemon's store.
fn job_record(job: &ReplayJob, status: JobStatus, runner: Option<String>, now_ms: i64) -> Job {
    let created = time(job.created_ms);
    let now = time(now_ms);
    Job {
        id: job.id,
        run_id: 0,
        run_attempt: 1,
        repository: job.repository.clone(),
        workflow_name: None,
        name: String::new(),
        labels: job.raw_labels.clone(),
        priority: job.priority,
        pool: Some(job.pool.clone()),
        status,
        conclusion: None,
        runner_id: None,
        started_at: (status == JobStatus::InProgress).then_some(now),
        completed_at: (status == JobStatus::Completed).then_some(now),
        runner_name: runner,
        runner_group_name: None,
        created_at: Some(created),
        first_seen_at: created,
        updated_at: now,
        outcome: None,
        outcome_detail: None,
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests;
