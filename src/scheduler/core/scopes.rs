//! Which registration scopes a full reconciliation lists at GitHub.
//!
//! A registration can leak where no live runner is left: a JIT registration that GitHub carried
//! out while the client timed out, or one a crash interrupted, belongs to a runner record that
//! is failed and removed soon after, and nothing here knows its GitHub id. So besides the
//! scopes of live runners and of warm pools, the reconciliation lists every scope runnerhub has
//! registered runners at (from the database at start, and each launch since): for
//! [`SWEEP_AFTER_REMOVAL`] after a runner there was removed (or after a start, which may follow
//! a crash), and otherwise once per [`DORMANT_SWEEP_INTERVAL`], so that a thousand quiet
//! repositories cost a thousand calls an hour, not a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long after a runner's removal its scope is listed at every reconciliation.
pub const SWEEP_AFTER_REMOVAL: Duration = Duration::from_secs(10 * 60);
/// How often a scope with no runner and no recent removal is listed.
pub const DORMANT_SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy)]
struct Sweep {
    /// The last removal of a runner at this scope (or the start, or the first launch).
    last_removed: DateTime<Utc>,
    /// The last full listing of this scope that GitHub answered.
    last_listed: Option<DateTime<Utc>>,
}

/// Every scope runnerhub registered runners at, and when each was last swept.
#[derive(Debug, Default)]
pub(super) struct KnownScopes(BTreeMap<String, Sweep>);

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("in range")
}

impl KnownScopes {
    /// A runner at `scope` was removed (or may have been: a start, a launch).
    pub(super) fn removed_at(&mut self, scope: &str, now: DateTime<Utc>) {
        self.0
            .entry(scope.to_owned())
            .and_modify(|s| s.last_removed = s.last_removed.max(now))
            .or_insert(Sweep {
                last_removed: now,
                last_listed: None,
            });
    }

    /// GitHub answered a full listing of `scope`.
    pub(super) fn listed(&mut self, scope: &str, now: DateTime<Utc>) {
        if let Some(sweep) = self.0.get_mut(scope) {
            sweep.last_listed = Some(now);
        }
    }

    /// The scopes a reconciliation at `now` lists, besides those of live runners.
    pub(super) fn due(&self, now: DateTime<Utc>) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(_, s)| {
                now - s.last_removed < chrono(SWEEP_AFTER_REMOVAL)
                    || s.last_listed
                        .is_none_or(|at| now - at >= chrono(DORMANT_SWEEP_INTERVAL))
            })
            .map(|(scope, _)| scope.as_str())
    }
}
