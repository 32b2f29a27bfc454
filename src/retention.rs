//! Retention: the history kept in the database is bounded in time.
//!
//! Every [`PASS_INTERVAL`] (first [`FIRST_PASS_AFTER`] start) the serving daemon deletes what
//! `database.retention` and `database.forged_retention` say is old enough (processed
//! deliveries and their payloads, completed jobs and runs, removed runners; see
//! [`Prunable`]), pool history older than [`crate::history::SAMPLE_RETENTION`] too, and `DELETE /api/webhooks/cleanup` does the same on demand ([`prune`]).
//! Nothing that is still needed is deleted, however old: a delivery the processor has not
//! processed, a job not completed, a runner not removed.
//!
//! Deleting is off the webhook's hot path: [`BATCH_ROWS`] rows per transaction, with a pause
//! between transactions nine times as long as the transaction, so that the group commits of
//! the ingest writer (which share SQLite's one write connection) wait a few milliseconds at
//! most behind a batch. On SQLite the freed pages are then given back to the filesystem the
//! same way, 1 MiB per step.
//!
//! Standbys never get here (they serve nothing until they hold the database). In a fleet
//! (DESIGN §9) it is the leader's job; two instances pruning at once in a change of leader
//! would only share the work (each batch takes rows the other has not locked).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseConfig};
use crate::store::{Prunable, Store, StoreResult};

/// Rows deleted per transaction. Deliveries are the heavy kind (their payloads span pages):
/// measured here on a 206 MiB database of fixture deliveries, a transaction of 200 took about
/// 4 ms of CPU, one of 500 took 8-11 ms, which is longer than the ingest writer's p99 target
/// (5 ms) for a commit to wait.
pub const BATCH_ROWS: u32 = 200;
/// After each transaction, pruning waits this many times as long as the transaction took, so
/// that it takes at most a tenth of the write connection and waiting writers (webhook
/// acknowledgements) go first ...
const PAUSE_PER_BUSY: u32 = 9;
/// ... and at least this long. With a fifth and 20 ms, the ingest bench's steady 1,000
/// deliveries/s fell behind while a cleanup of 33,000 deliveries ran, on a machine whose other
/// work (parallel builds) already slowed its disk tenfold. An hourly pass deletes an hour's
/// worth, a few seconds of work at this pace.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// Free pages given back per step (1 MiB with SQLite's 4 KiB pages). Measured as above: 256
/// pages took about 4 ms of CPU, 1,024 about 20 ms (each moved page is written again).
const RECLAIM_PAGES_PER_STEP: u32 = 256;
/// The first pass after start: once start-up (queue restore, reconcile, catch-up) is done.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);
/// Between passes. Rows are kept at most this much longer than the retention says.
const PASS_INTERVAL: Duration = Duration::from_secs(3600);

/// Before when each kind of row is old enough to go; `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Genuine deliveries, jobs, runs and runners.
    pub history: Option<DateTime<Utc>>,
    /// Deliveries whose signature failed.
    pub forged: Option<DateTime<Utc>>,
    /// Pool history samples (`crate::history`).
    pub samples: Option<DateTime<Utc>>,
}

impl Cutoffs {
    /// What the configuration keeps, as of `now`. A forged delivery is a delivery too: it goes
    /// at the earlier of its two retentions. Pool history goes after
    /// [`crate::history::SAMPLE_RETENTION`], or earlier with a shorter `database.retention`,
    /// even when the rest is kept for ever: a row per pool and minute would grow without bound.
    pub fn from_config(database: &DatabaseConfig, now: DateTime<Utc>) -> Cutoffs {
        let history = ago(now, database.retention);
        let forged = history.max(ago(now, database.forged_retention));
        let samples = history.max(ago(now, crate::history::SAMPLE_RETENTION));
        Cutoffs {
            history,
            forged,
            samples,
        }
    }

    /// Everything received, completed or removed before `before`.
    pub fn before(before: DateTime<Utc>) -> Cutoffs {
        Cutoffs {
            history: Some(before),
            forged: Some(before),
            samples: Some(before),
        }
    }

    fn of(&self, what: Prunable) -> Option<DateTime<Utc>> {
        match what {
            Prunable::ForgedDeliveries => self.forged,
            Prunable::PoolSamples => self.samples,
            _ => self.history,
        }
    }
}

/// `now - keep`; `None` for `0s` (keep everything) or a duration past the calendar.
pub fn ago(now: DateTime<Utc>, keep: Duration) -> Option<DateTime<Utc>> {
    if keep.is_zero() {
        return None;
    }
    TimeDelta::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
}

/// What one pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub deliveries: u64,
    pub forged_deliveries: u64,
    pub jobs: u64,
    pub runs: u64,
    pub runners: u64,
    pub redeliveries: u64,
    pub pool_samples: u64,
    /// Bytes given back to the filesystem (SQLite; the file shrinks at the next checkpoint).
    pub reclaimed_bytes: u64,
    /// False when shutdown stopped the pass before it was done (the next one continues).
    pub complete: bool,
}

impl PruneReport {
    fn add(&mut self, what: Prunable, rows: u64) {
        *match what {
            Prunable::Deliveries => &mut self.deliveries,
            Prunable::ForgedDeliveries => &mut self.forged_deliveries,
            Prunable::Jobs => &mut self.jobs,
            Prunable::Runs => &mut self.runs,
            Prunable::Runners => &mut self.runners,
            Prunable::Redeliveries => &mut self.redeliveries,
            Prunable::PoolSamples => &mut self.pool_samples,
        } += rows;
    }

    /// Rows deleted, all kinds together.
    pub fn rows(&self) -> u64 {
        self.deliveries
            + self.forged_deliveries
            + self.jobs
            + self.runs
            + self.runners
            + self.redeliveries
            + self.pool_samples
    }
}

/// Deletes everything older than its cutoff, [`BATCH_ROWS`] rows per transaction, then gives
/// the freed space back. Stops between two transactions once `stop` is cancelled.
pub async fn prune(
    store: &dyn Store,
    cutoffs: &Cutoffs,
    stop: &CancellationToken,
) -> StoreResult<PruneReport> {
    let mut report = PruneReport::default();
    for what in Prunable::ALL {
        let Some(before) = cutoffs.of(what) else {
            continue;
        };
        loop {
            if stop.is_cancelled() {
                return Ok(report);
            }
            let started = Instant::now();
            let rows = store.prune(what, before, BATCH_ROWS).await?;
            report.add(what, rows);
            metrics::counter!(crate::metrics::RETENTION_ROWS_PRUNED_TOTAL, "kind" => what.as_str())
                .increment(rows);
            if rows < u64::from(BATCH_ROWS) {
                break;
            }
            pause(stop, started.elapsed()).await;
        }
    }
    loop {
        if stop.is_cancelled() {
            return Ok(report);
        }
        let started = Instant::now();
        let step = store.reclaim_space(RECLAIM_PAGES_PER_STEP).await?;
        report.reclaimed_bytes += step.bytes;
        metrics::counter!(crate::metrics::RETENTION_RECLAIMED_BYTES_TOTAL).increment(step.bytes);
        if step.bytes == 0 || step.left == 0 {
            break;
        }
        pause(stop, started.elapsed()).await;
    }
    report.complete = true;
    Ok(report)
}

/// Waits after a transaction that took `busy` (see [`PAUSE_PER_BUSY`]).
async fn pause(stop: &CancellationToken, busy: Duration) {
    let pause = (busy * PAUSE_PER_BUSY).max(MIN_PAUSE);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(pause) => {}
    }
}

/// The periodic passes, until `shutdown`. The retention keys are read at each pass, so a
/// reload applies from the next one.
pub async fn run(
    store: Arc<dyn Store>,
    config: watch::Receiver<Arc<Config>>,
    fleet: crate::fleet::Fleet,
    shutdown: CancellationToken,
) {
    let mut next = tokio::time::Instant::now() + FIRST_PASS_AFTER;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        if !fleet.is_leader() {
            // In a fleet the leader prunes for all.
            next = tokio::time::Instant::now() + Duration::from_secs(60);
            continue;
        }
        next = tokio::time::Instant::now() + PASS_INTERVAL;
        // Never all off: pool history is always bounded.
        let cutoffs = Cutoffs::from_config(&config.borrow().database, Utc::now());
        match prune(store.as_ref(), &cutoffs, &shutdown).await {
            Ok(report) => {
                metrics::counter!(crate::metrics::RETENTION_PASSES_TOTAL, "result" => "success")
                    .increment(1);
                if report.rows() > 0 {
                    tracing::info!(
                        deliveries = report.deliveries,
                        forged_deliveries = report.forged_deliveries,
                        jobs = report.jobs,
                        runs = report.runs,
                        runners = report.runners,
                        pool_samples = report.pool_samples,
                        reclaimed_bytes = report.reclaimed_bytes,
                        "retention: deleted rows past database.retention"
                    );
                }
            }
            Err(error) => {
                metrics::counter!(crate::metrics::RETENTION_PASSES_TOTAL, "result" => "failure")
                    .increment(1);
                tracing::warn!(%error, "retention pass failed; the next pass tries again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(retention: u64, forged: u64) -> DatabaseConfig {
        DatabaseConfig {
            retention: Duration::from_secs(retention * 86_400),
            forged_retention: Duration::from_secs(forged * 86_400),
            ..DatabaseConfig::default()
        }
    }

    #[test]
    fn forged_deliveries_go_at_the_earlier_of_their_two_retentions() {
        let now = Utc::now();
        let days = |n| Some(now - TimeDelta::days(n));
        let cutoffs = Cutoffs::from_config(&database(30, 7), now);
        assert_eq!(cutoffs.history, days(30));
        assert_eq!(cutoffs.forged, days(7));
        let cutoffs = Cutoffs::from_config(&database(3, 7), now);
        assert_eq!(cutoffs.forged, days(3), "a forged delivery is a delivery");
        let cutoffs = Cutoffs::from_config(&database(0, 7), now);
        assert_eq!((cutoffs.history, cutoffs.forged), (None, days(7)));
        let cutoffs = Cutoffs::from_config(&database(30, 0), now);
        assert_eq!(cutoffs.forged, days(30));
        let cutoffs = Cutoffs::from_config(&database(0, 0), now);
        assert_eq!((cutoffs.history, cutoffs.forged), (None, None));
    }

    #[test]
    fn pool_history_is_bounded_even_when_the_rest_is_kept_for_ever() {
        let now = Utc::now();
        let days = |n| Some(now - TimeDelta::days(n));
        assert_eq!(Cutoffs::from_config(&database(0, 0), now).samples, days(7));
        assert_eq!(Cutoffs::from_config(&database(30, 7), now).samples, days(7));
        assert_eq!(
            Cutoffs::from_config(&database(3, 7), now).samples,
            days(3),
            "a shorter database.retention applies to the samples too"
        );
    }

    #[test]
    fn every_kind_has_its_metric_series() {
        assert_eq!(
            Prunable::ALL.map(Prunable::as_str),
            crate::metrics::RETENTION_KINDS
        );
    }

    #[test]
    fn a_retention_past_the_calendar_keeps_everything() {
        assert_eq!(ago(Utc::now(), Duration::from_secs(u64::MAX)), None);
    }
}
