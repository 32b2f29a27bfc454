//! Durable ingest with group commit.
//!
//! Handlers hand a checked delivery to [`IngestQueue::submit`] and wait. One writer task takes
//! everything queued and writes it in a single transaction; once that has committed, it hands
//! the waiters to a task that answers them when the commit is on disk, and goes on with the
//! next batch. So the cost of a commit is shared by all deliveries that arrived meanwhile, the
//! cost of an fsync by all commits made meanwhile, and throughput grows with load while each
//! acknowledgement still means "on disk".

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::intake::NewDelivery;
use crate::store::{InsertOutcome, Store, StoreError};
use crate::telemetry::repeats::{self, Repeats};

/// Deliveries written per transaction at most.
pub const MAX_BATCH: usize = 512;
/// Deliveries waiting for the writer at most; beyond this, submit waits (backpressure).
const QUEUE_CAPACITY: usize = 8192;

/// Why a delivery could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("the database did not accept the write")]
    Storage,
}

struct Pending {
    delivery: NewDelivery,
    done: oneshot::Sender<Result<InsertOutcome, IngestError>>,
}

/// Handle used by the webhook handler.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Pending>,
    health: Arc<WriteHealth>,
}

/// Whether the writer can store deliveries, as its last batch found.
#[derive(Default)]
struct WriteHealth {
    /// When the last batch failed, if none succeeded since.
    last_failure: std::sync::Mutex<Option<Instant>>,
}

/// How long a failed write keeps the daemon unready without a later attempt (each failure starts
/// it again, so a daemon that keeps failing stays unready): a load balancer
/// that takes an unready daemon out sends it nothing to retry with, so after this it is ready
/// again and the next delivery tells (a daemon with a full disk flaps instead of staying out
/// for good after the disk has room again).
pub const WRITE_FAILURE_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

impl WriteHealth {
    fn record(&self, ok: bool) {
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        *last = (!ok).then(Instant::now);
        let failing = if ok { 0.0 } else { 1.0 };
        metrics::gauge!(crate::metrics::WEBHOOK_INGEST_WRITES_FAILING).set(failing);
    }
}

impl IngestQueue {
    /// Starts the writer. `stored` is notified after every commit that stored something new,
    /// so the processor wakes without polling. The writer drains what is queued before it exits
    /// on `shutdown`, so no submitted delivery is left unanswered.
    pub fn start(
        store: Arc<dyn Store>,
        stored: Arc<Notify>,
        shutdown: CancellationToken,
        supervisor: &crate::supervisor::Supervisor,
    ) -> IngestQueue {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let tracker = supervisor.tracker().clone();
        let health = Arc::new(WriteHealth::default());
        supervisor.spawn(
            "ingest writer",
            write_loop(store, rx, stored, shutdown, tracker, health.clone()),
        );
        IngestQueue { tx, health }
    }

    /// Whether deliveries cannot be stored now: the last batch failed, less than
    /// [`WRITE_FAILURE_HOLD`] ago; how long ago. For `/readyz`.
    pub fn writes_failing(&self) -> Option<std::time::Duration> {
        let last = *self
            .health
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.map(|at| at.elapsed())
            .filter(|failing| *failing < WRITE_FAILURE_HOLD)
    }

    /// Makes `delivery` durable; resolves after its transaction has committed.
    pub async fn submit(&self, delivery: NewDelivery) -> Result<InsertOutcome, IngestError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { delivery, done })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        wait.await.map_err(|_| IngestError::ShuttingDown)?
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    stored: Arc<Notify>,
    shutdown: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    health: Arc<WriteHealth>,
) {
    let most = store.concurrent_appends().max(1);
    // A permit is taken before collecting a batch: while every transaction the store allows is
    // in flight, deliveries wait in the channel and the next batch is larger.
    let in_flight = Arc::new(Semaphore::new(most));
    let finished = Arc::new(Notify::new());
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return; // never closed
        };
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        let received = tokio::select! {
            // Prefer draining: on shutdown, everything already submitted is still written.
            biased;
            n = collect(&mut rx, &mut batch, &in_flight, most, &finished) => n,
            _ = shutdown.cancelled() => {
                rx.close();
                let room = MAX_BATCH - batch.len();
                rx.recv_many(&mut batch, room).await;
                batch.len()
            }
        };
        if received == 0 {
            tracing::debug!("ingest writer stopped");
            return;
        }
        let (store, stored, tracker_, health, finished) = (
            store.clone(),
            stored.clone(),
            tracker.clone(),
            health.clone(),
            finished.clone(),
        );
        tracker.spawn(async move {
            write_batch(store.as_ref(), batch, &stored, &tracker_, &health).await;
            drop(permit);
            finished.notify_waiters();
        });
    }
}

/// Deliveries queued per transaction already in flight before another one starts beside them.
/// Each transaction costs the server a fixed amount of work whatever its size (planning, locks,
/// its commit record), so under load a few large batches take less of the cores than many of
/// one or two. When the disk is slow and deliveries pile up, more transactions go in flight
/// and their commits still wait on one flush together.
const QUEUED_PER_TRANSACTION: usize = 8;

/// Fills `batch` with what is queued (at least one delivery; 0 means the channel closed). With
/// no other transaction in flight it goes at once; beside `n` of them, once `n ×
/// QUEUED_PER_TRANSACTION` deliveries are queued, or sooner as those finish.
async fn collect(
    rx: &mut mpsc::Receiver<Pending>,
    batch: &mut Vec<Pending>,
    in_flight: &Semaphore,
    most: usize,
    finished: &Notify,
) -> usize {
    loop {
        // Listening before counting: a transaction that finishes after the count wakes us.
        let one_finished = finished.notified();
        tokio::pin!(one_finished);
        one_finished.as_mut().enable();
        // This writer holds one permit; every other one taken is a transaction in flight.
        let others = most - 1 - in_flight.available_permits();
        let enough = (others * QUEUED_PER_TRANSACTION).clamp(1, MAX_BATCH);
        if batch.len() >= enough {
            return batch.len();
        }
        tokio::select! {
            biased;
            n = rx.recv_many(batch, MAX_BATCH - batch.len()) => if n == 0 {
                return batch.len();
            },
            _ = one_finished, if !batch.is_empty() => {}
        }
    }
}

/// Commits `batch`, then leaves answering its waiters to a task that first waits until the
/// commit is durable.
async fn write_batch(
    store: &dyn Store,
    batch: Vec<Pending>,
    stored: &Arc<Notify>,
    tracker: &tokio_util::task::TaskTracker,
    health: &Arc<WriteHealth>,
) {
    let started = Instant::now();
    let (deliveries, waiters): (Vec<NewDelivery>, Vec<_>) =
        batch.into_iter().map(|p| (p.delivery, p.done)).unzip();
    metrics::histogram!(crate::metrics::WEBHOOK_INGEST_BATCH_SIZE).record(deliveries.len() as f64);
    let committed = match store.append_deliveries(&deliveries).await {
        Ok(committed) => committed,
        Err(error) => {
            health.record(false);
            return fail(waiters, &error);
        }
    };
    let stored = stored.clone();
    let health = health.clone();
    tracker.spawn(async move {
        if let Err(error) = committed.durable.await {
            health.record(false);
            return fail(waiters, &error);
        }
        health.record(true);
        metrics::histogram!(crate::metrics::WEBHOOK_INGEST_COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let outcomes = committed.value;
        let any_new = outcomes
            .iter()
            .any(|o| matches!(o, InsertOutcome::Stored { .. }));
        for (done, outcome) in waiters.into_iter().zip(outcomes) {
            let _ = done.send(Ok(outcome));
        }
        if any_new {
            stored.notify_one();
        }
    });
}

fn fail(waiters: Vec<oneshot::Sender<Result<InsertOutcome, IngestError>>>, error: &StoreError) {
    // Every batch fails alike while the disk is full: one line per window, with the count.
    static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
    if let Some(held) = REPEATS.admit() {
        tracing::error!(%error, deliveries = waiters.len(), "cannot store webhook deliveries{held}");
    }
    for done in waiters {
        let _ = done.send(Err(IngestError::Storage));
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures::poll;

    use super::*;

    fn pending(n: usize) -> Vec<Pending> {
        (0..n)
            .map(|i| Pending {
                delivery: NewDelivery {
                    delivery_id: format!("guid-{i}"),
                    event: "ping".to_owned(),
                    action: None,
                    repository: None,
                    payload: crate::webhook::payload_codec::Payload::compress("{}"),
                    signature_valid: true,
                    received_at: chrono::Utc::now(),
                    settled: None,
                },
                done: oneshot::channel().0,
            })
            .collect()
    }

    async fn send(tx: &mpsc::Sender<Pending>, n: usize) {
        for p in pending(n) {
            tx.send(p).await.unwrap();
        }
    }

    #[tokio::test]
    async fn alone_a_batch_goes_with_what_is_queued() {
        let (tx, mut rx) = mpsc::channel(64);
        let (in_flight, finished) = (Semaphore::new(4), Notify::new());
        let _mine = in_flight.acquire().await.unwrap();
        send(&tx, 1).await;
        let mut batch = Vec::new();
        assert_eq!(
            collect(&mut rx, &mut batch, &in_flight, 4, &finished).await,
            1
        );
    }

    #[tokio::test]
    async fn beside_a_transaction_in_flight_it_waits_for_a_batchs_worth() {
        let (tx, mut rx) = mpsc::channel(64);
        let (in_flight, finished) = (Semaphore::new(4), Notify::new());
        let _other = in_flight.acquire().await.unwrap();
        let _mine = in_flight.acquire().await.unwrap();
        send(&tx, 3).await;
        let mut batch = Vec::new();
        let mut collecting = pin!(collect(&mut rx, &mut batch, &in_flight, 4, &finished));
        assert!(poll!(collecting.as_mut()).is_pending());
        send(&tx, QUEUED_PER_TRANSACTION - 4).await;
        assert!(poll!(collecting.as_mut()).is_pending());
        send(&tx, 1).await;
        assert_eq!(collecting.await, QUEUED_PER_TRANSACTION);
    }

    #[tokio::test]
    async fn it_goes_with_fewer_once_the_transaction_in_flight_finishes() {
        let (tx, mut rx) = mpsc::channel(64);
        let (in_flight, finished) = (Semaphore::new(4), Notify::new());
        let other = in_flight.acquire().await.unwrap();
        let _mine = in_flight.acquire().await.unwrap();
        send(&tx, 3).await;
        let mut batch = Vec::new();
        let mut collecting = pin!(collect(&mut rx, &mut batch, &in_flight, 4, &finished));
        assert!(poll!(collecting.as_mut()).is_pending());
        drop(other);
        finished.notify_waiters();
        assert_eq!(collecting.await, 3);
    }

    #[tokio::test]
    async fn a_closed_empty_queue_gives_nothing() {
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        drop(tx);
        let (in_flight, finished) = (Semaphore::new(4), Notify::new());
        let _mine = in_flight.acquire().await.unwrap();
        let mut batch = Vec::new();
        assert_eq!(
            collect(&mut rx, &mut batch, &in_flight, 4, &finished).await,
            0
        );
    }
}
