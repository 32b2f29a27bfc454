//! Pool history: what the dashboard's charts show (`GET /api/history`).
//!
//! Every minute each serving instance records, per pool, the queue's depth and its own runners
//! busy, idle and starting ([`sampler`]) in `pool_samples`; the charts read the last hours back
//! ([`read`]), with the queue waits per hour computed from the jobs themselves ([`waits`]).
//!
//! In a fleet (DESIGN §9) each instance samples its own runners, and the queue it reads is the
//! fleet's (the jobs table). A minute of a pool therefore sums the instances' runners but takes
//! the queue once (the largest reading: instances read it a few seconds apart), never the sum,
//! which would count every waiting job once per instance. Samples are keyed by minute,
//! instance and pool, so an instance that samples twice in a minute (a restart) replaces its
//! row, and a minute an instance missed (it was down) simply lacks its runners.
//!
//! Samples are kept [`SAMPLE_RETENTION`] (less with a shorter `database.retention`) and deleted
//! by retention's passes (`crate::retention`), so the table stays bounded whatever
//! `database.retention` keeps.

pub mod sampler;
pub mod series;
pub mod waits;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{Store, StoreResult};
pub use series::{Point, PoolSeries};
pub use waits::{HourWaits, WaitStats};

/// Between two samples of a pool.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(60);
/// How long samples are kept: a week, so that `hours` can look that far back.
pub const SAMPLE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest window `GET /api/history` answers (what [`SAMPLE_RETENTION`] keeps).
pub const MAX_HOURS: u32 = 7 * 24;
/// The window `GET /api/history` answers without `hours`.
pub const DEFAULT_HOURS: u32 = 24;
/// Points per pool at most: a day of minutes. Longer windows merge minutes (see
/// [`series::step_minutes`]).
pub const MAX_POINTS: u32 = 24 * 60;
/// Started jobs read for the wait percentiles at most (the latest): a bound on the memory of
/// one request on a very busy fleet. Past it, the earliest hours count fewer jobs.
pub const WAIT_JOBS_MAX: u32 = 200_000;

/// What `GET /api/history` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub hours: u32,
    /// The start of the window: the start of the first of `hours` whole hours, the last of
    /// which is the current one.
    pub since: DateTime<Utc>,
    /// When the answer was made (the window's end).
    pub until: DateTime<Utc>,
    pub sample_interval_seconds: u64,
    /// Between two points of a series (a multiple of the sample interval).
    pub step_seconds: u64,
    /// Configured pools first (even without samples yet), then any other pool sampled in the
    /// window (another instance's, or one since removed from the configuration).
    pub pools: Vec<PoolSeries>,
    /// One entry per hour of the window, oldest first.
    pub waits: Vec<HourWaits>,
}

/// The last `hours` of history as of `now`; `configured` are this daemon's pools, by name.
pub async fn read(
    store: &dyn Store,
    configured: &[String],
    hours: u32,
    now: DateTime<Utc>,
) -> StoreResult<History> {
    let since = series::window_start(now, hours);
    let step = series::step_minutes(hours);
    let minutes = store.pool_minutes(since).await?;
    let mut by_pool: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for minute in minutes {
        by_pool.entry(minute.pool.clone()).or_default().push(minute);
    }
    let mut pools: Vec<PoolSeries> = configured
        .iter()
        .map(|name| PoolSeries {
            name: name.clone(),
            points: series::downsample(&by_pool.remove(name).unwrap_or_default(), since, step),
        })
        .collect();
    pools.extend(by_pool.into_iter().map(|(name, minutes)| PoolSeries {
        points: series::downsample(&minutes, since, step),
        name,
    }));
    let jobs = store.job_waits(since, WAIT_JOBS_MAX).await?;
    Ok(History {
        hours,
        since,
        until: now,
        sample_interval_seconds: SAMPLE_INTERVAL.as_secs(),
        step_seconds: u64::from(step) * 60,
        pools,
        waits: waits::per_hour(&jobs, since, hours),
    })
}
