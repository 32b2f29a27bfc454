//! Durable ingest with group commit.
//!
//! Handlers hand a checked delivery to [`IngestQueue::submit`] and wait. One writer task takes
//! everything queued, writes it in a single transaction, and answers every waiter after the
//! commit. While one batch is being fsynced the next accumulates, so the cost of a commit is
//! shared by all deliveries that arrived meanwhile: throughput grows with load while each
//! acknowledgement still means "on disk".

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::intake::NewDelivery;
use crate::store::{InsertOutcome, Store};

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
}

impl IngestQueue {
    /// Starts the writer. `stored` is notified after every commit that stored something new,
    /// so the processor wakes without polling. The writer drains what is queued before it exits
    /// on `shutdown`, so no submitted delivery is left unanswered.
    pub fn start(
        store: Arc<dyn Store>,
        stored: Arc<Notify>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> IngestQueue {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tracker.spawn(write_loop(store, rx, stored, shutdown));
        IngestQueue { tx }
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
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            // Prefer draining: on shutdown, everything already submitted is still written.
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
            _ = shutdown.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, MAX_BATCH).await
            }
        };
        if received == 0 {
            tracing::debug!("ingest writer stopped");
            return;
        }
        write_batch(store.as_ref(), &mut batch, &stored).await;
    }
}

async fn write_batch(store: &dyn Store, batch: &mut Vec<Pending>, stored: &Notify) {
    let started = Instant::now();
    let (deliveries, waiters): (Vec<NewDelivery>, Vec<_>) =
        batch.drain(..).map(|p| (p.delivery, p.done)).unzip();
    let result = store.insert_deliveries(&deliveries).await;
    metrics::histogram!(crate::metrics::WEBHOOK_INGEST_COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::WEBHOOK_INGEST_BATCH_SIZE).record(deliveries.len() as f64);
    match result {
        Ok(outcomes) => {
            let any_new = outcomes
                .iter()
                .any(|o| matches!(o, InsertOutcome::Stored { .. }));
            for (done, outcome) in waiters.into_iter().zip(outcomes) {
                let _ = done.send(Ok(outcome));
            }
            if any_new {
                stored.notify_one();
            }
        }
        Err(error) => {
            tracing::error!(%error, deliveries = waiters.len(), "cannot store webhook deliveries");
            for done in waiters {
                let _ = done.send(Err(IngestError::Storage));
            }
        }
    }
}
