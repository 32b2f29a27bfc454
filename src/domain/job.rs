//! The job state machine, driven by `workflow_job` deliveries.
//!
//! `queued → (waiting ↔ queued) → in_progress → completed(conclusion)`, and
//! `queued → completed(cancelled)`. Deliveries arrive duplicated and out of order, so
//! [`Job::apply`] is monotonic: a status never moves backwards, and descriptive fields
//! (runner, timestamps, conclusion) are filled in from whichever delivery carries them.
//! Applying any permutation of a job's deliveries, with any duplicates, ends in the same
//! record as applying them in order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// GitHub's job id.
pub type JobId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Waiting,
    InProgress,
    Completed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Waiting => "waiting",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "waiting" => JobStatus::Waiting,
            "in_progress" => JobStatus::InProgress,
            "completed" => JobStatus::Completed,
            _ => return None,
        })
    }

    /// Progress order. `queued` and `waiting` share a rank: a job moves between them
    /// (environment approval) before it starts.
    fn rank(self) -> u8 {
        match self {
            JobStatus::Queued | JobStatus::Waiting => 0,
            JobStatus::InProgress => 1,
            JobStatus::Completed => 2,
        }
    }

    /// Further along than `other` (queued and waiting are level).
    pub fn is_ahead_of(self, other: JobStatus) -> bool {
        self.rank() > other.rank()
    }

    /// Waiting for a runner (queued or waiting for approval).
    pub fn is_pending(self) -> bool {
        self.rank() == 0
    }
}

/// Why runnerhub will never give a job a runner (DESIGN §13): the job left the queue for good,
/// or never entered it. Set once, never cleared; GitHub's `status` goes on being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// No configured pool serves its labels (GitHub-hosted, or another fleet's).
    NoPool,
    /// Its repository is not `owner/name`: there is no scope a runner could register at.
    UnusableRepository,
    /// GitHub answers 404 to every runner registration at its scope (the repository or
    /// organization does not exist, or the credentials cannot see it).
    UnknownScope,
    /// GitHub answers 404 for the job itself (its run was deleted): closed by catch-up.
    NotFound,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 4] = [
        JobOutcome::NoPool,
        JobOutcome::UnusableRepository,
        JobOutcome::UnknownScope,
        JobOutcome::NotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::NoPool => "no_pool",
            JobOutcome::UnusableRepository => "unusable_repository",
            JobOutcome::UnknownScope => "unknown_scope",
            JobOutcome::NotFound => "not_found",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The webhook `action` of a `workflow_job` delivery: authoritative over the payload's status.
pub type JobAction = JobStatus;

/// What one `workflow_job` delivery says about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobObservation {
    pub action: JobAction,
    pub id: JobId,
    pub run_id: i64,
    pub run_attempt: i64,
    pub repository: String,
    pub workflow_name: Option<String>,
    pub name: String,
    pub labels: Vec<String>,
    pub conclusion: Option<String>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub runner_group_name: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A job as runnerhub knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub run_id: i64,
    pub run_attempt: i64,
    pub repository: String,
    pub workflow_name: Option<String>,
    pub name: String,
    pub labels: Vec<String>,
    /// Score from the label rules (aging is applied by the queue, not stored).
    pub priority: i64,
    /// The pool that serves this job, or none (GitHub-hosted or unmatched).
    pub pool: Option<String>,
    pub status: JobStatus,
    pub conclusion: Option<String>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub runner_group_name: Option<String>,
    /// GitHub's `created_at`: when the job was queued.
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When runnerhub first heard of the job (its own clock).
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when runnerhub will never launch a runner for the job, with why in
    /// `outcome_detail` (a sentence for people).
    #[serde(default)]
    pub outcome: Option<JobOutcome>,
    #[serde(default)]
    pub outcome_detail: Option<String>,
}

/// What applying an observation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The status moved (from, to).
    Moved { from: JobStatus, to: JobStatus },
    /// Same status; maybe some fields were filled in.
    Unchanged,
    /// The delivery is older than the state (e.g. `queued` after `in_progress`): recorded, not applied.
    Stale {
        status: JobStatus,
        action: JobAction,
    },
}

impl Job {
    /// A new record from the first delivery seen for a job.
    pub fn from_observation(
        obs: &JobObservation,
        priority: i64,
        pool: Option<String>,
        now: DateTime<Utc>,
    ) -> Job {
        let mut job = Job {
            id: obs.id,
            run_id: obs.run_id,
            run_attempt: obs.run_attempt,
            repository: obs.repository.clone(),
            workflow_name: obs.workflow_name.clone(),
            name: obs.name.clone(),
            labels: obs.labels.clone(),
            priority,
            pool,
            status: obs.action,
            conclusion: None,
            runner_id: None,
            runner_name: None,
            runner_group_name: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            first_seen_at: now,
            updated_at: now,
            outcome: None,
            outcome_detail: None,
        };
        job.fill_in(obs);
        job
    }

    /// Applies a delivery monotonically; see the module docs.
    pub fn apply(&mut self, obs: &JobObservation, now: DateTime<Utc>) -> Transition {
        let before = self.clone();
        let from = self.status;
        let to = obs.action;
        let transition = if to.rank() > from.rank() {
            self.status = to;
            Transition::Moved { from, to }
        } else if to.rank() < from.rank() {
            Transition::Stale {
                status: from,
                action: to,
            }
        } else if from != to && from.is_pending() {
            // waiting ↔ queued: the newest word wins.
            self.status = to;
            Transition::Moved { from, to }
        } else {
            Transition::Unchanged
        };
        self.fill_in(obs);
        if *self != before {
            self.updated_at = now;
        }
        transition
    }

    /// Copies fields that a delivery knows and the record does not. Values GitHub sends for
    /// one job agree across deliveries, so "first non-empty wins" is order-independent.
    fn fill_in(&mut self, obs: &JobObservation) {
        fn fill<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
        if self.labels.is_empty() {
            self.labels = obs.labels.clone();
        }
        fill(&mut self.workflow_name, &obs.workflow_name);
        fill(&mut self.created_at, &obs.created_at);
        // Runner fields from a queued delivery are not trustworthy (the octokit example
        // carries them while queued; GitHub sends null): take them once the job has started.
        if obs.action.rank() >= JobStatus::InProgress.rank() {
            fill(&mut self.runner_id, &obs.runner_id);
            fill(&mut self.runner_name, &obs.runner_name);
            fill(&mut self.runner_group_name, &obs.runner_group_name);
            fill(&mut self.started_at, &obs.started_at);
        }
        if obs.action == JobStatus::Completed {
            fill(&mut self.conclusion, &obs.conclusion);
            fill(&mut self.completed_at, &obs.completed_at);
        }
    }

    /// Records that runnerhub will never launch a runner for this job, unless an outcome was
    /// already recorded (the first one stands).
    pub fn set_outcome(&mut self, outcome: JobOutcome, detail: String, now: DateTime<Utc>) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
            self.outcome_detail = Some(detail);
            self.updated_at = now;
        }
    }

    /// Whether runnerhub wants a runner for it: pending, and not refused for good.
    pub fn wants_runner(&self) -> bool {
        self.status.is_pending() && self.outcome.is_none()
    }

    /// Queue wait: queued (GitHub's `created_at`) → started. Only for jobs a runner took.
    pub fn wait_seconds(&self) -> Option<f64> {
        self.runner_name.as_ref()?;
        seconds_between(self.created_at?, self.started_at?)
    }

    /// Run time: started → completed, for jobs that ran on a runner.
    pub fn duration_seconds(&self) -> Option<f64> {
        self.runner_name.as_ref()?;
        seconds_between(self.started_at?, self.completed_at?)
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
    let ms = (to - from).num_milliseconds();
    (ms >= 0).then(|| ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests;
