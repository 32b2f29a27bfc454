//! How the rest of the daemon talks to the scheduler task: commands with replies.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::domain::Runner;

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
}

impl QueueEntry {
    pub fn new(job: &QueuedJob, now: chrono::DateTime<chrono::Utc>) -> Self {
        QueueEntry {
            id: job.id,
            pool: job.pool.clone(),
            repository: job.repository.clone(),
            labels: job.labels.clone(),
            priority: job.priority,
            band: job.band(),
            queued_at: job.queued_at,
            wait_seconds: ((now - job.queued_at).num_milliseconds().max(0)) as f64 / 1000.0,
        }
    }
}

/// The scheduler's live state in one piece (dashboard snapshot).
#[derive(Debug, Clone, Serialize)]
pub struct SchedulerSnapshot {
    /// Waiting jobs, best first.
    pub queue: Vec<QueueEntry>,
    /// Runners not yet removed.
    pub runners: Vec<Runner>,
    pub pools: Vec<PoolStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("runner {0} is not known or already removed")]
    NotFound(String),
    #[error("the scheduler is not running")]
    Stopped,
}

pub(super) enum Command {
    Snapshot(oneshot::Sender<SchedulerSnapshot>),
    RemoveRunner {
        id: String,
        reply: oneshot::Sender<Result<Runner, RemoveError>>,
    },
}

/// Cheap to clone; every call is a message to the scheduler task.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub(super) tx: mpsc::Sender<Command>,
}

impl SchedulerHandle {
    /// The current queue, runners and pools; `None` when the scheduler is not running.
    pub async fn snapshot(&self) -> Option<SchedulerSnapshot> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(Command::Snapshot(reply)).await.ok()?;
        wait.await.ok()
    }

    /// Drains a runner: an idle one is deregistered and removed now; a busy one after its job.
    pub async fn remove_runner(&self, id: String) -> Result<Runner, RemoveError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Command::RemoveRunner { id, reply })
            .await
            .map_err(|_| RemoveError::Stopped)?;
        wait.await.map_err(|_| RemoveError::Stopped)?
    }
}
