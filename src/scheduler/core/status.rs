//! What clients see of the core's state: per-pool counters and waiting jobs.

use serde::Serialize;

use super::queue::QueuedJob;

/// Per-pool counters, as `GET /api/runners/pool/status` and `pool` events show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub labels: Vec<String>,
    pub max_runners: u32,
    pub min_idle: u32,
    /// Requested or creating: on the way, not yet online.
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    /// Jobs waiting for this pool.
    pub queued: usize,
    /// Launch failures in a row (launches pause with backoff while > 0).
    pub consecutive_failures: u32,
}

/// A waiting job as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub id: i64,
    pub pool: String,
    pub repository: String,
    pub labels: Vec<String>,
    pub priority: i64,
    pub band: &'static str,
    pub queued_at: chrono::DateTime<chrono::Utc>,
    pub wait_seconds: f64,
    /// Why it waits (DESIGN §13), and the sentence for people.
    pub wait_reason: Option<super::wait::WaitReason>,
    pub wait_detail: Option<String>,
}

impl QueueEntry {
    pub fn new(
        job: &QueuedJob,
        now: chrono::DateTime<chrono::Utc>,
        wait: Option<super::wait::WaitInfo>,
    ) -> Self {
        let (wait_reason, wait_detail) = wait.map(|w| (w.reason, w.detail)).unzip();
        QueueEntry {
            id: job.id,
            pool: job.pool.clone(),
            repository: job.repository.clone(),
            labels: job.labels.clone(),
            priority: job.priority,
            band: job.band(),
            queued_at: job.queued_at,
            wait_seconds: ((now - job.queued_at).num_milliseconds().max(0)) as f64 / 1000.0,
            wait_reason,
            wait_detail,
        }
    }
}
