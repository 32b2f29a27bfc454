//! A model of GitHub and Docker around the core, in virtual time: effects are answered at the
//! instant they are made, runners come online `boot` after their launch (or never), GitHub
//! hands an idle online runner the oldest job its labels cover, and jobs end when told or
//! after their run time. Faults are switches.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::config::{Config, PoolConfig};
use crate::docker::ManagedContainer;
use crate::domain::{Job, JobId, JobStatus, LabelSet, Runner, RunnerId, RunnerState};
use crate::github::RegisteredRunner;
use crate::scheduler::core::outcomes::{LaunchFailure, Launched, Teardown};
use crate::scheduler::core::{Core, Effect, Input, RunnerIds};

pub struct Seq(pub usize);

impl RunnerIds for Seq {
    fn next_runner_id(&mut self) -> RunnerId {
        self.0 += 1;
        format!("r{:04}", self.0)
    }
}

/// A runner as the outside world sees it.
#[derive(Debug, Clone)]
pub struct Outside {
    pub name: String,
    pub scope: String,
    pub labels: LabelSet,
    pub github_id: i64,
    pub launched_at: DateTime<Utc>,
    pub registered: bool,
    pub container: Option<bool>,
    pub busy_with: Option<JobId>,
}

/// A check run on the core's state before each launch is carried out.
pub type LaunchCheck = Box<dyn Fn(&Core, &Runner)>;

pub struct Harness {
    pub core: Core,
    pub now: DateTime<Utc>,
    ids: Seq,
    /// Every effect, with its time.
    pub log: Vec<(DateTime<Utc>, Effect)>,
    /// Ticks the core asked for.
    pub ticks: usize,
    /// Launch → online; `None`: never online.
    pub boot: Option<Duration>,
    /// Registration scopes where GitHub refuses JIT registrations (403).
    pub refused_scopes: HashSet<String>,
    /// Registration scopes GitHub answers 404 for (unknown, or invisible to the credentials).
    pub not_found_scopes: HashSet<String>,
    /// Docker has no image: every container fails to start.
    pub image_missing: bool,
    /// The next JIT registration succeeds at GitHub while the client times out: the launch
    /// fails with no GitHub id, and the registration stays.
    pub leak_next_registration: bool,
    pub outside: BTreeMap<RunnerId, Outside>,
    /// What the database holds: runners as last saved, jobs as last delivered.
    pub saved_runners: BTreeMap<RunnerId, Runner>,
    pub jobs: BTreeMap<JobId, Job>,
    /// How long each job runs once a runner takes it (none: until `complete`).
    pub run_for: HashMap<JobId, Duration>,
    job_ends: BinaryHeap<Reverse<(DateTime<Utc>, JobId)>>,
    pending: VecDeque<Input>,
    /// GitHub's `in_progress` deliveries are held back (a poll beats the webhook).
    pub hold_deliveries: bool,
    pub held: Vec<Job>,
    /// Checked before every launch is carried out (the property test's invariants).
    pub on_launch: Option<LaunchCheck>,
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
}

pub fn pool(name: &str, labels: &[&str], max: u32) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        max_runners: max,
        min_idle: 0,
        idle_timeout: Duration::from_secs(10 * 60),
        bootstrap_timeout: Duration::from_secs(2 * 60),
        ..PoolConfig::default()
    }
}

pub fn config(pools: Vec<PoolConfig>, host: u32) -> Config {
    let mut config = Config {
        pools,
        ..Config::default()
    };
    config.limits.max_runners = host;
    config
}

impl Harness {
    pub fn new(config: Config) -> Self {
        let mut h = Harness {
            core: Core::new(Arc::new(config)),
            now: t0(),
            ids: Seq(0),
            log: Vec::new(),
            ticks: 0,
            boot: Some(Duration::from_secs(10)),
            refused_scopes: HashSet::new(),
            not_found_scopes: HashSet::new(),
            image_missing: false,
            leak_next_registration: false,
            outside: BTreeMap::new(),
            saved_runners: BTreeMap::new(),
            jobs: BTreeMap::new(),
            run_for: HashMap::new(),
            job_ends: BinaryHeap::new(),
            pending: VecDeque::new(),
            hold_deliveries: false,
            held: Vec::new(),
            on_launch: None,
        };
        h.feed(Input::Restored {
            jobs: Vec::new(),
            runners: Vec::new(),
            scopes: Vec::new(),
        });
        h
    }

    /// The process died (kill -9) and starts again: a new core from what the database holds;
    /// the outside world is untouched.
    pub fn restart(&mut self) {
        let config = self.core.config().clone();
        self.core = Core::new(config);
        self.pending.clear();
        let jobs = self
            .jobs
            .values()
            .filter(|j| j.status != JobStatus::Completed)
            .cloned()
            .collect();
        let runners = self
            .saved_runners
            .values()
            .filter(|r| r.state != RunnerState::Removed)
            .cloned()
            .collect();
        let mut scopes: Vec<String> = self
            .saved_runners
            .values()
            .map(|r| r.scope.clone())
            .collect();
        scopes.sort();
        scopes.dedup();
        self.feed(Input::Restored {
            jobs,
            runners,
            scopes,
        });
    }

    pub fn feed(&mut self, input: Input) {
        self.pending.push_back(input);
        self.settle();
    }

    /// Answers effects and lets GitHub assign until nothing more happens at this instant.
    fn settle(&mut self) {
        // GitHub acts on its own time: runners that came online since are handed jobs first.
        self.assign();
        loop {
            while let Some(input) = self.pending.pop_front() {
                let effects = self.core.handle(input, self.now, &mut self.ids);
                for effect in effects {
                    self.log.push((self.now, effect.clone()));
                    self.answer(effect);
                }
            }
            self.assign();
            if self.pending.is_empty() {
                return;
            }
        }
    }

    /// Runs virtual time forward by `span`: jobs end on time, the core ticks at its deadlines.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        loop {
            let job_end = self.job_ends.peek().map(|Reverse((at, _))| *at);
            let deadline = self.core.next_deadline(self.now);
            let Some(at) = [job_end, deadline].into_iter().flatten().min() else {
                break;
            };
            if at > until {
                break;
            }
            self.now = at.max(self.now);
            while let Some(Reverse((at, job))) = self.job_ends.peek().copied() {
                if at > self.now {
                    break;
                }
                self.job_ends.pop();
                self.complete(job);
            }
            if deadline.is_some_and(|d| d <= self.now) {
                self.ticks += 1;
                self.feed(Input::Tick);
            }
        }
        self.now = until;
    }

    pub fn queue_job(&mut self, id: JobId, repository: &str, labels: &[&str], priority: i64) {
        let pools: Vec<(String, LabelSet)> = self
            .core
            .config()
            .pools
            .iter()
            .map(|p| (p.name.clone(), LabelSet::new(&p.labels)))
            .collect();
        let pool = crate::domain::select_pool(
            &LabelSet::new(labels),
            pools.iter().map(|(n, l)| (n.as_str(), l)),
        )
        .map(str::to_owned);
        let job = Job {
            id,
            run_id: id,
            run_attempt: 1,
            repository: repository.into(),
            workflow_name: None,
            name: format!("job {id}"),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            priority,
            pool,
            status: JobStatus::Queued,
            conclusion: None,
            runner_id: None,
            runner_name: None,
            runner_group_name: None,
            created_at: Some(self.now),
            started_at: None,
            completed_at: None,
            first_seen_at: self.now,
            updated_at: self.now,
            outcome: None,
            outcome_detail: None,
        };
        self.deliver(job);
    }

    fn deliver(&mut self, job: Job) {
        self.jobs.insert(job.id, job.clone());
        self.feed(Input::Job(Box::new(job)));
    }

    /// The job ends (its runner's container exits: ephemeral).
    pub fn complete(&mut self, id: JobId) {
        let Some(mut job) = self.jobs.get(&id).cloned() else {
            return;
        };
        if job.status == JobStatus::Completed {
            return;
        }
        job.status = JobStatus::Completed;
        job.completed_at = Some(self.now);
        let runner = self
            .outside
            .iter_mut()
            .find(|(_, o)| o.busy_with == Some(id))
            .map(|(id, o)| {
                o.busy_with = None;
                o.registered = false;
                o.container = o.container.map(|_| false);
                id.clone()
            });
        self.deliver(job);
        if let Some(runner_id) = runner {
            self.feed(Input::ContainerExited {
                runner_id,
                exit_code: Some(0),
                oom: false,
            });
        }
    }

    /// A runner's container dies on its own.
    pub fn crash(&mut self, runner_id: &str) {
        if let Some(o) = self.outside.get_mut(runner_id)
            && o.container == Some(true)
        {
            o.container = Some(false);
            let job = o.busy_with.take();
            o.registered = false;
            self.feed(Input::ContainerExited {
                runner_id: runner_id.into(),
                exit_code: Some(137),
                oom: false,
            });
            if let Some(job) = job {
                // GitHub fails a job whose runner vanished.
                self.complete(job);
            }
        }
    }

    fn online(&self, o: &Outside) -> bool {
        o.registered
            && o.container == Some(true)
            && self
                .boot
                .is_some_and(|boot| self.now >= o.launched_at + boot)
    }

    /// GitHub's rule: each idle online runner takes the oldest queued job its labels cover.
    fn assign(&mut self) {
        let idle: Vec<RunnerId> = self
            .outside
            .iter()
            .filter(|(_, o)| o.busy_with.is_none() && self.online(o))
            .map(|(id, _)| id.clone())
            .collect();
        for runner_id in idle {
            let (labels, scope) = {
                let o = &self.outside[&runner_id];
                (o.labels.clone(), o.scope.clone())
            };
            let taken: HashSet<JobId> = self.outside.values().filter_map(|o| o.busy_with).collect();
            let oldest = self
                .jobs
                .values()
                .filter(|j| j.status == JobStatus::Queued && !taken.contains(&j.id))
                .filter(|j| registered_for(&scope, &j.repository))
                .filter(|j| LabelSet::new(&j.labels).is_subset_of(&labels))
                .min_by_key(|j| (j.created_at, j.id))
                .cloned();
            let Some(mut job) = oldest else { continue };
            let o = self.outside.get_mut(&runner_id).unwrap();
            o.busy_with = Some(job.id);
            job.status = JobStatus::InProgress;
            job.started_at = Some(self.now);
            job.runner_name = Some(o.name.clone());
            if let Some(run) = self.run_for.get(&job.id) {
                self.job_ends.push(Reverse((self.now + *run, job.id)));
            }
            self.jobs.insert(job.id, job.clone());
            if self.hold_deliveries {
                self.held.push(job);
            } else {
                self.pending.push_back(Input::Job(Box::new(job)));
            }
        }
    }

    fn answer(&mut self, effect: Effect) {
        match effect {
            Effect::SaveRunner(runner) => {
                self.saved_runners.insert(runner.id.clone(), runner);
            }
            Effect::Launch(runner) => {
                if let Some(check) = &self.on_launch {
                    check(&self.core, &runner);
                }
                self.saved_runners.insert(runner.id.clone(), runner.clone());
                let github_id = self.outside.len() as i64 + 1;
                let leaked = std::mem::take(&mut self.leak_next_registration);
                let result = if leaked {
                    Err(LaunchFailure {
                        reason: "github_error",
                        message: "JIT registration timed out".into(),
                        github_runner_id: None,
                        scope_not_found: false,
                    })
                } else if self.refused_scopes.contains(&runner.scope) {
                    Err(LaunchFailure {
                        reason: "github_error",
                        message: "JIT registration refused: 403".into(),
                        github_runner_id: None,
                        scope_not_found: false,
                    })
                } else if self.not_found_scopes.contains(&runner.scope) {
                    Err(LaunchFailure {
                        reason: "github_error",
                        message: "JIT registration refused: 404".into(),
                        github_runner_id: None,
                        scope_not_found: true,
                    })
                } else if self.image_missing {
                    Err(LaunchFailure {
                        reason: "image_missing",
                        message: "image not found".into(),
                        github_runner_id: Some(github_id),
                        scope_not_found: false,
                    })
                } else {
                    Ok(Launched {
                        github_runner_id: github_id,
                        container_id: format!("c-{}", runner.id),
                    })
                };
                self.outside.insert(
                    runner.id.clone(),
                    Outside {
                        name: runner.name.clone(),
                        scope: runner.scope.clone(),
                        labels: LabelSet::new(&runner.labels),
                        github_id,
                        launched_at: self.now,
                        registered: leaked
                            || !(self.refused_scopes.contains(&runner.scope)
                                || self.not_found_scopes.contains(&runner.scope)),
                        container: result.is_ok().then_some(true),
                        busy_with: None,
                    },
                );
                self.pending.push_back(Input::Launched {
                    runner_id: runner.id,
                    result,
                });
            }
            Effect::Teardown { runner_id, request } => {
                let outcome = match self.outside.get_mut(&runner_id) {
                    Some(o) if o.busy_with.is_some() => Teardown::Busy,
                    Some(o) => {
                        // GitHub deletes by id: a registration whose id was never learnt stays.
                        if request.github_runner_id.is_some() {
                            o.registered = false;
                        }
                        o.container = None;
                        Teardown::Done
                    }
                    None => Teardown::Done,
                };
                self.pending
                    .push_back(Input::TornDown { runner_id, outcome });
            }
            Effect::ListContainers => {
                let listed = self
                    .outside
                    .iter()
                    .filter_map(|(id, o)| {
                        Some(ManagedContainer {
                            id: format!("c-{id}"),
                            name: o.name.clone(),
                            pool: None,
                            runner_id: Some(id.clone()),
                            instance: Some(self.core.config().server.instance_id.clone()),
                            running: o.container?,
                            exit_code: None,
                            created: None,
                        })
                    })
                    .collect();
                self.pending.push_back(Input::Containers(Ok(listed)));
            }
            Effect::ListGithubRunners { scopes, full } => {
                let observed = scopes
                    .into_iter()
                    .map(|scope| {
                        let path = scope.api_path();
                        let listed = self
                            .outside
                            .values()
                            .filter(|o| o.registered && o.scope == path)
                            .map(|o| RegisteredRunner {
                                id: o.github_id,
                                name: o.name.clone(),
                                status: if self.online(o) { "online" } else { "offline" }.into(),
                                busy: o.busy_with.is_some(),
                                labels: Vec::new(),
                            })
                            .collect();
                        (scope, Ok(listed))
                    })
                    .collect();
                self.pending
                    .push_back(Input::GithubRunners { full, observed });
            }
            Effect::RemoveContainer { container_id, .. } => {
                let id = container_id.trim_start_matches("c-").to_owned();
                if let Some(o) = self.outside.get_mut(&id) {
                    o.container = None;
                }
            }
            Effect::RemoveRegistration { name, .. } => {
                for o in self.outside.values_mut().filter(|o| o.name == name) {
                    o.registered = false;
                }
            }
            Effect::RefuseJob {
                job_id,
                outcome,
                detail,
                ..
            } => {
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.set_outcome(outcome, detail, self.now);
                }
            }
            Effect::JobWaited { .. }
            | Effect::RunnerOnline { .. }
            | Effect::LaunchFailed { .. } => {}
        }
    }

    /// Launches so far, in order: (time, runner).
    pub fn launches(&self) -> Vec<(DateTime<Utc>, Runner)> {
        self.log
            .iter()
            .filter_map(|(at, e)| match e {
                Effect::Launch(r) => Some((*at, r.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn runner_state(&self, id: &str) -> Option<RunnerState> {
        self.core.runner(id).map(|r| r.state)
    }
}

/// A runner registered at `scope` can be handed jobs of `repository`: its own repository's,
/// or any of its organization's.
pub fn registered_for(scope: &str, repository: &str) -> bool {
    match (scope.strip_prefix("repos/"), scope.strip_prefix("orgs/")) {
        (Some(repo), _) => repo == repository,
        (_, Some(org)) => repository.split('/').next() == Some(org),
        _ => false,
    }
}
