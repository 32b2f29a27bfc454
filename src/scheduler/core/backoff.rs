//! Launch backoff after consecutive failures, keyed by what failed.
//!
//! A container that cannot start (image missing, Docker down, a crash before taking a job, a
//! bootstrap timeout) is the pool's problem: the whole pool pauses. A registration GitHub
//! refuses (403/404 for one repository) is that repository's problem: only launches at that
//! scope pause, and the pool goes on serving everyone else.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The first pause; it doubles per consecutive failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackoffKey {
    Pool(String),
    /// A pool's launches at one registration scope (`repos/o/r` or `orgs/o`).
    Scope {
        pool: String,
        scope: String,
    },
}

#[derive(Debug, Clone)]
struct Backoff {
    failures: u32,
    until: DateTime<Utc>,
    /// The first failure of this run of failures: how long launches have been failing.
    since: DateTime<Utc>,
    /// What the last failure said, for a waiting job's `wait_detail` and a stalled pool.
    last_error: String,
}

/// A run of consecutive failures that no success has ended yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing<'a> {
    pub since: DateTime<Utc>,
    pub cause: &'a str,
}

#[derive(Debug, Default)]
pub struct Backoffs(HashMap<BackoffKey, Backoff>);

/// The pause after `failures` consecutive failures: 1 s, 2 s, 4 s … 60 s.
pub fn delay_after(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

impl Backoffs {
    pub fn record_failure(&mut self, key: BackoffKey, now: DateTime<Utc>, error: &str) {
        let entry = self.0.entry(key).or_insert(Backoff {
            failures: 0,
            until: now,
            since: now,
            last_error: String::new(),
        });
        entry.failures += 1;
        entry.until = now + delay_after(entry.failures);
        error.clone_into(&mut entry.last_error);
    }

    /// While `key` backs off: what its last failure said.
    pub fn backing_off_after(&self, key: &BackoffKey, now: DateTime<Utc>) -> Option<&str> {
        self.0
            .get(key)
            .filter(|b| b.until > now)
            .map(|b| b.last_error.as_str())
    }

    /// Whether launches under `key` have failed since their last success, since when and why
    /// (whether or not the current pause has ended).
    pub fn failing(&self, key: &BackoffKey) -> Option<Failing<'_>> {
        self.0.get(key).map(|b| Failing {
            since: b.since,
            cause: &b.last_error,
        })
    }

    /// GitHub registered a runner of `pool` at `scope`: that scope is fine again.
    pub fn registered(&mut self, pool: &str, scope: &str) {
        self.0.remove(&BackoffKey::Scope {
            pool: pool.to_owned(),
            scope: scope.to_owned(),
        });
    }

    /// A runner of `pool` came online: the pool is fine again.
    pub fn online(&mut self, pool: &str) {
        self.0.remove(&BackoffKey::Pool(pool.to_owned()));
    }

    pub fn is_backing_off(&self, key: &BackoffKey, now: DateTime<Utc>) -> bool {
        self.0.get(key).is_some_and(|b| b.until > now)
    }

    /// Consecutive failures of the pool itself (not of one of its scopes).
    pub fn pool_failures(&self, pool: &str) -> u32 {
        self.0
            .get(&BackoffKey::Pool(pool.to_owned()))
            .map_or(0, |b| b.failures)
    }

    /// When the earliest pause after `now` ends (a pause that has ended keeps its count until
    /// a success, so that the next failure waits longer, but wants no tick).
    pub fn next_end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.values().map(|b| b.until).filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_to_a_minute() {
        let delays: Vec<u64> = (1..=8).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(delay_after(u32::MAX), MAX_BACKOFF);
    }
}
