//! The scheduler task: the one owner of job-queue and runner state.
//!
//! Everything reaches it as a message: stored deliveries (via the processor it drives),
//! results of launch and teardown tasks, Docker events, GitHub observations, API commands and a
//! one-second tick. It never waits on GitHub or Docker itself; those calls run in tasks that
//! report back, so a slow API never stalls webhook processing. The database is the truth: the
//! queue and runner map are rebuilt from it at start, and every runner change is written before
//! anything outside is touched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::{
    Command, PoolStatus, QueueEntry, RemoveError, SchedulerHandle, SchedulerSnapshot,
};
use super::launcher::{LaunchFailure, Launched, Teardown};
use super::plan::{Launch, PoolLimits, plan_launches};
use super::processor::{Change, Processor};
use super::queue::{JobQueue, QueuedJob};
use crate::config::Config;
use crate::docker::{ContainerEvent, ContainerRuntime, ManagedContainer};
use crate::domain::{Job, JobStatus, Runner, RunnerId, RunnerState};
use crate::events::{EventBus, LiveEvent};
use crate::github::{GithubApi, RegisteredRunner, RunnerScope};
use crate::store::Store;
use crate::supervisor::{InjectedFaults, Supervisor};

/// Deliveries stored within this window are processed together: the processor shares the one
/// write connection with ingest, and a processing commit after every ingest commit would make
/// acknowledgements wait behind it. Processing is not on the acknowledgement path, so a few ms
/// of delay cost nothing; a backlog is drained without pauses.
const PROCESS_COALESCE: Duration = Duration::from_millis(25);
/// How often timeouts, retries and polls are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Full reconciliation against Docker and GitHub.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// News from the tasks the scheduler started.
pub(super) enum Event {
    Launched {
        runner_id: RunnerId,
        result: Result<Launched, LaunchFailure>,
    },
    TornDown {
        runner_id: RunnerId,
        outcome: Teardown,
    },
    GithubRunners {
        full: bool,
        observed: Vec<(RunnerScope, Result<Vec<RegisteredRunner>, String>)>,
    },
    Containers(Result<Vec<ManagedContainer>, String>),
    Docker(ContainerEvent),
    DockerStreamLost,
}

/// What the scheduler needs from the outside world.
pub struct SchedulerDeps {
    pub store: Arc<dyn Store>,
    pub github: Arc<dyn GithubApi>,
    pub docker: Arc<dyn ContainerRuntime>,
    pub bus: EventBus,
}

#[derive(Default)]
pub(super) struct Backoff {
    pub(super) failures: u32,
    pub(super) until: Option<Instant>,
}

pub struct Scheduler {
    pub(super) deps: SchedulerDeps,
    pub(super) config: Arc<Config>,
    processor: Processor,
    pub(super) queue: JobQueue,
    pub(super) runners: HashMap<RunnerId, Runner>,
    pub(super) backoff: HashMap<String, Backoff>,
    /// Runners whose state changed since the last flush (persist + publish).
    pub(super) dirty: HashSet<RunnerId>,
    pub(super) teardown_in_flight: HashSet<RunnerId>,
    pub(super) last_teardown_attempt: HashMap<RunnerId, Instant>,
    pub(super) polling: bool,
    pub(super) reconciling: bool,
    /// Pools a push asked to pre-warm (one runner each, at the next scheduling pass).
    pub(super) pending_prewarm: HashSet<String>,
    /// When the next full reconciliation is due (`None`: at the next tick).
    next_reconcile: Option<Instant>,
    last_pools: Vec<PoolStatus>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// Short-lived side-effect tasks (launch, teardown, polls), drained at shutdown.
    pub(super) tasks: TaskTracker,
    supervisor: Supervisor,
    /// Side-effect tasks stop at it: an interrupted launch or teardown is what a crash
    /// leaves, and the next start reconciles it (DESIGN §8).
    pub(super) shutdown: CancellationToken,
    faults: InjectedFaults,
    /// Deliveries processed since start (for [`InjectedFaults`]).
    processed: usize,
}

/// Starts the scheduler task; returns the handle the HTTP side uses. `config` holds the current
/// configuration and every reloaded one (SIGHUP, [`crate::app::App::reload`]).
pub fn start(
    deps: SchedulerDeps,
    mut config_updates: watch::Receiver<Arc<Config>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    supervisor: &Supervisor,
    faults: InjectedFaults,
) -> SchedulerHandle {
    let (tx, commands) = mpsc::channel(64);
    let (events_tx, events) = mpsc::unbounded_channel();
    let config = config_updates.borrow_and_update().clone();
    let processor = Processor::new(deps.store.clone(), &config, deps.bus.clone());
    let scheduler = Scheduler {
        deps,
        config,
        processor,
        queue: JobQueue::default(),
        runners: HashMap::new(),
        backoff: HashMap::new(),
        dirty: HashSet::new(),
        teardown_in_flight: HashSet::new(),
        last_teardown_attempt: HashMap::new(),
        polling: false,
        reconciling: false,
        pending_prewarm: HashSet::new(),
        next_reconcile: None,
        last_pools: Vec::new(),
        events: events_tx,
        tasks: supervisor.tracker().clone(),
        supervisor: supervisor.clone(),
        shutdown: shutdown.clone(),
        faults,
        processed: 0,
    };
    supervisor.spawn(
        "scheduler",
        scheduler.run(wake, commands, events, config_updates, shutdown),
    );
    SchedulerHandle { tx }
}

impl Scheduler {
    async fn run(
        mut self,
        wake: Arc<Notify>,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut config_updates: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) {
        if let Err(error) = self.restore().await {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot restore scheduler state; starting empty"
            );
        }
        if !self.config.pools.is_empty() {
            super::watch::spawn_docker_events(
                self.deps.docker.clone(),
                self.events.clone(),
                shutdown.clone(),
                &self.supervisor,
            );
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When stored deliveries are processed next (see PROCESS_COALESCE).
        let mut process_at: Option<tokio::time::Instant> = None;
        loop {
            let due = process_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = events.recv() => self.on_event(event),
                Some(command) = commands.recv() => self.on_command(command),
                _ = wake.notified(), if process_at.is_none() => {
                    process_at = Some(tokio::time::Instant::now() + PROCESS_COALESCE);
                }
                _ = tokio::time::sleep_until(due), if process_at.is_some() => {
                    process_at = None;
                    if self.process_deliveries().await {
                        process_at = Some(tokio::time::Instant::now()); // a backlog: no pause
                    }
                }
                _ = tick.tick() => self.on_tick().await,
                Ok(()) = config_updates.changed() => {
                    let config = config_updates.borrow_and_update().clone();
                    self.reconfigure(config);
                }
            }
            self.schedule().await;
            self.flush().await;
        }
        // Running containers are left alone: the next start reconciles them.
        tracing::info!(
            runners = self.runners.len(),
            queued = self.queue.len(),
            "scheduler stopped"
        );
    }

    /// Takes a reloaded configuration: pools, limits and priority rules apply from the next
    /// scheduling pass; a new GitHub token or App key from the next API call. Jobs already
    /// queued keep the pool and priority they were given.
    fn reconfigure(&mut self, config: Arc<Config>) {
        self.processor.reconfigure(&config);
        if !config.pools.is_empty() {
            match crate::github::GithubClient::from_config(&config.github) {
                Ok(client) => self.deps.github = Arc::new(client),
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "reloaded GitHub credentials are unusable; keeping the previous ones"
                ),
            }
        }
        self.config = config;
        tracing::info!(
            pools = self.config.pools.len(),
            "scheduler: configuration reloaded"
        );
    }

    /// Rebuilds the queue and the runner map from the database, then reconciles.
    async fn restore(&mut self) -> anyhow::Result<()> {
        for job in self.deps.store.schedulable_jobs().await? {
            self.on_job(&job);
        }
        let now = Utc::now();
        for mut runner in self.deps.store.live_runners().await? {
            if runner.instance != self.config.server.instance_id {
                // Recorded under another `server.instance_id` (the database was served with
                // another configuration before): its containers carry that id, not ours.
                continue;
            }
            if runner.state == RunnerState::Requested {
                // Its launch task died with the previous process.
                runner.fail("launch interrupted by a restart", now);
                self.dirty.insert(runner.id.clone());
            }
            self.runners.insert(runner.id.clone(), runner);
        }
        tracing::info!(
            queued = self.queue.len(),
            runners = self.runners.len(),
            "scheduler state restored"
        );
        self.reconcile();
        Ok(())
    }

    /// Processes one batch of stored deliveries; true when more are waiting.
    async fn process_deliveries(&mut self) -> bool {
        match self.processor.process_due(Utc::now()).await {
            Ok((handled, changes)) => {
                for change in changes {
                    self.on_change(change);
                }
                self.processed += handled;
                if let Some(limit) = self.faults.panic_scheduler_after_deliveries
                    && self.processed >= limit
                {
                    panic!("injected fault: the scheduler panics after {limit} deliveries");
                }
                handled >= super::processor::PROCESS_BATCH as usize
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot process webhook deliveries"
                );
                false
            }
        }
    }

    fn on_change(&mut self, change: Change) {
        match change {
            Change::Job { job, .. } => self.on_job(&job),
            Change::Push { event, .. } => self.prewarm(&event),
            Change::Run(_) => {}
        }
    }

    /// Keeps the queue and runner states in step with a job's state.
    pub(super) fn on_job(&mut self, job: &Job) {
        let now = Utc::now();
        match (job.status, &job.pool) {
            (status, Some(pool)) if status.is_pending() && self.config.pool(pool).is_some() => {
                let aging = self.config.priority.aging_per_minute;
                self.queue.insert(QueuedJob::from_job(job, pool, aging));
            }
            (JobStatus::InProgress, _) => {
                let queued = self.queue.remove(job.id);
                if let Some(id) = self.runner_named(job.runner_name.as_deref()) {
                    let runner = self.runners.get_mut(&id).expect("found by name");
                    runner.job_id = Some(job.id);
                    if runner.advance(RunnerState::Busy, now) {
                        self.dirty.insert(id.clone());
                    }
                    if let (Some(q), Some(wait)) = (queued, job.wait_seconds()) {
                        metrics::histogram!(crate::metrics::JOB_WAIT_SECONDS, "pool" => q.pool)
                            .record(wait);
                    }
                }
            }
            (JobStatus::Completed, _) => {
                self.queue.remove(job.id);
                if let Some(id) = self.runner_named(job.runner_name.as_deref()) {
                    let runner = self.runners.get_mut(&id).expect("found by name");
                    runner.job_id.get_or_insert(job.id);
                    if runner.advance(RunnerState::Finished, now) {
                        self.dirty.insert(id);
                    }
                }
            }
            _ => {
                self.queue.remove(job.id);
            }
        }
    }

    fn runner_named(&self, name: Option<&str>) -> Option<RunnerId> {
        let name = name?;
        self.runners
            .values()
            .find(|r| r.name == name)
            .map(|r| r.id.clone())
    }

    pub(super) fn mark(&mut self, id: &str) {
        self.dirty.insert(id.to_owned());
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::RemoveRunner { id, reply } => {
                let result = match self.runners.get_mut(&id) {
                    Some(runner) if runner.state != RunnerState::Removed => {
                        runner.draining = true;
                        runner.updated_at = Utc::now();
                        let copy = runner.clone();
                        self.dirty.insert(id);
                        Ok(copy)
                    }
                    _ => Err(RemoveError::NotFound(id)),
                };
                let _ = reply.send(result);
            }
        }
    }

    pub(super) fn snapshot(&self) -> SchedulerSnapshot {
        let now = Utc::now();
        let mut runners: Vec<Runner> = self.runners.values().cloned().collect();
        runners.sort_by_key(|r| r.created_at);
        SchedulerSnapshot {
            queue: self
                .queue
                .iter_ordered()
                .into_iter()
                .map(|j| QueueEntry::new(j, now))
                .collect(),
            runners,
            pools: self.pool_statuses(),
        }
    }

    pub(super) fn pool_statuses(&self) -> Vec<PoolStatus> {
        self.config
            .pools
            .iter()
            .map(|p| {
                let of_pool = || self.runners.values().filter(|r| r.pool == p.name);
                let count = |states: &[RunnerState]| {
                    of_pool().filter(|r| states.contains(&r.state)).count()
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
                    consecutive_failures: self.backoff.get(&p.name).map_or(0, |b| b.failures),
                }
            })
            .collect()
    }

    async fn on_tick(&mut self) {
        // Deliveries whose retry is due, and anything a missed notification left behind.
        self.process_deliveries().await;
        let now = Utc::now();
        self.enforce_timeouts(now);
        self.poll_starting_runners();
        if self.next_reconcile.is_none_or(|at| Instant::now() >= at) {
            self.reconcile();
        }
    }

    /// Plans and starts launches.
    async fn schedule(&mut self) {
        if self.config.pools.is_empty() {
            return;
        }
        let now = Instant::now();
        let limits: Vec<PoolLimits> = self
            .config
            .pools
            .iter()
            .map(|p| PoolLimits {
                name: p.name.clone(),
                max_runners: p.max_runners as usize,
                min_idle: p.min_idle as usize,
                can_warm: self.warm_scope(&p.name).is_some(),
                backing_off: self
                    .backoff
                    .get(&p.name)
                    .and_then(|b| b.until)
                    .is_some_and(|t| t > now),
            })
            .collect();
        let mut launches = plan_launches(
            &limits,
            &self.queue,
            &self.runners,
            self.config.limits.max_runners as usize,
        );
        let held = self
            .runners
            .values()
            .filter(|r| r.state.holds_slot())
            .count()
            + launches.len();
        let room = (self.config.limits.max_runners as usize).saturating_sub(held);
        let prewarm: Vec<String> = self.pending_prewarm.drain().collect();
        for pool in prewarm
            .into_iter()
            .filter(|p| limits.iter().any(|l| &l.name == p && l.can_warm))
            .take(room)
        {
            let used = self
                .runners
                .values()
                .filter(|r| r.pool == pool && r.state.holds_slot())
                .count();
            if self
                .config
                .pool(&pool)
                .is_some_and(|p| used < p.max_runners as usize)
            {
                launches.push(Launch::Warm { pool });
            }
        }
        for launch in launches {
            self.start_launch(launch).await;
        }
    }

    /// Persists and publishes changed runners; drops removed ones from memory; updates gauges.
    async fn flush(&mut self) {
        self.start_teardowns();
        let dirty: Vec<RunnerId> = self.dirty.drain().collect();
        for id in &dirty {
            let Some(runner) = self.runners.get(id) else {
                continue;
            };
            if let Err(error) = self.deps.store.save_runner(runner).await {
                tracing::error!(%error, runner = %runner.name, "cannot record runner state");
            }
            self.deps.bus.publish(runner_event(runner));
            if runner.state == RunnerState::Removed {
                self.runners.remove(id);
                self.last_teardown_attempt.remove(id);
            }
        }
        let pools = self.pool_statuses();
        if pools != self.last_pools {
            for pool in pools.iter().filter(|p| !self.last_pools.contains(p)) {
                self.deps.bus.publish(LiveEvent {
                    kind: "pool",
                    repository: None,
                    data: serde_json::to_value(pool).unwrap_or_default(),
                });
            }
            self.record_gauges();
            self.last_pools = pools;
        }
    }

    fn record_gauges(&self) {
        for pool in &self.config.pools {
            for state in RunnerState::ALL
                .iter()
                .filter(|s| **s != RunnerState::Removed)
            {
                let n = self
                    .runners
                    .values()
                    .filter(|r| r.pool == pool.name && r.state == *state)
                    .count();
                metrics::gauge!(crate::metrics::RUNNERS, "pool" => pool.name.clone(), "state" => state.as_str()).set(n as f64);
            }
            for band in ["high", "normal", "low"] {
                let n = self
                    .queue
                    .pool_iter(&pool.name)
                    .filter(|j| j.band() == band)
                    .count();
                metrics::gauge!(crate::metrics::QUEUE_DEPTH, "pool" => pool.name.clone(), "band" => band).set(n as f64);
            }
        }
    }

    /// Schedules the next full reconciliation `after` from now.
    pub(super) fn reconcile_again_in(&mut self, after: Duration) {
        self.next_reconcile = Some(Instant::now() + after);
    }
}

/// The `runner` event clients see.
pub fn runner_event(runner: &Runner) -> LiveEvent {
    LiveEvent {
        kind: "runner",
        repository: None,
        data: serde_json::json!({
            "id": runner.id, "pool": runner.pool, "state": runner.state.as_str(),
            "container_id": runner.container_id, "github_runner_name": runner.name,
            "github_runner_id": runner.github_runner_id, "job_id": runner.job_id,
            "launched_for": runner.launched_for, "labels": runner.labels,
            "failure_reason": runner.failure_reason, "draining": runner.draining,
            "created_at": runner.created_at, "idle_at": runner.idle_at, "busy_at": runner.busy_at,
        }),
    }
}

/// Seconds between two instants, for histograms.
pub(super) fn seconds_since(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}
