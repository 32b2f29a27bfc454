//! The live feed of a fleet (DESIGN §9): one `seq` for every instance's events.
//!
//! An instance does not number what it publishes: its writer appends batches to the shared
//! `live_events` table, where the database numbers them under a lock held until the commit, so
//! seqs commit in order across the fleet ([`crate::store::fleet::FleetStore::append_live_events`]).
//! Every instance then reads the table in seq order ([`TAIL_INTERVAL`]) and broadcasts what it
//! finds, its own events and the others' alike: each instance's WebSocket clients and dashboard
//! see the whole fleet, and `since=<seq>` resumes on any instance.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BusMessage, EventBus, LOG_BATCH_MAX, LOG_GROUP_WINDOW};
use crate::store::Store;
use crate::store::fleet::{FleetStore, UnsequencedEvent};
use crate::telemetry::repeats::{self, Repeats};

/// How often the shared log is read for new events.
pub(super) const TAIL_INTERVAL: Duration = Duration::from_millis(100);
/// Most events read per query.
const TAIL_PAGE: u32 = 1000;

/// Appends what this instance publishes to the shared log, in group commits.
pub(super) async fn write(
    fleet: Arc<dyn FleetStore>,
    mut rx: mpsc::Receiver<UnsequencedEvent>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(LOG_BATCH_MAX);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, LOG_BATCH_MAX) => {
                if n == 0 {
                    break;
                }
                tokio::time::sleep(LOG_GROUP_WINDOW).await;
                while batch.len() < LOG_BATCH_MAX && let Ok(e) = rx.try_recv() {
                    batch.push(e);
                }
                append(fleet.as_ref(), &mut batch).await;
            }
            _ = stop.cancelled() => break,
        }
    }
    while let Ok(e) = rx.try_recv() {
        batch.push(e);
    }
    append(fleet.as_ref(), &mut batch).await;
}

async fn append(fleet: &dyn FleetStore, batch: &mut Vec<UnsequencedEvent>) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match fleet.append_live_events(batch).await {
            Ok(()) => break,
            Err(error) if attempt == 5 => {
                metrics::counter!("runnerhub_live_events_unlogged_total")
                    .increment(batch.len() as u64);
                tracing::error!(%error, events = batch.len(), "cannot log live events; giving up on this batch");
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "cannot log live events; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    batch.clear();
}

/// Broadcasts every event the shared log gains, in seq order, until `stop`.
pub(super) async fn tail(store: Arc<dyn Store>, bus: EventBus, stop: CancellationToken) {
    let failures = Repeats::new(repeats::WINDOW);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TAIL_INTERVAL) => {}
        }
        loop {
            let after = bus.last_seq();
            let rows = match store.live_events_after(after, i64::MAX, TAIL_PAGE).await {
                Ok(rows) => rows,
                Err(error) => {
                    if let Some(held) = failures.admit() {
                        tracing::warn!(%error, "cannot read the fleet's live log{held}");
                    }
                    break;
                }
            };
            let full = rows.len() == TAIL_PAGE as usize;
            for row in rows {
                bus.broadcast_logged(Arc::new(BusMessage {
                    seq: row.seq,
                    kind: row.kind,
                    repository: row.repository,
                    time: row.time,
                    text: row.message.into(),
                }));
            }
            if !full {
                break;
            }
        }
    }
}
