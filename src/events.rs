//! The in-process event bus: every state change, numbered, broadcast and logged.
//!
//! Producers call [`EventBus::publish`]. The bus gives the event the next `seq`, serializes it
//! once (every WebSocket client sends the same bytes), broadcasts it at once, and hands it to a
//! writer task that appends it to `live_events` in group commits. Broadcasting never waits for
//! the database or for any subscriber: a slow subscriber lags and catches up from the log.
//!
//! `seq` survives restarts: the daemon starts above both the highest stored seq and a
//! reservation written ahead of use, so a crash that loses the unwritten tail never makes a
//! seq that a client may have seen mean something else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::store::fleet::{FleetStore, UnsequencedEvent};
use crate::store::{LiveEventRow, Store};

mod fleet_feed;

/// Messages a subscriber may fall behind by before it is told it lagged (one ring shared by
/// all subscribers). Small on purpose: a lagging client catches up from the log, so the ring
/// only has to absorb scheduling hiccups (about 2 s at 500 events/s).
const BUS_CAPACITY: usize = 1024;
/// Messages waiting for the log writer; beyond this they are broadcast but not logged.
const LOG_QUEUE_CAPACITY: usize = 100_000;
/// Most messages per log transaction.
const LOG_BATCH_MAX: usize = 2000;
/// How long the writer collects messages before a commit: fewer fsyncs, shared with ingest.
const LOG_GROUP_WINDOW: Duration = Duration::from_millis(20);
/// Seqs reserved ahead of use (see the module doc); refreshed when half is used.
const SEQ_RESERVE_AHEAD: i64 = 1_000_000;
/// How often old messages are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Retention of the live log by default: the newest 100k messages, at most 7 days old.
pub const DEFAULT_RETAIN_EVENTS: i64 = 100_000;
/// See [`DEFAULT_RETAIN_EVENTS`].
pub const DEFAULT_RETAIN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What changed: the `type` of a live message (and of a WebSocket `types=` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Webhook,
    Job,
    WorkflowRun,
    Runner,
    Pool,
    /// A fleet's instance joined, died, came back or began to lead (published by the leader).
    Instance,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Webhook,
        EventKind::Job,
        EventKind::WorkflowRun,
        EventKind::Runner,
        EventKind::Pool,
        EventKind::Instance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Webhook => "webhook",
            EventKind::Job => "job",
            EventKind::WorkflowRun => "workflow_run",
            EventKind::Runner => "runner",
            EventKind::Pool => "pool",
            EventKind::Instance => "instance",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One state change, as producers publish it: `{type, repository?, data}` on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The repository the change belongs to, if any (subscribers filter on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The new state of the thing that changed.
    pub data: serde_json::Value,
}

/// A published event with its seq, serialized once for every subscriber.
#[derive(Debug)]
pub struct BusMessage {
    /// Strictly increasing, across restarts.
    pub seq: i64,
    /// The event's type (for filters without parsing `text`).
    pub kind: String,
    /// The event's repository (for filters without parsing `text`).
    pub repository: Option<String>,
    /// When it was published.
    pub time: DateTime<Utc>,
    /// `{"seq", "type", "repository"?, "time", "data"}` as JSON text.
    pub text: Utf8Bytes,
}

/// How much of the live log is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Keep at most this many of the newest messages.
    pub events: i64,
    /// Drop messages older than this.
    pub age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: DEFAULT_RETAIN_EVENTS,
            age: DEFAULT_RETAIN_AGE,
        }
    }
}

/// The producer and subscriber handle; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<BusMessage>>,
    /// Held while a seq is assigned and broadcast, so that broadcast order is seq order and a
    /// subscriber can learn exactly which seq its receiver starts after.
    sequencer: Mutex<Sequencer>,
    /// The highest seq the log writer has made durable (or given up on).
    persisted: watch::Sender<i64>,
}

struct Sequencer {
    last_seq: i64,
    /// `None` for an in-memory bus (unit tests): nothing is logged.
    log: Option<mpsc::Sender<Arc<BusMessage>>>,
    /// In a fleet: events go unnumbered to the shared log, and come back numbered from it
    /// ([`fleet_feed`]).
    fleet_log: Option<mpsc::Sender<UnsequencedEvent>>,
}

/// The running log writer: stop it after every producer has stopped.
pub struct LogWriter {
    stop: CancellationToken,
    /// Cancelled when the writer task ended (a panic is the supervisor's to report).
    ended: CancellationToken,
}

impl LogWriter {
    /// Writes what is queued, records the final seq reservation, and returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.ended.cancelled().await;
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: &'a Option<String>,
    time: DateTime<Utc>,
    data: &'a serde_json::Value,
}

/// An in-memory bus that logs nothing and starts at seq 1 (for unit tests).
impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(0, None)
    }
}

impl EventBus {
    fn new(last_seq: i64, log: Option<mpsc::Sender<Arc<BusMessage>>>) -> Self {
        EventBus {
            inner: Arc::new(Inner {
                tx: broadcast::channel(BUS_CAPACITY).0,
                sequencer: Mutex::new(Sequencer {
                    last_seq,
                    log,
                    fleet_log: None,
                }),
                persisted: watch::channel(last_seq).0,
            }),
        }
    }

    /// A bus that continues the seq of `store`'s live log and appends to it, pruning to
    /// `retention`. Stop the returned writer after the producers.
    pub async fn start(
        store: Arc<dyn Store>,
        retention: Retention,
        supervisor: &crate::supervisor::Supervisor,
    ) -> anyhow::Result<(EventBus, LogWriter)> {
        let bounds = store.live_event_bounds().await?;
        let last_seq = bounds.max_seq.max(bounds.reserved_seq);
        let reserved = last_seq + SEQ_RESERVE_AHEAD;
        // Durable before the first publish: from now on a crash restarts above `reserved`.
        store.insert_live_events(&[], reserved).await?;
        let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE_CAPACITY);
        let bus = EventBus::new(last_seq, Some(log_tx));
        let stop = CancellationToken::new();
        let writer = Writer {
            store,
            bus: bus.clone(),
            reserved,
            retention,
        };
        // Untracked: it stops after the tracked producers, to log what they published last.
        let ended =
            supervisor.spawn_untracked("live event log writer", writer.run(log_rx, stop.clone()));
        Ok((bus, LogWriter { stop, ended }))
    }

    /// The bus of an instance of a fleet: what it publishes goes to the fleet's shared log,
    /// and what any instance published comes back from it, numbered, to its subscribers.
    /// Stop the returned writer after the producers.
    pub async fn start_in_fleet(
        store: Arc<dyn Store>,
        fleet: Arc<dyn FleetStore>,
        retention: Retention,
        supervisor: &crate::supervisor::Supervisor,
    ) -> anyhow::Result<(EventBus, LogWriter)> {
        let bounds = store.live_event_bounds().await?;
        // New subscribers start at the newest logged event; older ones are in the log.
        let bus = EventBus::new(bounds.max_seq, None);
        let (fleet_tx, fleet_rx) = mpsc::channel(LOG_QUEUE_CAPACITY);
        bus.inner
            .sequencer
            .lock()
            .expect("event bus lock poisoned")
            .fleet_log = Some(fleet_tx);
        let stop = CancellationToken::new();
        supervisor.spawn(
            "fleet live feed",
            fleet_feed::tail(store.clone(), bus.clone(), stop.clone()),
        );
        supervisor.spawn(
            "live event log pruning",
            prune_periodically(store, retention, stop.clone()),
        );
        let ended = supervisor.spawn_untracked(
            "live event log writer",
            fleet_feed::write(fleet, fleet_rx, stop.clone()),
        );
        Ok((bus, LogWriter { stop, ended }))
    }

    /// A message read back from the fleet's shared log: broadcast in seq order, and logged by
    /// definition.
    fn broadcast_logged(&self, message: Arc<BusMessage>) {
        let mut sequencer = self
            .inner
            .sequencer
            .lock()
            .expect("event bus lock poisoned");
        if message.seq <= sequencer.last_seq {
            return;
        }
        sequencer.last_seq = message.seq;
        self.inner.persisted.send_replace(message.seq);
        let _ = self.inner.tx.send(message);
    }

    /// Numbers, broadcasts and logs `event`; never waits. Nobody listening is fine.
    pub fn publish(&self, event: LiveEvent) {
        let time = Utc::now();
        // Serialized outside the lock; the seq is spliced in front under it.
        let body = serde_json::to_string(&Body {
            kind: event.kind.as_str(),
            repository: &event.repository,
            time,
            data: &event.data,
        })
        .unwrap_or_else(|_| "{}".into());
        let mut sequencer = self
            .inner
            .sequencer
            .lock()
            .expect("event bus lock poisoned");
        if let Some(fleet_log) = &sequencer.fleet_log {
            let unsequenced = UnsequencedEvent {
                kind: event.kind.as_str().to_owned(),
                repository: event.repository,
                time,
                body,
            };
            if fleet_log.try_send(unsequenced).is_err() {
                metrics::counter!("runnerhub_live_events_unlogged_total").increment(1);
                tracing::warn!("live event log queue full; event dropped");
            }
            return;
        }
        sequencer.last_seq += 1;
        let seq = sequencer.last_seq;
        let message = Arc::new(BusMessage {
            seq,
            kind: event.kind.as_str().to_owned(),
            repository: event.repository,
            time,
            text: format!("{{\"seq\":{seq},{}", &body[1..]).into(),
        });
        match &sequencer.log {
            Some(log) => {
                if log.try_send(message.clone()).is_err() {
                    metrics::counter!("runnerhub_live_events_unlogged_total").increment(1);
                    tracing::warn!(
                        seq,
                        "live event log queue full; event broadcast but not logged"
                    );
                }
            }
            None => {
                self.inner.persisted.send_replace(seq);
            }
        }
        let _ = self.inner.tx.send(message);
    }

    /// A receiver of every message after the returned seq (and nothing at or before it).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<BusMessage>>, i64) {
        let sequencer = self
            .inner
            .sequencer
            .lock()
            .expect("event bus lock poisoned");
        (self.inner.tx.subscribe(), sequencer.last_seq)
    }

    /// The seq of the latest published message.
    pub fn last_seq(&self) -> i64 {
        self.inner
            .sequencer
            .lock()
            .expect("event bus lock poisoned")
            .last_seq
    }

    /// Waits until every message up to `seq` is in the log (or `deadline` passes: false).
    pub async fn wait_logged(&self, seq: i64, deadline: Duration) -> bool {
        let mut persisted = self.inner.persisted.subscribe();
        tokio::time::timeout(deadline, persisted.wait_for(|p| *p >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

struct Writer {
    store: Arc<dyn Store>,
    bus: EventBus,
    /// The reservation on disk: every seq handed out is at or below it.
    reserved: i64,
    retention: Retention,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Arc<BusMessage>>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(LOG_BATCH_MAX);
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, LOG_BATCH_MAX) => {
                    if n == 0 {
                        break;
                    }
                    if batch.len() < LOG_BATCH_MAX {
                        tokio::time::sleep(LOG_GROUP_WINDOW).await;
                        while batch.len() < LOG_BATCH_MAX
                            && let Ok(m) = rx.try_recv()
                        {
                            batch.push(m);
                        }
                    }
                    self.write(&mut batch, false).await;
                }
                _ = prune.tick() => self.prune().await,
                _ = stop.cancelled() => break,
            }
        }
        // Producers have stopped: write the rest, then release the unused reservation so the
        // next start continues without a gap.
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
            if batch.len() >= LOG_BATCH_MAX {
                self.write(&mut batch, false).await;
            }
        }
        self.write(&mut batch, true).await;
        tracing::debug!("live event log writer stopped");
    }

    async fn write(&mut self, batch: &mut Vec<Arc<BusMessage>>, last: bool) {
        let Some(newest) = batch.last().map(|m| m.seq) else {
            if last {
                let seq = self.bus.last_seq();
                if let Err(error) = self.store.insert_live_events(&[], seq).await {
                    tracing::warn!(%error, "cannot release the live seq reservation");
                }
            }
            return;
        };
        if newest + SEQ_RESERVE_AHEAD / 2 > self.reserved {
            self.reserved = newest + SEQ_RESERVE_AHEAD;
        }
        let reserved = if last {
            self.bus.last_seq()
        } else {
            self.reserved
        };
        let rows: Vec<LiveEventRow> = batch
            .iter()
            .map(|m| LiveEventRow {
                seq: m.seq,
                kind: m.kind.clone(),
                repository: m.repository.clone(),
                time: m.time,
                message: m.text.as_str().to_owned(),
            })
            .collect();
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match self.store.insert_live_events(&rows, reserved).await {
                Ok(()) => break,
                Err(error) if attempt == 5 => {
                    metrics::counter!("runnerhub_live_events_unlogged_total")
                        .increment(rows.len() as u64);
                    tracing::error!(%error, first = rows[0].seq, newest, "cannot log live events; giving up on this batch");
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "cannot log live events; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        // Advanced even after giving up, so that resuming clients are not held forever.
        self.bus.inner.persisted.send_replace(newest);
        batch.clear();
    }

    async fn prune(&self) {
        prune_log(self.store.as_ref(), self.retention).await;
    }
}

async fn prune_log(store: &dyn Store, retention: Retention) {
    let age = chrono::Duration::from_std(retention.age).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    match store.prune_live_events(retention.events, cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(deleted = n, "pruned the live event log"),
        Err(error) => tracing::warn!(%error, "cannot prune the live event log"),
    }
}

/// In a fleet every instance prunes the shared log now and then (keeping the newest events
/// means they all delete the same rows; one that finds them gone deletes nothing).
async fn prune_periodically(store: Arc<dyn Store>, retention: Retention, stop: CancellationToken) {
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = prune.tick() => prune_log(store.as_ref(), retention).await,
        }
    }
}
