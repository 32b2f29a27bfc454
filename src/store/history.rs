//! Pool history (`crate::history`): what the sampler records each minute and what the
//! dashboard's charts read back. The SQL is per backend (`sqlite_history.rs`,
//! `postgres_history.rs`).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One pool's counters on one instance, as the sampler records them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSample {
    pub pool: String,
    /// Jobs waiting for the pool, the whole queue's (every instance reads the same number).
    pub queued: u64,
    /// This instance's runners running a job.
    pub busy: u64,
    /// This instance's runners online and waiting for a job.
    pub idle: u64,
    /// This instance's runners requested or creating.
    pub starting: u64,
}

/// One pool at one minute, across instances: runners summed over the instances that sampled
/// the minute, the queue as the largest instance's reading (they all read the same queue, so a
/// sum would count each job once per instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolMinute {
    pub minute: DateTime<Utc>,
    pub pool: String,
    pub queued: u64,
    pub busy: u64,
    pub idle: u64,
    pub starting: u64,
}

/// A job that waited for a runner and started: when it was queued and when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWait {
    pub pool: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

/// A count from the database (never negative) as the API's unsigned number.
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A count for the database's signed integers (saturating: no pool holds 2^63 of anything).
pub(super) fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
