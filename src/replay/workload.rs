//! Recorded deliveries folded into the jobs replay simulates, with the daemon's own rules:
//! [`Job::from_observation`] and [`Job::apply`] (monotonic, keyed on the action), pool
//! selection and priority rules.
//!
//! A job arrives at its `created_at` (when GitHub queued it, as the live `wait_seconds`
//! counts). A job a runner ran (`runner_name` set) runs for its recorded
//! `completed_at − started_at`; a job cancelled while queued leaves the queue at its
//! `completed_at`. A job with no `completed` delivery is unfinished: reported, not guessed.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::Config;
use crate::domain::{Job, JobId, JobStatus, JobTraits, LabelSet, PriorityRules, select_pool};

use super::input::{InputError, RecordedDelivery};

/// What happens to a job once it is queued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// A runner ran it for this long.
    Runs { run_ms: i64 },
    /// Cancelled while still queued, at this time (ms since the epoch).
    CancelledWhileQueued { at_ms: i64 },
}

/// One job as the simulation sees it.
#[derive(Debug, Clone)]
pub struct ReplayJob {
    pub id: JobId,
    pub repository: String,
    pub labels: LabelSet,
    /// The labels as GitHub sent them (a runner launched for the job registers with these).
    pub raw_labels: Vec<String>,
    pub pool: String,
    pub priority: i64,
    pub created_ms: i64,
    pub fate: Fate,
    /// The wait the daemon recorded live (`created_at` → `started_at`), for fidelity checks.
    pub live_wait_seconds: Option<f64>,
}

/// What the log held, beyond the simulated jobs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub deliveries: u64,
    /// Deliveries of events replay does not model, by event.
    pub skipped_events: BTreeMap<String, u64>,
    /// Repeats of a (job, action) already seen: redeliveries and catch-up rows.
    pub duplicates: u64,
    /// Jobs no configured pool serves (GitHub-hosted, other labels).
    pub no_pool: u64,
    /// Jobs with no `completed` delivery in the log.
    pub unfinished: u64,
    /// Completed jobs with no start or runner recorded that were not cancelled while queued.
    pub without_run_time: u64,
}

#[derive(Debug, Default)]
pub struct Workload {
    /// Jobs by arrival, oldest first.
    pub jobs: Vec<ReplayJob>,
    pub counts: Counts,
}

/// Folds deliveries as they are read; [`WorkloadBuilder::finish`] classifies the jobs.
pub struct WorkloadBuilder {
    pools: Vec<(String, LabelSet)>,
    rules: PriorityRules,
    jobs: HashMap<JobId, Job>,
    seen: HashSet<(JobId, JobStatus)>,
    counts: Counts,
}

impl WorkloadBuilder {
    pub fn new(config: &Config) -> Self {
        WorkloadBuilder {
            pools: config
                .pools
                .iter()
                .map(|p| (p.name.clone(), LabelSet::new(&p.labels)))
                .collect(),
            rules: PriorityRules::new(&config.priority.rules),
            jobs: HashMap::new(),
            seen: HashSet::new(),
            counts: Counts::default(),
        }
    }

    pub fn add(&mut self, line: usize, delivery: RecordedDelivery) -> Result<(), InputError> {
        self.counts.deliveries += 1;
        if delivery.event != "workflow_job" {
            *self
                .counts
                .skipped_events
                .entry(delivery.event)
                .or_default() += 1;
            return Ok(());
        }
        let observation =
            crate::webhook::payload::workflow_job(delivery.payload.get()).map_err(|e| {
                InputError::Line {
                    line,
                    message: e.to_string(),
                }
            })?;
        if !self.seen.insert((observation.id, observation.action)) {
            self.counts.duplicates += 1;
            return Ok(());
        }
        match self.jobs.get_mut(&observation.id) {
            Some(job) => {
                job.apply(&observation, delivery.received_at);
            }
            None => {
                let job = Job::from_observation(&observation, 0, None, delivery.received_at);
                self.jobs.insert(observation.id, job);
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> Workload {
        let mut jobs = Vec::new();
        for job in self.jobs.into_values() {
            let labels = LabelSet::new(&job.labels);
            let pools = self.pools.iter().map(|(n, l)| (n.as_str(), l));
            let Some(pool) = select_pool(&labels, pools) else {
                self.counts.no_pool += 1;
                continue;
            };
            if job.status != JobStatus::Completed {
                self.counts.unfinished += 1;
                continue;
            }
            let created = job.created_at.unwrap_or(job.first_seen_at);
            let fate = match (&job.runner_name, job.started_at, job.completed_at) {
                (Some(_), Some(started), Some(completed)) => Fate::Runs {
                    run_ms: (completed - started).num_milliseconds().max(0),
                },
                (None, _, Some(completed)) => Fate::CancelledWhileQueued {
                    at_ms: completed.timestamp_millis(),
                },
                _ => {
                    self.counts.without_run_time += 1;
                    continue;
                }
            };
            jobs.push(ReplayJob {
                id: job.id,
                repository: job.repository.clone(),
                pool: pool.to_owned(),
                priority: self.rules.score_job(JobTraits {
                    labels: &labels,
                    repository: &job.repository,
                    workflow: job.workflow_name.as_deref(),
                }),
                created_ms: created.timestamp_millis(),
                fate,
                live_wait_seconds: job.wait_seconds(),
                raw_labels: job.labels,
                labels,
            });
        }
        jobs.sort_by_key(|j| (j.created_ms, j.id));
        Workload {
            jobs,
            counts: self.counts,
        }
    }
}

/// Reads a whole events file into a workload.
pub fn load(config: &Config, reader: impl std::io::BufRead) -> Result<Workload, InputError> {
    let mut builder = WorkloadBuilder::new(config);
    super::input::read_deliveries(reader, |line, d| builder.add(line, d))?;
    Ok(builder.finish())
}
