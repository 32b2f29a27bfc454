//! Supervision of the daemon's own long-lived tasks (DESIGN §8).
//!
//! A task that panics or returns while nobody asked it to stop leaves the daemon acknowledging
//! webhooks that nothing will process (the scheduler), or not storing them at all (the ingest
//! writer). So the first such failure is logged at ERROR with the task's name and cause, the
//! daemon's shutdown token is cancelled (the webhook endpoint and `/readyz` answer 503 from then
//! on, and the systemd watchdog is no longer fed), and [`crate::app::run_with`] ends with an
//! error, so the process exits non-zero and systemd restarts it. Everything acknowledged is
//! already durable: the next start processes it.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Faults a test injects to see supervision work; none by default. The binary reads them from
/// the environment only in debug builds (see `main.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectedFaults {
    /// The scheduler task panics once it has processed this many deliveries.
    pub panic_scheduler_after_deliveries: Option<usize>,
    /// The scheduler task hangs (awaits forever, as on a call that never returns) once it has
    /// processed this many deliveries.
    pub wedge_scheduler_after_deliveries: Option<usize>,
}

/// The first owned task that failed, and how.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    /// The task's name, as it was spawned (`scheduler`, `ingest writer`, …).
    pub task: &'static str,
    /// `panicked: <message>` or `ended unexpectedly`.
    pub cause: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "background task `{}` {}", self.task, self.cause)
    }
}

/// Spawns the owned tasks and watches them; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    tracker: TaskTracker,
    /// Cancelled when the tasks are told to stop: a task that returns after that is done.
    stopping: CancellationToken,
    /// The daemon's shutdown token, cancelled on the first failure.
    shutdown: CancellationToken,
    failure: Arc<OnceLock<TaskFailure>>,
}

impl Supervisor {
    /// Tasks spawned on `tracker` are expected to return once `stopping` or `shutdown` is
    /// cancelled, and not before.
    pub fn new(
        tracker: TaskTracker,
        stopping: CancellationToken,
        shutdown: CancellationToken,
    ) -> Supervisor {
        Supervisor {
            tracker,
            stopping,
            shutdown,
            failure: Arc::default(),
        }
    }

    /// The tracker the daemon drains at shutdown, for short-lived tasks (a launch, a commit's
    /// acknowledgement) that report their own outcome.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Runs `future` on the tracker as the task named `task`, and watches it.
    pub fn spawn<F>(&self, task: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.watch(task, self.tracker.spawn(future));
    }

    /// Runs `future` outside the tracker (for a task that must outlive the tracked ones, such
    /// as the live event log's writer) and watches it; the token is cancelled when it ended.
    pub fn spawn_untracked<F>(&self, task: &'static str, future: F) -> CancellationToken
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.watch(task, tokio::spawn(future))
    }

    /// The first failure, if any task failed.
    pub fn failure(&self) -> Option<&TaskFailure> {
        self.failure.get()
    }

    fn watch(&self, task: &'static str, handle: JoinHandle<()>) -> CancellationToken {
        let ended = CancellationToken::new();
        let supervisor = self.clone();
        let signal = ended.clone();
        // Not on the tracker: draining waits for the tasks, not for their watchers.
        tokio::spawn(async move {
            let result = handle.await;
            signal.cancel();
            let cause = match result {
                Ok(())
                    if supervisor.stopping.is_cancelled() || supervisor.shutdown.is_cancelled() =>
                {
                    return;
                }
                Ok(()) => "ended unexpectedly".to_owned(),
                Err(error) => match error.try_into_panic() {
                    Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                    Err(error) => format!("was cancelled: {error}"),
                },
            };
            supervisor.fail(TaskFailure { task, cause });
        });
        ended
    }

    fn fail(&self, failure: TaskFailure) {
        tracing::error!(
            task = failure.task,
            cause = %failure.cause,
            "{failure}; stopping the daemon so that it is restarted"
        );
        let _ = self.failure.set(failure);
        self.shutdown.cancel();
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor() -> (Supervisor, CancellationToken, CancellationToken) {
        let stopping = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(TaskTracker::new(), stopping.clone(), shutdown.clone());
        (supervisor, stopping, shutdown)
    }

    #[tokio::test]
    async fn a_panic_is_a_failure_that_names_the_task_and_stops_the_daemon() {
        let (supervisor, _, shutdown) = supervisor();
        supervisor.spawn("scheduler", async { panic!("boom {}", 42) });
        shutdown.cancelled().await;
        let failure = supervisor.failure().expect("recorded");
        assert_eq!(failure.task, "scheduler");
        assert_eq!(failure.cause, "panicked: boom 42");
    }

    #[tokio::test]
    async fn returning_before_being_asked_to_stop_is_a_failure() {
        let (supervisor, _, shutdown) = supervisor();
        supervisor.spawn("catch-up", async {});
        shutdown.cancelled().await;
        assert_eq!(supervisor.failure().unwrap().cause, "ended unexpectedly");
    }

    #[tokio::test]
    async fn returning_once_asked_to_stop_is_not() {
        let (supervisor, stopping, shutdown) = supervisor();
        stopping.cancel();
        supervisor
            .spawn_untracked("writer", async {})
            .cancelled()
            .await;
        tokio::task::yield_now().await;
        assert!(supervisor.failure().is_none());
        assert!(!shutdown.is_cancelled());
    }
}
