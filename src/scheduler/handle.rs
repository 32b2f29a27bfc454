//! How the rest of the daemon talks to the scheduler task: commands with replies.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use std::collections::HashMap;

use crate::domain::{JobId, Runner};

pub use super::core::wait::WaitInfo;

pub use super::core::status::{PoolStatus, QueueEntry};

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
    WaitReasons {
        ids: Vec<JobId>,
        reply: oneshot::Sender<HashMap<JobId, WaitInfo>>,
    },
    Pools(oneshot::Sender<Vec<PoolStatus>>),
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

    /// Why each of these jobs waits (those queued for a pool); empty when the scheduler is
    /// not running.
    pub async fn wait_reasons(&self, ids: Vec<JobId>) -> HashMap<JobId, WaitInfo> {
        let (reply, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::WaitReasons { ids, reply })
            .await
            .is_err()
        {
            return HashMap::new();
        }
        wait.await.unwrap_or_default()
    }

    /// The pools' counters and stalls alone (health checks: no queue or runner list);
    /// `None` when the scheduler is not running.
    pub async fn pools(&self) -> Option<Vec<PoolStatus>> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(Command::Pools(reply)).await.ok()?;
        wait.await.ok()
    }

    /// Whether the scheduler task takes a command within `wait`: false when it stopped, or is
    /// stuck inside a step (deliveries are then acknowledged and never processed).
    pub async fn answers(&self, wait: std::time::Duration) -> bool {
        matches!(tokio::time::timeout(wait, self.pools()).await, Ok(Some(_)))
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
