//! The scheduler task: a thin loop around the decision core ([`super::core`]).
//!
//! It feeds the core everything that happens — processed deliveries, launch and teardown
//! results, Docker events, GitHub observations, API commands, reloads, and a tick at the
//! core's next deadline — and carries out the effects the core returns ([`super::effects`]).
//! Slow GitHub and Docker calls run in tasks that report back as inputs, so a slow API never
//! stalls webhook processing. The database is the truth: the core's state is rebuilt from it
//! at start, and every runner change is written before anything outside is touched.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::core::{Core, Input, RunnerIds};
use super::handle::{
    Command, PoolStatus, QueueEntry, RemoveError, SchedulerHandle, SchedulerSnapshot,
};
use super::processor::{Change, Processor};
use super::waits::WaitBoard;
use crate::config::Config;
use crate::docker::ContainerRuntime;
use crate::domain::{Runner, RunnerId, RunnerState};
use crate::events::{EventBus, EventKind, LiveEvent};
use crate::fleet::Fleet;
use crate::fleet::doorbell::Doorbells;
use crate::github::SharedGithub;
use crate::store::Store;
use crate::supervisor::{InjectedFaults, Supervisor};
use crate::telemetry::repeats::{self, Repeats};

pub use super::core::RECONCILE_INTERVAL;

/// Deliveries stored within this window are processed together: the processor shares the one
/// write connection with ingest, and a processing commit after every ingest commit would make
/// acknowledgements wait behind it. Processing is not on the acknowledgement path, so a few ms
/// of delay cost nothing; a backlog is drained without pauses.
const PROCESS_COALESCE: Duration = Duration::from_millis(25);
/// How often the log is swept for deliveries whose processing retry is due (and for any a
/// missed notification left behind). The core's own timers do not depend on it.
const PROCESSOR_SWEEP: Duration = Duration::from_secs(1);
/// Bounds on the wait for the core's next deadline: the floor keeps a deadline that nothing
/// can act on yet from spinning the loop; the ceiling bounds the effect of a wall-clock jump.
const MIN_TICK_WAIT: Duration = Duration::from_millis(20);
const MAX_TICK_WAIT: Duration = Duration::from_secs(30);
/// Container create+start calls in flight at once; the rest of a burst waits its turn (the
/// engine is fastest with a few calls in flight; `benches/burst.rs` compares with it).
pub(super) const LAUNCH_CONCURRENCY: usize = 8;
/// JIT registrations in flight at once, ahead of the container starts (GitHub's guidance is
/// to keep concurrent requests few; its secondary rate limit counts them).
pub(super) const REGISTRATION_CONCURRENCY: usize = 16;

/// What the scheduler needs from the outside world.
pub struct SchedulerDeps {
    pub store: Arc<dyn Store>,
    pub github: Arc<SharedGithub>,
    pub docker: Arc<dyn ContainerRuntime>,
    pub bus: EventBus,
    /// Alone, or an instance of a fleet: then only the leader processes deliveries, the queue
    /// comes from the database ([`super::fleet_sync`]), and a launch for a job claims it first.
    pub fleet: Fleet,
}

/// New runner ids in the daemon: random UUIDs.
pub(super) struct UuidIds;

impl RunnerIds for UuidIds {
    fn next_runner_id(&mut self) -> RunnerId {
        uuid::Uuid::new_v4().to_string()
    }
}

pub struct Scheduler {
    pub(super) deps: SchedulerDeps,
    /// In a fleet, the rings to the leader and to the others (nothing rings alone).
    doorbells: Doorbells,
    pub(super) core: Core,
    processor: Processor,
    last_pools: Vec<PoolStatus>,
    /// Pending jobs and the wait reasons last published for them.
    pub(super) waits: WaitBoard,
    /// Where side-effect tasks report back.
    pub(super) inputs: mpsc::UnboundedSender<Input>,
    /// Bounds registrations and container starts in flight ([`REGISTRATION_CONCURRENCY`],
    /// [`LAUNCH_CONCURRENCY`]).
    pub(super) launch_slots: super::launcher::LaunchSlots,
    /// Short-lived side-effect tasks (launch, teardown, polls), drained at shutdown.
    pub(super) tasks: TaskTracker,
    supervisor: Supervisor,
    /// Side-effect tasks stop at it: an interrupted launch or teardown is what a crash
    /// leaves, and the next start reconciles it (DESIGN §8).
    pub(super) shutdown: CancellationToken,
    faults: InjectedFaults,
    /// Deliveries processed since start (for [`InjectedFaults`]).
    processed: usize,
    /// In a fleet: where the next read of changed jobs starts, and when the whole queue was
    /// last read ([`super::fleet_sync`]).
    pub(super) sync: super::fleet_sync::SyncCursor,
    /// Launches paused while this fleet instance cannot reach the database.
    launches_paused: bool,
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
    let (inputs_tx, inputs) = mpsc::unbounded_channel();
    let config = config_updates.borrow_and_update().clone();
    let processor = Processor::new(deps.store.clone(), &config, deps.bus.clone());
    let doorbells = Doorbells::start(&deps.fleet, &wake, &shutdown, supervisor);
    let scheduler = Scheduler {
        deps,
        doorbells,
        core: Core::new(config),
        processor,
        last_pools: Vec::new(),
        waits: WaitBoard::default(),
        inputs: inputs_tx,
        launch_slots: super::launcher::LaunchSlots::new(
            REGISTRATION_CONCURRENCY,
            LAUNCH_CONCURRENCY,
        ),
        tasks: supervisor.tracker().clone(),
        supervisor: supervisor.clone(),
        shutdown: shutdown.clone(),
        faults,
        processed: 0,
        sync: Default::default(),
        launches_paused: false,
    };
    supervisor.spawn(
        "scheduler",
        scheduler.run(wake, commands, inputs, config_updates, shutdown),
    );
    SchedulerHandle { tx }
}

impl Scheduler {
    async fn run(
        mut self,
        wake: Arc<Notify>,
        mut commands: mpsc::Receiver<Command>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut config_updates: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) {
        self.restore().await;
        let fleet = self.deps.fleet.is_fleet();
        let mut revivals = self.deps.fleet.revivals();
        let mut fleet_sync = tokio::time::interval(super::fleet_sync::SYNC_INTERVAL);
        fleet_sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !self.core.config().pools.is_empty() {
            super::watch::spawn_docker_events(
                self.deps.docker.clone(),
                self.inputs.clone(),
                shutdown.clone(),
                &self.supervisor,
            );
        }
        let mut sweep = tokio::time::interval(PROCESSOR_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When stored deliveries are processed next (see PROCESS_COALESCE).
        let mut process_at: Option<tokio::time::Instant> = None;
        let mut last_sync = tokio::time::Instant::now();
        loop {
            let due = process_at.unwrap_or_else(tokio::time::Instant::now);
            let tick_at = self.next_tick();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(input) = inputs.recv() => self.step(vec![input]).await,
                Some(command) = commands.recv() => self.on_command(command).await,
                _ = wake.notified(), if process_at.is_none() => {
                    if self.deps.fleet.is_leader() {
                        process_at = Some(tokio::time::Instant::now() + PROCESS_COALESCE);
                    } else {
                        self.doorbells.deliveries.ring();
                    }
                }
                _ = tokio::time::sleep_until(due), if process_at.is_some() => {
                    process_at = None;
                    if self.process_deliveries().await {
                        process_at = Some(tokio::time::Instant::now()); // a backlog: no pause
                    }
                }
                _ = tokio::time::sleep_until(tick_at) => self.step(vec![Input::Tick]).await,
                _ = sweep.tick() => { self.process_deliveries().await; }
                Ok(()) = config_updates.changed() => {
                    let config = config_updates.borrow_and_update().clone();
                    self.reconfigure(config).await;
                }
                _ = fleet_sync.tick(), if fleet => {
                    last_sync = tokio::time::Instant::now();
                    self.sync_fleet().await;
                }
                _ = self.doorbells.read_queue.notified(), if fleet => {
                    // The leader's changes, read soon but not more often than MIN_SYNC_GAP.
                    fleet_sync.reset_at(last_sync + super::fleet_sync::MIN_SYNC_GAP);
                }
                Some(()) = super::fleet_sync::revived(&mut revivals) => self.rebuild().await,
            }
            if fleet {
                self.pause_launches_while_cut_off().await;
            }
            self.publish_pools();
            self.publish_wait_reasons(Utc::now());
        }
        // Running containers are left alone: the next start reconciles them.
        tracing::info!(
            runners = self.core.runners().len(),
            queued = self.core.queue().len(),
            "scheduler stopped"
        );
    }

    /// When to tick the core: at its next deadline, within [`MIN_TICK_WAIT`, `MAX_TICK_WAIT`].
    fn next_tick(&self) -> tokio::time::Instant {
        let now = Utc::now();
        let wait = match self.core.next_deadline(now) {
            Some(at) => (at - now).to_std().unwrap_or_default(),
            None => MAX_TICK_WAIT,
        };
        tokio::time::Instant::now() + wait.clamp(MIN_TICK_WAIT, MAX_TICK_WAIT)
    }

    /// Feeds inputs to the core and carries out what it decides.
    pub(super) async fn step(&mut self, inputs: Vec<Input>) {
        let effects = self.core.handle_all(inputs, Utc::now(), &mut UuidIds);
        self.carry_out(effects).await;
    }

    /// Takes a reloaded configuration: pools, limits and priority rules apply from the next
    /// decision; a new GitHub token or App key from the next API call. Jobs already queued
    /// keep the pool and priority they were given.
    async fn reconfigure(&mut self, config: Arc<Config>) {
        // New GitHub credentials are the shared client's business (swapped by the reload).
        self.processor.reconfigure(&config);
        let pools = config.pools.len();
        self.step(vec![Input::Reconfigured(config)]).await;
        tracing::info!(pools, "scheduler: configuration reloaded");
    }

    /// Stops launching while this fleet instance cannot reach the database, resumes after.
    async fn pause_launches_while_cut_off(&mut self) {
        let paused = !self.deps.fleet.connected();
        if paused != self.launches_paused {
            self.launches_paused = paused;
            if paused {
                tracing::error!(
                    "fleet: the database is out of reach; launching nothing until it answers"
                );
            } else {
                tracing::warn!("fleet: the database answers again; launching");
            }
            self.step(vec![Input::LaunchesPaused(paused)]).await;
        }
    }

    /// Starts over from the database, as after a restart: the fleet declared this instance
    /// dead, so its queued jobs went to others and its idle runners were deregistered; what
    /// survived (a runner on a job) is adopted, containers without a live record are removed.
    async fn rebuild(&mut self) {
        let config = self.core.config().clone();
        self.core = Core::new(config);
        self.launches_paused = false;
        self.sync = Default::default();
        self.restore().await;
    }

    /// Rebuilds the core's state from the database; a reconciliation follows.
    async fn restore(&mut self) {
        let store = self.deps.store.clone();
        let restored = async {
            anyhow::Ok((
                store.schedulable_jobs().await?,
                store.live_runners().await?,
                store.registered_scopes().await?,
            ))
        };
        match restored.await {
            Ok((jobs, runners, scopes)) => {
                for job in &jobs {
                    self.waits.note_job(job);
                }
                self.step(vec![Input::Restored {
                    jobs,
                    runners,
                    scopes,
                }])
                .await
            }
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "cannot restore scheduler state; starting empty"
            ),
        }
        if self.deps.fleet.is_fleet() {
            // At once, before launching for jobs another instance claimed.
            self.sync_fleet().await;
        }
    }

    /// Processes one batch of stored deliveries; true when more are waiting. In a fleet only
    /// the leader does, so each delivery is processed once; the others learn the jobs from
    /// the database.
    async fn process_deliveries(&mut self) -> bool {
        if !self.deps.fleet.is_leader() {
            return false;
        }
        match self.processor.process_due(Utc::now()).await {
            Ok((handled, changes)) => {
                if changes.iter().any(|c| matches!(c, Change::Job { .. })) {
                    self.doorbells.jobs.ring();
                }
                let inputs: Vec<Input> = changes
                    .into_iter()
                    .filter_map(|change| match change {
                        Change::Job { job, .. } => {
                            self.waits.note_job(&job);
                            Some(Input::Job(Box::new(job)))
                        }
                        Change::Push { event, .. } => Some(Input::Prewarm { event }),
                        Change::Run(_) => None,
                    })
                    .collect();
                if !inputs.is_empty() {
                    self.step(inputs).await;
                }
                self.processed += handled;
                if let Some(limit) = self.faults.panic_scheduler_after_deliveries
                    && self.processed >= limit
                {
                    panic!("injected fault: the scheduler panics after {limit} deliveries");
                }
                if let Some(limit) = self.faults.wedge_scheduler_after_deliveries
                    && self.processed >= limit
                {
                    tracing::warn!("injected fault: the scheduler hangs after {limit} deliveries");
                    std::future::pending::<()>().await;
                }
                handled >= super::processor::PROCESS_BATCH as usize
            }
            Err(error) => {
                // Every sweep (once a second) fails alike while the store refuses writes.
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "cannot process webhook deliveries{held}"
                    );
                }
                false
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::WaitReasons { ids, reply } => {
                let _ = reply.send(self.waits.reasons_for(&ids));
            }
            Command::Pools(reply) => {
                let _ = reply.send(self.core.pool_statuses());
            }
            Command::RemoveRunner { id, reply } => {
                let known = self
                    .core
                    .runner(&id)
                    .is_some_and(|r| r.state != RunnerState::Removed);
                if !known {
                    let _ = reply.send(Err(RemoveError::NotFound(id)));
                    return;
                }
                self.step(vec![Input::Drain {
                    runner_id: id.clone(),
                }])
                .await;
                let drained = self.core.runner(&id).cloned();
                let _ = reply.send(drained.ok_or(RemoveError::NotFound(id)));
            }
        }
    }

    pub(super) fn snapshot(&self) -> SchedulerSnapshot {
        let now = Utc::now();
        let mut runners: Vec<Runner> = self.core.runners().values().cloned().collect();
        runners.sort_by_key(|r| r.created_at);
        SchedulerSnapshot {
            queue: self
                .core
                .queue()
                .iter_ordered()
                .into_iter()
                .map(|j| QueueEntry::new(j, now, self.waits.reasons_for(&[j.id]).remove(&j.id)))
                .collect(),
            runners,
            pools: self.core.pool_statuses(),
        }
    }

    /// Publishes pools whose counters changed, and updates the gauges.
    fn publish_pools(&mut self) {
        let pools = self.core.pool_statuses();
        if pools == self.last_pools {
            return;
        }
        let instance = &self.core.config().server.instance_id;
        for pool in pools.iter().filter(|p| !self.last_pools.contains(p)) {
            self.deps.bus.publish(LiveEvent {
                kind: EventKind::Pool,
                repository: None,
                data: pool_event_data(pool, instance),
            });
        }
        self.last_pools = pools;
        self.record_gauges();
    }

    fn record_gauges(&self) {
        let (runners, queue) = (self.core.runners(), self.core.queue());
        if !self.deps.fleet.is_fleet() {
            // Alone, this daemon is the fleet (in a fleet, the leader counts every instance).
            let live = runners.values().filter(|r| r.state != RunnerState::Removed);
            metrics::gauge!(crate::metrics::FLEET_RUNNERS, "state" => "alive")
                .set(live.count() as f64);
        }
        for status in &self.last_pools {
            let stalled = if status.stalled.is_some() { 1.0 } else { 0.0 };
            metrics::gauge!(crate::metrics::POOL_STALLED, "pool" => status.name.clone())
                .set(stalled);
        }
        for pool in &self.core.config().pools {
            for state in RunnerState::ALL
                .iter()
                .filter(|s| **s != RunnerState::Removed)
            {
                let n = runners
                    .values()
                    .filter(|r| r.pool == pool.name && r.state == *state)
                    .count();
                metrics::gauge!(crate::metrics::RUNNERS, "pool" => pool.name.clone(), "state" => state.as_str()).set(n as f64);
            }
            for band in ["high", "normal", "low"] {
                let n = queue
                    .pool_iter(&pool.name)
                    .filter(|j| j.band() == band)
                    .count();
                metrics::gauge!(crate::metrics::QUEUE_DEPTH, "pool" => pool.name.clone(), "band" => band).set(n as f64);
            }
        }
    }
}

/// The `pool` event's data: the pool's counters on `instance` (in a fleet, a pool served by
/// several instances is one event stream per instance; clients key pools by name and instance).
pub fn pool_event_data(pool: &PoolStatus, instance: &str) -> serde_json::Value {
    let mut data = serde_json::to_value(pool).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.insert("instance".into(), instance.into());
    }
    data
}

/// The `runner` event clients see.
pub fn runner_event(runner: &Runner) -> LiveEvent {
    LiveEvent {
        kind: EventKind::Runner,
        repository: None,
        data: serde_json::json!({
            "id": runner.id, "pool": runner.pool, "state": runner.state.as_str(),
            "container_id": runner.container_id, "github_runner_name": runner.name,
            "github_runner_id": runner.github_runner_id, "job_id": runner.job_id,
            "launched_for": runner.launched_for, "labels": runner.labels,
            "instance": runner.instance,
            "failure_reason": runner.failure_reason, "draining": runner.draining,
            "created_at": runner.created_at, "idle_at": runner.idle_at, "busy_at": runner.busy_at,
        }),
    }
}
