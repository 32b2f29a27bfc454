//! The replay simulation: virtual time in milliseconds, no clock, no IO.
//!
//! Launch decisions are the daemon's own: its priority queue ([`JobQueue`], aging included) and
//! its planner ([`plan_launches`]: demand per pool, capacity per pool and host, warm pools).
//! What GitHub does is modelled by its rules (DESIGN §1): any idle runner whose labels contain
//! all of a job's labels takes the oldest such job; a runner takes one job and is removed when
//! it ends (ephemeral, JIT). A runner needs `boot` from launch to online; an idle runner past its
//! pool's `idle_timeout` is removed, as the daemon does.
//!
//! The simulation runs until every job that can be served has run (the queue drains), not only
//! up to the last recorded event.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use chrono::{DateTime, TimeZone, Utc};

use crate::config::{Config, Registration};
use crate::domain::{JobId, LabelSet, Runner, RunnerState};
use crate::scheduler::plan::{Launch, PoolLimits, plan_launches};
use crate::scheduler::queue::{JobQueue, QueuedJob};

use super::workload::{Fate, ReplayJob};

/// A pool as the simulation needs it.
#[derive(Debug, Clone)]
pub struct SimPool {
    pub name: String,
    /// The pool's labels as configured (warm runners register with them).
    pub labels: Vec<String>,
    pub max_runners: usize,
    pub min_idle: usize,
    pub idle_timeout_ms: i64,
    pub can_warm: bool,
}

/// Everything the simulation is configured with.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub pools: Vec<SimPool>,
    pub host_max_runners: usize,
    pub boot_ms: i64,
    pub aging_per_minute: f64,
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
        let mut pools = Vec::new();
        for (index, p) in config.pools.iter().enumerate() {
            if p.bootstrap_timeout < boot {
                return Err(SettingsError::BootOutlastsBootstrap {
                    index,
                    pool: p.name.clone(),
                    timeout: humantime::format_duration(p.bootstrap_timeout).to_string(),
                    boot: humantime::format_duration(boot).to_string(),
                });
            }
            // The daemon's rule (`warm_scope`): warm runners need an organization, or the
            // pool's repository, to register at.
            let can_warm = match config.github.registration {
                Registration::Organization => config.github.organization.is_some(),
                Registration::Repository => p.repository.is_some(),
            };
            pools.push(SimPool {
                name: p.name.clone(),
                labels: p.labels.clone(),
                max_runners: p.max_runners as usize,
                min_idle: p.min_idle as usize,
                idle_timeout_ms: p.idle_timeout.as_millis() as i64,
                can_warm,
            });
        }
        Ok(SimSettings {
            pools,
            host_max_runners: config.limits.max_runners as usize,
            boot_ms: boot.as_millis() as i64,
            aging_per_minute: config.priority.aging_per_minute,
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
    /// `(time ms, per pool in settings order)`, one entry per instant something changed.
    pub timeline: Vec<(i64, Vec<PoolSample>)>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Events in time order; at one instant, ends first (they free slots), then arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    JobEnds { runner: usize },
    RunnerOnline { runner: usize },
    IdleCheck { runner: usize },
    JobCancelled { job: usize },
    JobArrives { job: usize },
}

/// Queued jobs as (created ms, index), oldest first.
type JobsByAge = BTreeSet<(i64, usize)>;

struct SimRunner {
    record: Runner,
    labels: LabelSet,
    pool_index: usize,
    idle_since_ms: Option<i64>,
}

struct Simulation<'a> {
    settings: &'a SimSettings,
    limits: Vec<PoolLimits>,
    jobs: &'a [ReplayJob],
    pool_index: HashMap<&'a str, usize>,
    queue: JobQueue,
    /// Queued jobs by label set, oldest first: GitHub's assignment looks at the label sets a
    /// runner's labels contain and takes the oldest head among them.
    by_labels: HashMap<Vec<String>, (LabelSet, JobsByAge)>,
    runners: Vec<SimRunner>,
    /// The daemon's view for the planner: runners holding a slot, by id.
    live: HashMap<String, Runner>,
    events: BinaryHeap<Reverse<(i64, Event)>>,
    results: Vec<Option<JobResult>>,
    lives: Vec<RunnerLife>,
    timeline: Vec<(i64, Vec<PoolSample>)>,
    unresolved: usize,
    /// Runners running a job: the simulation goes on until they end (runner-minutes).
    busy: usize,
    /// Idle runners as (idle since ms, index), longest idle first.
    idle: BTreeSet<(i64, usize)>,
    /// Runners holding a slot, per pool (settings order).
    pool_held: Vec<usize>,
}

/// Runs `jobs` (oldest first) through the daemon's decisions under `settings`.
pub fn simulate(settings: &SimSettings, jobs: &[ReplayJob]) -> SimOutcome {
    let mut sim = Simulation {
        settings,
        limits: settings
            .pools
            .iter()
            .map(|p| PoolLimits {
                name: p.name.clone(),
                max_runners: p.max_runners,
                min_idle: p.min_idle,
                can_warm: p.can_warm,
                backing_off: false,
            })
            .collect(),
        jobs,
        pool_index: settings
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect(),
        queue: JobQueue::default(),
        by_labels: HashMap::new(),
        runners: Vec::new(),
        live: HashMap::new(),
        events: BinaryHeap::new(),
        results: vec![None; jobs.len()],
        lives: Vec::new(),
        timeline: Vec::new(),
        unresolved: 0,
        busy: 0,
        idle: BTreeSet::new(),
        pool_held: vec![0; settings.pools.len()],
    };
    for (index, job) in jobs.iter().enumerate() {
        if !sim.pool_index.contains_key(job.pool.as_str()) {
            continue;
        }
        sim.unresolved += 1;
        sim.push(job.created_ms, Event::JobArrives { job: index });
        if let Fate::CancelledWhileQueued { at_ms } = job.fate {
            sim.push(
                at_ms.max(job.created_ms),
                Event::JobCancelled { job: index },
            );
        }
    }
    let start_ms = jobs.first().map_or(0, |j| j.created_ms);
    let mut now = start_ms;
    // Warm pools exist from the start, as in a daemon that was already running.
    sim.plan(now);
    let mut last_progress = (now, sim.unresolved);
    while sim.unresolved > 0 || sim.busy > 0 {
        let Some(Reverse((at, _))) = sim.events.peek().copied() else {
            break;
        };
        // Warm runners cycle forever (idle timeout, refill); a queue that no runner has
        // served for a week of virtual time never will.
        if sim.unresolved != last_progress.1 {
            last_progress = (now, sim.unresolved);
        } else if at - last_progress.0 > STALL_LIMIT_MS && sim.no_pending_arrivals() {
            break;
        }
        now = at;
        while let Some(Reverse((at, event))) = sim.events.peek().copied() {
            if at != now {
                break;
            }
            sim.events.pop();
            sim.handle(now, event);
        }
        sim.assign(now);
        sim.plan(now);
        sim.sample(now);
    }
    sim.finish(start_ms, now)
}

/// Virtual time with no job resolved after which the simulation gives up on the rest.
const STALL_LIMIT_MS: i64 = 7 * 24 * 3_600_000;

impl<'a> Simulation<'a> {
    fn no_pending_arrivals(&self) -> bool {
        !self
            .events
            .iter()
            .any(|Reverse((_, e))| matches!(e, Event::JobArrives { .. }))
    }

    fn push(&mut self, at: i64, event: Event) {
        self.events.push(Reverse((at, event)));
    }

    fn handle(&mut self, now: i64, event: Event) {
        match event {
            Event::JobArrives { job } => self.enqueue(job),
            Event::JobCancelled { job } => {
                if self.dequeue(job) {
                    self.resolve(job, None, true);
                }
            }
            Event::RunnerOnline { runner } => {
                let r = &mut self.runners[runner];
                if r.record.state == RunnerState::Creating {
                    r.record.advance(RunnerState::Idle, time(now));
                    r.idle_since_ms = Some(now);
                    self.idle.insert((now, runner));
                    let timeout = self.settings.pools[r.pool_index].idle_timeout_ms;
                    self.live.insert(r.record.id.clone(), r.record.clone());
                    self.push(now + timeout, Event::IdleCheck { runner });
                }
            }
            Event::IdleCheck { runner } => {
                let r = &self.runners[runner];
                let timeout = self.settings.pools[r.pool_index].idle_timeout_ms;
                let expired = r.record.state == RunnerState::Idle
                    && r.idle_since_ms.is_some_and(|since| now - since >= timeout);
                if expired {
                    self.remove_runner(runner, now);
                }
            }
            Event::JobEnds { runner } => {
                self.busy -= 1;
                self.remove_runner(runner, now);
            }
        }
    }

    fn enqueue(&mut self, index: usize) {
        let job = &self.jobs[index];
        let queued = QueuedJob::new(
            job.id,
            &job.pool,
            &job.repository,
            job.raw_labels.clone(),
            job.priority,
            time(job.created_ms),
            self.settings.aging_per_minute,
        );
        self.queue.insert(queued);
        let key: Vec<String> = job.labels.iter().map(str::to_owned).collect();
        self.by_labels
            .entry(key)
            .or_insert_with(|| (job.labels.clone(), BTreeSet::new()))
            .1
            .insert((job.created_ms, index));
    }

    /// Removes a job from the queue; false when it was not queued (already taken).
    fn dequeue(&mut self, index: usize) -> bool {
        let job = &self.jobs[index];
        if self.queue.remove(job.id).is_none() {
            return false;
        }
        let key: Vec<String> = job.labels.iter().map(str::to_owned).collect();
        if let Some((_, set)) = self.by_labels.get_mut(&key) {
            set.remove(&(job.created_ms, index));
            if set.is_empty() {
                self.by_labels.remove(&key);
            }
        }
        true
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
    fn assign(&mut self, now: i64) {
        if self.queue.is_empty() {
            return;
        }
        let idle: Vec<(i64, usize)> = self.idle.iter().copied().collect();
        for (since, runner) in idle {
            let labels = &self.runners[runner].labels;
            let oldest = self
                .by_labels
                .values()
                .filter(|(set, _)| set.is_subset_of(labels))
                .filter_map(|(_, jobs)| jobs.first().copied())
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
            let r = &mut self.runners[runner];
            r.record.advance(RunnerState::Busy, time(now));
            r.record.job_id = Some(self.jobs[job].id);
            r.idle_since_ms = None;
            self.live.insert(r.record.id.clone(), r.record.clone());
            self.idle.remove(&(since, runner));
            self.busy += 1;
            self.push(end, Event::JobEnds { runner });
            if self.queue.is_empty() {
                break;
            }
        }
    }

    fn plan(&mut self, now: i64) {
        let held = self.live.len();
        if held >= self.settings.host_max_runners {
            return;
        }
        // The planner walks each pool's queue; skip it while no pool that wants a runner has
        // room (a long queue behind full pools would make every event cost its length).
        let wants_room = self.settings.pools.iter().enumerate().any(|(i, p)| {
            (self.queue.pool_len(&p.name) > 0 || p.min_idle > 0)
                && self.pool_held[i] < p.max_runners
        });
        if !wants_room {
            return;
        }
        let launches = plan_launches(
            &self.limits,
            &self.queue,
            &self.live,
            self.settings.host_max_runners,
        );
        for launch in launches {
            let (pool, labels, launched_for) = match launch {
                Launch::ForJob { pool, job_id } => {
                    let labels = self
                        .queue
                        .get(job_id)
                        .map(|j| j.labels.clone())
                        .unwrap_or_default();
                    (pool, labels, Some(job_id))
                }
                Launch::Warm { pool } => {
                    let labels = self.settings.pools[self.pool_index[pool.as_str()]]
                        .labels
                        .clone();
                    (pool, labels, None)
                }
            };
            self.launch(now, pool, labels, launched_for);
        }
    }

    fn launch(&mut self, now: i64, pool: String, labels: Vec<String>, launched_for: Option<JobId>) {
        let index = self.runners.len();
        let id = format!("replay-{index}");
        let at = time(now);
        let record = Runner {
            name: Runner::name_for(&pool, &id),
            id,
            state: RunnerState::Creating,
            failure_reason: None,
            labels: labels.clone(),
            scope: String::new(),
            github_runner_id: None,
            container_id: None,
            instance: "replay".into(),
            launched_for,
            job_id: None,
            draining: false,
            created_at: at,
            idle_at: None,
            busy_at: None,
            finished_at: None,
            removed_at: None,
            updated_at: at,
            pool,
        };
        self.live.insert(record.id.clone(), record.clone());
        let pool_index = self.pool_index[record.pool.as_str()];
        self.pool_held[pool_index] += 1;
        self.runners.push(SimRunner {
            pool_index,
            labels: LabelSet::new(&labels),
            record,
            idle_since_ms: None,
        });
        self.push(
            now + self.settings.boot_ms,
            Event::RunnerOnline { runner: index },
        );
    }

    fn remove_runner(&mut self, runner: usize, now: i64) {
        let r = &mut self.runners[runner];
        if r.record.state.is_terminal() {
            return;
        }
        r.record.advance(RunnerState::Removed, time(now));
        if let Some(since) = r.idle_since_ms.take() {
            self.idle.remove(&(since, runner));
        }
        self.pool_held[r.pool_index] -= 1;
        self.live.remove(&r.record.id);
        self.lives.push(RunnerLife {
            pool: r.record.pool.clone(),
            launched_ms: r.record.created_at.timestamp_millis(),
            removed_ms: now,
        });
    }

    fn sample(&mut self, now: i64) {
        let mut samples = vec![PoolSample::default(); self.settings.pools.len()];
        for (i, pool) in self.settings.pools.iter().enumerate() {
            samples[i].queued = self.queue.pool_len(&pool.name) as u32;
        }
        for r in self.live.values() {
            let s = &mut samples[self.pool_index[r.pool.as_str()]];
            match r.state {
                RunnerState::Idle => s.idle += 1,
                RunnerState::Busy => s.busy += 1,
                _ => s.starting += 1,
            }
        }
        if self.timeline.last().map(|(_, last)| last) != Some(&samples) {
            self.timeline.push((now, samples));
        }
    }

    /// Warm runners still there when the last job ended are counted up to that instant.
    fn finish(mut self, start_ms: i64, end_ms: i64) -> SimOutcome {
        for index in 0..self.runners.len() {
            self.remove_runner(index, end_ms);
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

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests;
