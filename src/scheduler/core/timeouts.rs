//! Bootstrap and idle timeouts, and when the next one falls due.

use chrono::{DateTime, Utc};

use super::Core;
use super::backoff::BackoffKey;
use crate::domain::{Runner, RunnerState};

/// The instant a runner's timeout falls due, and which timeout it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    /// Not online within the pool's `bootstrap_timeout`: failed (and replaced).
    Bootstrap,
    /// Idle for the pool's `idle_timeout`: drained.
    Idle,
}

impl Core {
    fn timeout_of(&self, runner: &Runner) -> Option<(DateTime<Utc>, Timeout)> {
        let pool = self.config.pool(&runner.pool)?;
        match runner.state {
            RunnerState::Requested | RunnerState::Creating => Some((
                runner.created_at + pool.bootstrap_timeout,
                Timeout::Bootstrap,
            )),
            RunnerState::Idle if !runner.draining => runner
                .idle_at
                .map(|at| (at + pool.idle_timeout, Timeout::Idle)),
            _ => None,
        }
    }

    pub(super) fn next_timeout(&self) -> Option<DateTime<Utc>> {
        self.runners
            .values()
            .filter_map(|r| self.timeout_of(r))
            .map(|(at, _)| at)
            .min()
    }

    pub(super) fn enforce_timeouts(&mut self, now: DateTime<Utc>) {
        let due: Vec<(String, Timeout)> = self
            .runners
            .values()
            .filter_map(|r| match self.timeout_of(r) {
                Some((at, timeout)) if at <= now => Some((r.id.clone(), timeout)),
                _ => None,
            })
            .collect();
        for (id, timeout) in due {
            let Some(runner) = self.runners.get_mut(&id) else {
                continue;
            };
            let pool = runner.pool.clone();
            match timeout {
                Timeout::Bootstrap => {
                    let limit = self
                        .config
                        .pool(&pool)
                        .map(|p| humantime::format_duration(p.bootstrap_timeout).to_string())
                        .unwrap_or_default();
                    let why = format!("not online within bootstrap_timeout ({limit})");
                    runner.fail(why.clone(), now);
                    self.unconfirmed.remove(&id);
                    self.launch_failed(
                        BackoffKey::Pool(pool.clone()),
                        pool,
                        "bootstrap_timeout",
                        &why,
                        now,
                    );
                }
                Timeout::Idle => {
                    tracing::info!(runner = %runner.name, %pool, "idle timeout: removing runner");
                    runner.draining = true;
                    runner.updated_at = now;
                }
            }
            self.mark(&id);
        }
    }
}
