//! Doorbells between the instances of a fleet (PostgreSQL NOTIFY and LISTEN).
//!
//! Only the leader processes deliveries, and the others learn the jobs from the database. By
//! polling alone, a delivery taken by an instance that does not lead waited for the leader's
//! next sweep (up to a second), and the job it queued for the others' next read of the queue
//! (up to half a second more). So an instance that stores deliveries rings the leader, whose
//! processor runs at once, and the leader rings the others when processing changed jobs, who
//! read the queue at once. A ring lost (the listening connection broke, the database was
//! away) costs only that wait: the sweep and the periodic read still run. Under load the rings
//! are spaced ([`RING_GAP`]), and the others read the queue at most five times a second.
//!
//! A ring is its own statement, never part of an ingest transaction: a transaction that
//! notifies takes a database-wide lock from its commit until it is durable, which would queue
//! every instance's ingest commits one behind the other. Rings are coalesced: while one is
//! being sent or spaced, any number of further rings send one more.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::store::fleet::{Bell, FleetStore, Ring};
use crate::supervisor::Supervisor;
use crate::telemetry::repeats::{self, Repeats};

/// The scheduler's doorbells: what it rings, and what the others' rings wake.
pub struct Doorbells {
    /// Rung when this instance stored deliveries but does not lead.
    pub deliveries: Ringer,
    /// Rung when this instance, leading, changed jobs by processing deliveries.
    pub jobs: Ringer,
    /// Notified when the leader rang `jobs`.
    pub read_queue: Arc<Notify>,
}

impl Doorbells {
    /// The ringers, and the task that answers the others' rings: deliveries wake this
    /// instance's processor (`wake`) while it leads, the leader's changes read the queue.
    pub fn start(
        fleet: &Fleet,
        wake: &Arc<Notify>,
        shutdown: &CancellationToken,
        supervisor: &Supervisor,
    ) -> Doorbells {
        let read_queue = Arc::new(Notify::new());
        if fleet.is_fleet() {
            let answers = Answers {
                process: wake.clone(),
                read_queue: read_queue.clone(),
            };
            supervisor.spawn(
                "fleet doorbell",
                listen(fleet.clone(), answers, shutdown.clone()),
            );
        }
        Doorbells {
            deliveries: Ringer::start(fleet, Bell::Deliveries, shutdown.clone()),
            jobs: Ringer::start(fleet, Bell::Jobs, shutdown.clone()),
            read_queue,
        }
    }
}

/// The least time between two rings of one bell by one instance. Far below the polling it
/// replaces (a second, half a second), and at the leader's own pace: it gathers the deliveries
/// of 25 ms before processing them (`PROCESS_COALESCE`).
const RING_GAP: std::time::Duration = std::time::Duration::from_millis(25);

/// Rings one bell for the fleet, coalescing rings made while one is being sent.
#[derive(Clone)]
pub struct Ringer(Arc<Notify>);

impl Ringer {
    /// Starts the task that sends `bell`'s rings for `fleet`; without a fleet, rings go nowhere.
    pub fn start(fleet: &Fleet, bell: Bell, shutdown: CancellationToken) -> Ringer {
        let rung = Arc::new(Notify::new());
        if let Some(member) = fleet.as_member() {
            let (store, me, rung) = (member.store.clone(), member.instance.clone(), rung.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = rung.notified() => send(store.as_ref(), bell, &me).await,
                    }
                    // Rings made meanwhile wait and go as one: under load an instance would
                    // otherwise ring as fast as the database answers, each ring a commit.
                    tokio::time::sleep(RING_GAP).await;
                }
            });
        }
        Ringer(rung)
    }

    pub fn ring(&self) {
        // A permit is kept when the sender is busy: one more ring after the current one.
        self.0.notify_one();
    }
}

async fn send(store: &dyn FleetStore, bell: Bell, me: &str) {
    if let Err(error) = store.ring(bell, me).await {
        static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
        if let Some(held) = REPEATS.admit() {
            tracing::debug!(%error, bell = bell.channel(), "fleet: cannot ring the others{held}");
        }
    }
}

/// What a ring heard does here.
struct Answers {
    /// The processor's wake-up: rung by deliveries, answered only while leading.
    process: Arc<Notify>,
    /// The read of the queue: rung by the leader's changes to jobs.
    pub read_queue: Arc<Notify>,
}

/// Listens to the fleet's bells until `shutdown`, listening again after the connection breaks.
async fn listen(fleet: Fleet, answers: Answers, shutdown: CancellationToken) {
    let Some(member) = fleet.as_member().cloned() else {
        return;
    };
    loop {
        let listening = tokio::select! {
            _ = shutdown.cancelled() => return,
            listening = member.store.rings() => listening,
        };
        let mut rings = match listening {
            Ok(rings) => rings,
            Err(error) => {
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::warn!(%error, "fleet: cannot listen to the others' rings; polling meanwhile{held}");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let ring = tokio::select! {
                _ = shutdown.cancelled() => return,
                ring = rings.next() => ring,
            };
            match ring {
                Some(Ok(ring)) => answer(&ring, &fleet, &member.instance, &answers),
                Some(Err(_)) | None => break, // listen again
            }
        }
    }
}

fn answer(ring: &Ring, fleet: &Fleet, me: &str, answers: &Answers) {
    match ring.bell {
        // Only the leader processes; another instance woken would only ring again.
        Bell::Deliveries if fleet.is_leader() => answers.process.notify_one(),
        Bell::Jobs if ring.by != me => answers.read_queue.notify_one(),
        _ => {}
    }
}
