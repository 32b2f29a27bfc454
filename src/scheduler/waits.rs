//! Why queued jobs wait, as clients see it: the core decides the reasons
//! ([`super::core::wait`]); this keeps the last ones for the API, publishes a `job` event
//! when a job's reason changes, and sets the `runnerhub_jobs_waiting*` gauges.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::actor::Scheduler;
use super::core::wait::{WaitInfo, WaitReason};
use super::processor::job_json;
use crate::domain::{Job, JobId};
use crate::events::{EventKind, LiveEvent};

/// Reasons are recomputed and published at most this often: a queue of thousands whose
/// reason flips with every launch attempt (backoff ends, the launch fails, backoff again)
/// would otherwise flood every WebSocket client. The scheduler loop runs at least once a
/// second (its delivery sweep), so a change is published within about this long.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The pending jobs (full records, for `job` events) and their last published reasons.
#[derive(Default)]
pub(super) struct WaitBoard {
    jobs: HashMap<JobId, Job>,
    reasons: HashMap<JobId, WaitInfo>,
    published_at: Option<DateTime<Utc>>,
}

impl WaitBoard {
    /// A job as last delivered (or restored, or refused).
    pub(super) fn note_job(&mut self, job: &Job) {
        if job.wants_runner() {
            self.jobs.insert(job.id, job.clone());
        } else {
            self.jobs.remove(&job.id);
            self.reasons.remove(&job.id);
        }
    }

    /// The current reasons of those of `ids` that are queued for a pool.
    pub(super) fn reasons_for(&self, ids: &[JobId]) -> HashMap<JobId, WaitInfo> {
        ids.iter()
            .filter_map(|id| self.reasons.get(id).map(|info| (*id, info.clone())))
            .collect()
    }
}

/// A job's JSON (`job_json`) with its `wait_reason` and `wait_detail` when it has them.
pub fn job_json_with_wait(job: &Job, wait: Option<&WaitInfo>) -> Value {
    let mut value = job_json(job);
    if let Some(info) = wait {
        value["wait_reason"] = json!(info.reason);
        value["wait_detail"] = json!(info.detail);
    }
    value
}

impl Scheduler {
    /// Recomputes every queued job's reason: a `job` event for each that changed, and the
    /// gauges.
    pub(super) fn publish_wait_reasons(&mut self, now: DateTime<Utc>) {
        let recent = self.waits.published_at.is_some_and(|at| {
            (now - at)
                .to_std()
                .is_ok_and(|since| since < PUBLISH_INTERVAL)
        });
        if recent {
            return;
        }
        self.waits.published_at = Some(now);
        let reasons = self.core.wait_reasons(now);
        for (id, info) in &reasons {
            if self.waits.reasons.get(id) == Some(info) {
                continue;
            }
            if let Some(job) = self.waits.jobs.get(id) {
                self.deps.bus.publish(LiveEvent {
                    kind: EventKind::Job,
                    repository: Some(job.repository.clone()),
                    data: job_json_with_wait(job, Some(info)),
                });
            }
        }
        self.record_wait_gauges(&reasons, now);
        self.waits.reasons = reasons;
    }

    fn record_wait_gauges(&self, reasons: &HashMap<JobId, WaitInfo>, now: DateTime<Utc>) {
        let config = self.core.config();
        let alert_after = config.scheduling.wait_alert_after;
        let mut counts: HashMap<(&str, WaitReason), (usize, usize)> = HashMap::new();
        for (id, info) in reasons {
            let Some(job) = self.core.queue().get(*id) else {
                continue;
            };
            let waited = (now - job.queued_at).to_std().unwrap_or(Duration::ZERO);
            let entry = counts.entry((job.pool.as_str(), info.reason)).or_default();
            entry.0 += 1;
            if waited > alert_after {
                entry.1 += 1;
            }
        }
        for pool in &config.pools {
            for reason in WaitReason::ALL {
                let (n, long) = counts
                    .get(&(pool.name.as_str(), reason))
                    .copied()
                    .unwrap_or_default();
                let labels = [
                    ("pool", pool.name.clone()),
                    ("reason", reason.as_str().to_owned()),
                ];
                metrics::gauge!(crate::metrics::JOBS_WAITING, &labels).set(n as f64);
                metrics::gauge!(crate::metrics::JOBS_WAITING_TOO_LONG, &labels).set(long as f64);
            }
        }
    }
}
