//! What happens to a runner when its launch or teardown reports back, or its container stops.

use chrono::{DateTime, Utc};

use super::backoff::BackoffKey;
use super::outcomes::{LaunchFailure, Launched, Teardown};
use super::{Core, Effect};
use crate::domain::RunnerState;

impl Core {
    pub(super) fn on_launched(
        &mut self,
        id: &str,
        result: Result<Launched, LaunchFailure>,
        now: DateTime<Utc>,
    ) {
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match result {
            Ok(up) => {
                runner.github_runner_id = Some(up.github_runner_id);
                runner.container_id = Some(up.container_id);
                runner.advance(RunnerState::Creating, now);
                tracing::info!(runner = %runner.name, pool = %runner.pool, "runner container started");
                // GitHub took the registration: that scope is fine. The pool is fine once the
                // runner comes online (a container that starts and then crashes or never
                // connects is still the pool's failure).
                let (pool, scope) = (runner.pool.clone(), runner.scope.clone());
                self.backoff.registered(&pool, &scope);
                self.unknown_scopes.answered(&scope);
            }
            Err(failure) => {
                if failure.scope_not_found {
                    self.unknown_scopes.not_found(&runner.scope, now);
                } else {
                    // Not a 404 (taken, or refused otherwise): no proof the scope is unknown.
                    self.unknown_scopes.answered(&runner.scope);
                }
                runner.github_runner_id = failure.github_runner_id;
                runner.fail(failure.message.clone(), now);
                tracing::warn!(runner = %runner.name, pool = %runner.pool, reason = failure.reason, "{}", failure.message);
                let key = if failure.is_registration_refused() {
                    BackoffKey::Scope {
                        pool: runner.pool.clone(),
                        scope: runner.scope.clone(),
                    }
                } else {
                    BackoffKey::Pool(runner.pool.clone())
                };
                let pool = runner.pool.clone();
                self.launch_failed(key, pool, failure.reason, &failure.message, now);
            }
        }
        self.mark(id);
    }

    pub(super) fn launch_failed(
        &mut self,
        key: BackoffKey,
        pool: String,
        reason: &'static str,
        error: &str,
        now: DateTime<Utc>,
    ) {
        self.backoff.record_failure(key, now, error);
        self.effects.push(Effect::LaunchFailed { pool, reason });
    }

    pub(super) fn on_torn_down(&mut self, id: &str, outcome: Teardown, now: DateTime<Utc>) {
        self.teardown_in_flight.remove(id);
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match outcome {
            Teardown::Done => {
                runner.advance(RunnerState::Removed, now);
                tracing::info!(runner = %runner.name, pool = %runner.pool, "runner removed");
            }
            Teardown::Busy if !runner.state.is_terminal() => {
                // It took a job while we were draining it: let the job finish.
                runner.draining = false;
                runner.advance(RunnerState::Busy, now);
            }
            Teardown::Busy => {
                tracing::info!(runner = %runner.name, "GitHub still reports the runner busy; retrying later")
            }
            Teardown::Retry(error) => {
                tracing::warn!(runner = %runner.name, %error, "runner teardown failed; retrying")
            }
        }
        self.mark(id);
    }

    /// A runner's container stopped. Busy: its job is over (the job's state still comes from
    /// webhooks). Before that: it crashed, and the job it was for needs another runner (the
    /// planner sees the demand again).
    pub(super) fn container_ended(
        &mut self,
        id: &str,
        exit_code: Option<i64>,
        oom: bool,
        now: DateTime<Utc>,
    ) {
        let Some(runner) = self.runners.get_mut(id) else {
            return;
        };
        match runner.state {
            RunnerState::Busy => {
                runner.advance(RunnerState::Finished, now);
            }
            RunnerState::Creating | RunnerState::Idle if !runner.draining => {
                let why = if oom {
                    "container was killed: out of memory".to_owned()
                } else {
                    format!(
                        "container exited (code {}) before taking a job",
                        exit_code.map_or("unknown".into(), |c| c.to_string())
                    )
                };
                tracing::warn!(runner = %runner.name, pool = %runner.pool, "{why}");
                runner.fail(why.clone(), now);
                let pool = runner.pool.clone();
                self.launch_failed(BackoffKey::Pool(pool.clone()), pool, "crashed", &why, now);
            }
            RunnerState::Creating | RunnerState::Idle => {
                runner.advance(RunnerState::Finished, now);
            }
            _ => return,
        }
        self.mark(id);
    }
}
