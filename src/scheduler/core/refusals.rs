//! Jobs that can never get a runner leave the queue with an outcome (DESIGN §13), instead of
//! holding its head, a slot and the pool's health for good:
//!
//! - `unusable_repository`: the job's repository is not `owner/name` (a signed delivery may
//!   say anything), so there is no scope a runner could register at. Refused when it arrives.
//! - `unknown_scope`: GitHub has answered 404 to every runner registration at the job's scope
//!   (the repository or organization does not exist, or the credentials cannot see it) for
//!   `scheduling.stall_after`. Refused at the stall check, with every queued job at that scope;
//!   a job that arrives there later gets one registration attempt, and is refused after its
//!   404. Other refusals (403, 5xx, timeouts) may pass or be fixed by an operator: they back off
//!   and stall the pool (`status.rs`), but never refuse a job. Any other answer at that scope
//!   (a registration taken, a different error) ends the run of 404s.
//!
//! A refused job keeps GitHub's status (it is still queued there, for another runner to take
//! if one can); runnerhub only stops wanting a runner for it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::status::chrono_duration;
use super::{Core, Effect};
use crate::domain::{JobId, JobOutcome};

/// Scopes whose registrations GitHub has answered only with 404 since a moment.
#[derive(Debug, Default)]
pub(super) struct UnknownScopes(BTreeMap<String, DateTime<Utc>>);

impl UnknownScopes {
    /// GitHub answered a registration at `scope` 404.
    pub(super) fn not_found(&mut self, scope: &str, now: DateTime<Utc>) {
        self.0.entry(scope.to_owned()).or_insert(now);
    }

    /// GitHub answered a registration at `scope` otherwise: the run of 404s is over.
    pub(super) fn answered(&mut self, scope: &str) {
        self.0.remove(scope);
    }

    /// The scopes answered only 404 since `cutoff` or earlier, with when that began.
    fn since_before(&self, cutoff: DateTime<Utc>) -> BTreeMap<&str, DateTime<Utc>> {
        self.0
            .iter()
            .filter(|(_, since)| **since <= cutoff)
            .map(|(scope, since)| (scope.as_str(), *since))
            .collect()
    }
}

impl Core {
    /// Takes a job of `pool` out of the queue for good, and has the outcome recorded.
    pub(super) fn refuse(
        &mut self,
        job_id: JobId,
        pool: &str,
        outcome: JobOutcome,
        detail: String,
    ) {
        self.queue.remove(job_id);
        self.effects.push(Effect::RefuseJob {
            job_id,
            pool: pool.to_owned(),
            outcome,
            detail,
        });
    }

    /// Refuses the queued jobs at scopes GitHub has answered only 404 for as long as
    /// `scheduling.stall_after`.
    pub(super) fn refuse_unknown_scopes(&mut self, now: DateTime<Utc>) {
        let cutoff = now - chrono_duration(self.config.scheduling.stall_after);
        let unknown = self.unknown_scopes.since_before(cutoff);
        if unknown.is_empty() {
            return;
        }
        let refused: Vec<(JobId, String, String)> = self
            .queue
            .iter()
            .filter_map(|job| {
                let scope = self.job_scope(&job.repository)?.api_path();
                let since = unknown.get(scope.as_str())?;
                Some((
                    job.id,
                    job.pool.clone(),
                    format!(
                        "GitHub has answered 404 to every runner registration at {scope} since \
                         {since}: the repository or organization does not exist, or the \
                         credentials cannot see it"
                    ),
                ))
            })
            .collect();
        for (job_id, pool, detail) in refused {
            self.refuse(job_id, &pool, JobOutcome::UnknownScope, detail);
        }
    }
}
