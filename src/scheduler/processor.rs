//! Turns stored deliveries into job and workflow-run state.
//!
//! Reads due deliveries from the durable log in id order, applies them to the domain state
//! machines, and commits the new state together with each delivery's outcome in one
//! transaction. A crash between the ack and the commit leaves the delivery unprocessed, and
//! it is processed after the restart; applying one twice is harmless (the machines are
//! idempotent).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::Config;
use crate::domain::{
    Job, JobObservation, JobOutcome, JobStatus, JobTraits, LabelSet, PriorityRules, Transition,
    WorkflowRun, select_pool,
};
use crate::events::{EventBus, EventKind, LiveEvent};
use crate::metrics as catalog;
use crate::store::{DeliveryOutcome, PendingDelivery, ProcessedDelivery, ProcessingBatch, Store};
use crate::telemetry::repeats::{self, Repeats};
use crate::webhook::payload;

/// Why a job catch-up closed (its `not_found` outcome).
const GONE_DETAIL: &str =
    "GitHub answers 404 for the job (its run was deleted): closed by catch-up";

/// Deliveries processed per transaction.
pub const PROCESS_BATCH: u32 = 256;
/// A delivery that keeps failing is given up after this many attempts.
pub const MAX_ATTEMPTS: i64 = 5;
/// First retry delay; doubles per attempt.
const RETRY_BASE_SECS: i64 = 2;

/// What one processed delivery changed, for whoever schedules runners.
#[derive(Debug, Clone)]
pub enum Change {
    Job {
        job: Job,
        transition: Transition,
    },
    Run(WorkflowRun),
    Push {
        event: String,
        repository: Option<String>,
    },
}

pub struct Processor {
    store: Arc<dyn Store>,
    pools: Vec<(String, LabelSet)>,
    rules: PriorityRules,
    bus: EventBus,
}

struct Decoded {
    outcome: DeliveryOutcome,
    change: Option<Change>,
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, config: &Config, bus: EventBus) -> Self {
        let mut processor = Processor {
            store,
            pools: Vec::new(),
            rules: PriorityRules::default(),
            bus,
        };
        processor.reconfigure(config);
        processor
    }

    /// Takes new pools and priority rules (at start and on reload).
    pub fn reconfigure(&mut self, config: &Config) {
        self.pools = config
            .pools
            .iter()
            .map(|p| (p.name.clone(), LabelSet::new(&p.labels)))
            .collect();
        self.rules = PriorityRules::new(&config.priority.rules);
    }

    /// Processes one batch of due deliveries; returns how many it handled and what changed.
    pub async fn process_due(
        &mut self,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(usize, Vec<Change>)> {
        let due = self.store.due_deliveries(now, PROCESS_BATCH).await?;
        if due.is_empty() {
            return Ok((0, Vec::new()));
        }
        let n = due.len();
        let mut changes = Vec::new();
        match self.process_batch(&due, now).await {
            Ok(results) => changes.extend(self.publish(results)),
            Err(error) if n > 1 => {
                // One poison delivery must not block the rest: fall back to one at a time.
                // A store that refuses every write fails every sweep: bounded lines then.
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::warn!(%error, "batch commit failed; processing deliveries one by one{held}");
                }
                for delivery in &due {
                    match self
                        .process_batch(std::slice::from_ref(delivery), now)
                        .await
                    {
                        Ok(results) => changes.extend(self.publish(results)),
                        Err(error) => {
                            self.record_failure(delivery, &error.to_string(), now)
                                .await?
                        }
                    }
                }
            }
            Err(error) => {
                self.record_failure(&due[0], &error.to_string(), now)
                    .await?
            }
        }
        Ok((n, changes))
    }

    async fn record_failure(
        &self,
        d: &PendingDelivery,
        error: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
        if let Some(held) = REPEATS.admit() {
            tracing::warn!(delivery = %d.delivery_id, event = %d.event, error, "delivery processing failed{held}");
        }
        let batch = ProcessingBatch {
            deliveries: vec![failed(
                d,
                format!("storing the result failed: {error}"),
                now,
            )],
            ..Default::default()
        };
        self.store.commit_processing(&batch).await?;
        Ok(())
    }

    async fn process_batch(
        &mut self,
        due: &[PendingDelivery],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(PendingDelivery, Decoded, Duration)>> {
        let mut observations = Vec::with_capacity(due.len());
        let mut job_ids = Vec::new();
        let mut run_ids = Vec::new();
        for d in due {
            let obs = decode(d);
            match &obs {
                Ok(Observation::Job(o)) => job_ids.push(o.id),
                Ok(Observation::Run(o)) => run_ids.push(o.id),
                _ => {}
            }
            observations.push(obs);
        }
        let mut jobs: HashMap<i64, Job> = self
            .store
            .jobs_by_id(&job_ids)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        let mut runs: HashMap<i64, WorkflowRun> = self
            .store
            .runs_by_id(&run_ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let mut batch = ProcessingBatch::default();
        let mut results = Vec::with_capacity(due.len());
        let (mut dirty_jobs, mut dirty_runs) = (Vec::new(), Vec::new());
        for (d, obs) in due.iter().zip(observations) {
            let started = Instant::now();
            let decoded = match obs {
                Ok(Observation::Job(o)) => {
                    let gone = super::catch_up::is_gone_delivery(&d.delivery_id);
                    let (decoded, changed) = self.apply_job(&mut jobs, &o, gone, now);
                    if changed {
                        dirty_jobs.push(o.id);
                    }
                    decoded
                }
                Ok(Observation::Run(o)) => {
                    let changed = match runs.get_mut(&o.id) {
                        Some(run) => run.apply(&o),
                        None => {
                            runs.insert(o.id, WorkflowRun::from_observation(&o));
                            true
                        }
                    };
                    if changed {
                        dirty_runs.push(o.id);
                    }
                    let note = if changed {
                        "run updated"
                    } else {
                        "stale or duplicate run update"
                    };
                    Decoded {
                        outcome: DeliveryOutcome::Processed(note.into()),
                        change: changed.then(|| Change::Run(runs[&o.id].clone())),
                    }
                }
                Ok(Observation::Recorded(note)) => Decoded {
                    outcome: DeliveryOutcome::Processed(note.into()),
                    change: matches!(d.event.as_str(), "push" | "pull_request").then(|| {
                        Change::Push {
                            event: d.event.clone(),
                            repository: d.repository.clone(),
                        }
                    }),
                },
                Ok(Observation::Ignored(reason)) => Decoded {
                    outcome: DeliveryOutcome::Ignored(reason),
                    change: None,
                },
                Err(error) => Decoded {
                    outcome: retry_or_give_up(d, error, now),
                    change: None,
                },
            };
            batch.deliveries.push(ProcessedDelivery {
                id: d.id,
                outcome: decoded.outcome.clone(),
                attempts: d.attempts + 1,
                at: now,
            });
            results.push((d.clone(), decoded, started.elapsed()));
        }
        dirty_jobs.sort_unstable();
        dirty_jobs.dedup();
        dirty_runs.sort_unstable();
        dirty_runs.dedup();
        batch.jobs = dirty_jobs.iter().map(|id| jobs[id].clone()).collect();
        batch.runs = dirty_runs.iter().map(|id| runs[id].clone()).collect();
        self.store.commit_processing(&batch).await?;
        Ok(results)
    }

    /// Applies one observation of a job; `gone`: catch-up made it up because GitHub answers
    /// 404 for the job.
    fn apply_job(
        &self,
        jobs: &mut HashMap<i64, Job>,
        o: &JobObservation,
        gone: bool,
        now: DateTime<Utc>,
    ) -> (Decoded, bool) {
        let (transition, changed) = match jobs.get_mut(&o.id) {
            Some(job) => {
                let before = job.clone();
                let t = job.apply(o, now);
                if gone {
                    job.set_outcome(JobOutcome::NotFound, GONE_DETAIL.into(), now);
                }
                (t, *job != before)
            }
            None => {
                let labels = LabelSet::new(&o.labels);
                let pool = select_pool(&labels, self.pools.iter().map(|(n, l)| (n.as_str(), l)));
                let priority = self.rules.score_job(JobTraits {
                    labels: &labels,
                    repository: &o.repository,
                    workflow: o.workflow_name.as_deref(),
                });
                let mut job = Job::from_observation(o, priority, pool.map(str::to_owned), now);
                if job.pool.is_none() {
                    let detail = format!("no pool serves labels [{}]", job.labels.join(", "));
                    job.set_outcome(JobOutcome::NoPool, detail, now);
                }
                jobs.insert(o.id, job);
                (
                    Transition::Moved {
                        from: o.action,
                        to: o.action,
                    },
                    true,
                )
            }
        };
        let job = &jobs[&o.id];
        let outcome = match (&transition, &job.pool) {
            (Transition::Stale { status, action }, _) => DeliveryOutcome::Ignored(format!(
                "stale: `{}` after the job reached `{}`",
                action.as_str(),
                status.as_str()
            )),
            (_, None) => DeliveryOutcome::Ignored(format!(
                "no pool serves labels [{}]: recorded only (GitHub-hosted or unmatched)",
                job.labels.join(", ")
            )),
            (Transition::Unchanged, _) => {
                DeliveryOutcome::Processed(format!("job already `{}`", job.status.as_str()))
            }
            (Transition::Moved { to, .. }, _) => {
                DeliveryOutcome::Processed(format!("job `{}`", to.as_str()))
            }
        };
        let change = changed.then(|| Change::Job {
            job: job.clone(),
            transition,
        });
        (Decoded { outcome, change }, changed)
    }

    /// Records metrics and live events for committed results; returns the changes.
    fn publish(&self, results: Vec<(PendingDelivery, Decoded, Duration)>) -> Vec<Change> {
        let mut changes = Vec::new();
        for (d, decoded, elapsed) in results {
            let status = decoded.outcome.label();
            let event = catalog::event_label(&d.event);
            metrics::counter!(catalog::WEBHOOK_EVENTS_TOTAL, "event" => event, "status" => status)
                .increment(1);
            metrics::histogram!(catalog::WEBHOOK_PROCESSING_DURATION_SECONDS, "event" => event)
                .record(elapsed.as_secs_f64());
            self.bus.publish(LiveEvent {
                kind: EventKind::Webhook,
                repository: d.repository.clone(),
                data: json!({
                    "id": d.id, "delivery": d.delivery_id, "event": d.event, "action": d.action,
                    "outcome": status, "detail": decoded.outcome.detail(),
                }),
            });
            if let Some(Change::Job { job, transition }) = &decoded.change {
                record_job_metrics(job, transition);
                self.bus.publish(LiveEvent {
                    kind: EventKind::Job,
                    repository: Some(job.repository.clone()),
                    data: job_json(job),
                });
            }
            if let Some(Change::Run(run)) = &decoded.change {
                self.bus.publish(LiveEvent {
                    kind: EventKind::WorkflowRun,
                    repository: Some(run.repository.clone()),
                    data: serde_json::to_value(run).unwrap_or_default(),
                });
            }
            changes.extend(decoded.change);
        }
        changes
    }
}

/// The job as clients see it: the record plus derived wait and duration.
pub fn job_json(job: &Job) -> serde_json::Value {
    let mut value = serde_json::to_value(job).unwrap_or_default();
    value["wait_seconds"] = json!(job.wait_seconds());
    value["duration_seconds"] = json!(job.duration_seconds());
    value
}

fn record_job_metrics(job: &Job, transition: &Transition) {
    let Transition::Moved { from, to } = transition else {
        return;
    };
    let repository = job.repository.clone();
    if from == to && to.is_pending() {
        metrics::counter!(catalog::GITHUB_JOBS_QUEUED_TOTAL, "repository" => repository.clone())
            .increment(1);
    }
    if *to == JobStatus::Completed {
        let conclusion = catalog::conclusion_label(job.conclusion.as_deref());
        metrics::counter!(catalog::GITHUB_JOBS_COMPLETED_TOTAL, "repository" => repository.clone(), "conclusion" => conclusion)
            .increment(1);
        if let Some(seconds) = job.duration_seconds() {
            metrics::histogram!(catalog::GITHUB_JOB_DURATION_SECONDS, "repository" => repository)
                .record(seconds);
        }
    }
}

enum Observation {
    Job(JobObservation),
    Run(crate::domain::RunObservation),
    Recorded(&'static str),
    Ignored(String),
}

fn decode(d: &PendingDelivery) -> Result<Observation, String> {
    match d.event.as_str() {
        "workflow_job" => payload::workflow_job(&d.payload)
            .map(Observation::Job)
            .map_err(|e| e.to_string()),
        "workflow_run" => payload::workflow_run(&d.payload)
            .map(Observation::Run)
            .map_err(|e| e.to_string()),
        "push" | "pull_request" => Ok(Observation::Recorded("recorded")),
        "ping" => Ok(Observation::Recorded("pong")),
        other => Ok(Observation::Ignored(format!(
            "event `{other}` is not handled"
        ))),
    }
}

fn failed(d: &PendingDelivery, error: String, now: DateTime<Utc>) -> ProcessedDelivery {
    ProcessedDelivery {
        id: d.id,
        outcome: retry_or_give_up(d, error, now),
        attempts: d.attempts + 1,
        at: now,
    }
}

/// Retries with exponential backoff until [`MAX_ATTEMPTS`], then gives up (kept in the log).
fn retry_or_give_up(d: &PendingDelivery, error: String, now: DateTime<Utc>) -> DeliveryOutcome {
    let attempt = d.attempts + 1;
    let retry_at = (attempt < MAX_ATTEMPTS)
        .then(|| now + chrono::Duration::seconds(RETRY_BASE_SECS << (attempt - 1).clamp(0, 10)));
    DeliveryOutcome::Failed { error, retry_at }
}
