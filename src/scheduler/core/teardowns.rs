//! Taking runners down: which owe a teardown, and retrying the ones that failed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::outcomes::{TeardownRequest, parse_scope};
use super::{Core, Effect};
use crate::domain::{Runner, RunnerState};

/// Teardowns that failed (or found the runner still busy) are tried again this often.
pub const TEARDOWN_RETRY: Duration = Duration::from_secs(10);

impl Core {
    /// Emits a teardown for each runner that owes one and has none in flight or too recent.
    pub(super) fn start_teardowns(&mut self, now: DateTime<Utc>) {
        let mut due: Vec<&Runner> = self
            .runners
            .values()
            .filter(|r| owes_teardown(r) && !self.teardown_in_flight.contains(&r.id))
            .filter(|r| {
                self.last_teardown_attempt
                    .get(&r.id)
                    .is_none_or(|at| now >= *at + TEARDOWN_RETRY)
            })
            .collect();
        due.sort_by_key(|r| r.created_at);
        let orders: Vec<Effect> = due
            .into_iter()
            .map(|runner| Effect::Teardown {
                runner_id: runner.id.clone(),
                request: TeardownRequest {
                    scope: parse_scope(&runner.scope),
                    github_runner_id: runner.github_runner_id,
                    // A runner whose launch reported nothing may still have a container: its
                    // name is the runner's.
                    container_id: runner
                        .container_id
                        .clone()
                        .or_else(|| Some(runner.name.clone())),
                },
            })
            .collect();
        for order in orders {
            if let Effect::Teardown { runner_id, .. } = &order {
                self.teardown_in_flight.insert(runner_id.clone());
                self.last_teardown_attempt.insert(runner_id.clone(), now);
            }
            self.effects.push(order);
        }
    }

    pub(super) fn next_teardown_retry(&self) -> Option<DateTime<Utc>> {
        self.runners
            .values()
            .filter(|r| owes_teardown(r) && !self.teardown_in_flight.contains(&r.id))
            .filter_map(|r| self.last_teardown_attempt.get(&r.id))
            .map(|at| *at + TEARDOWN_RETRY)
            .min()
    }
}

/// Finished and failed runners are taken down; a draining one once it is up and not busy
/// (a launch in flight reports first; a busy one finishes its job first).
pub fn owes_teardown(r: &Runner) -> bool {
    match r.state {
        RunnerState::Finished | RunnerState::Failed => true,
        RunnerState::Creating | RunnerState::Idle => r.draining,
        RunnerState::Requested | RunnerState::Busy | RunnerState::Removed => false,
    }
}
