//! The runner state machine: one container = one just-in-time GitHub runner.
//!
//! `requested → creating → idle → busy → finished → removed`, and `failed(reason)` from any
//! state before `finished`. `removed` means both the container and the GitHub registration are
//! gone; a `finished` or `failed` runner still owes that cleanup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// runnerhub's own id for a runner (a UUID), also on the container as `runnerhub.runner-id`.
pub type RunnerId = String;

/// What every runner name started with before `github.runner_name_prefix` existed.
pub const LEGACY_NAME_PREFIX: &str = "runnerhub-";

/// Whose a registration is, judged by its name ([`Runner::name_ownership`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOwnership {
    /// Under this deployment's prefix.
    Ours,
    /// `runnerhub-…` but not under our prefix: named by an older runnerhub (perhaps this one,
    /// before an upgrade) or by another deployment. Ours only if our database recorded it.
    Legacy,
    /// Someone else's.
    Foreign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// A slot is reserved; nothing exists outside runnerhub yet (but the name is recorded).
    Requested,
    /// JIT registration done and/or container being created; not yet online at GitHub.
    Creating,
    /// Online at GitHub, waiting for a job.
    Idle,
    /// An `in_progress` delivery named this runner.
    Busy,
    /// Its job completed or its container exited; cleanup may be pending.
    Finished,
    /// Container removed and GitHub registration deleted.
    Removed,
    /// Could not be brought up (reason kept); cleanup may be pending.
    Failed,
}

impl RunnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Requested => "requested",
            RunnerState::Creating => "creating",
            RunnerState::Idle => "idle",
            RunnerState::Busy => "busy",
            RunnerState::Finished => "finished",
            RunnerState::Removed => "removed",
            RunnerState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => RunnerState::Requested,
            "creating" => RunnerState::Creating,
            "idle" => RunnerState::Idle,
            "busy" => RunnerState::Busy,
            "finished" => RunnerState::Finished,
            "removed" => RunnerState::Removed,
            "failed" => RunnerState::Failed,
            _ => return None,
        })
    }

    pub const ALL: [RunnerState; 7] = [
        RunnerState::Requested,
        RunnerState::Creating,
        RunnerState::Idle,
        RunnerState::Busy,
        RunnerState::Finished,
        RunnerState::Removed,
        RunnerState::Failed,
    ];

    /// Occupies a capacity slot.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            RunnerState::Requested | RunnerState::Creating | RunnerState::Idle | RunnerState::Busy
        )
    }

    /// Can still take a job (counts as supply for queued jobs).
    pub fn is_supply(self) -> bool {
        matches!(
            self,
            RunnerState::Requested | RunnerState::Creating | RunnerState::Idle
        )
    }

    /// Done with; only cleanup is left.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunnerState::Finished | RunnerState::Removed | RunnerState::Failed
        )
    }

    fn rank(self) -> u8 {
        match self {
            RunnerState::Requested => 0,
            RunnerState::Creating => 1,
            RunnerState::Idle => 2,
            RunnerState::Busy => 3,
            RunnerState::Finished | RunnerState::Failed => 4,
            RunnerState::Removed => 5,
        }
    }
}

/// A runner as runnerhub tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    pub id: RunnerId,
    pub pool: String,
    pub state: RunnerState,
    pub failure_reason: Option<String>,
    /// Labels registered at GitHub: the job's labels, or the pool's for warm runners.
    pub labels: Vec<String>,
    /// `repos/o/r` or `orgs/o`: where it is registered, needed to delete it.
    pub scope: String,
    /// Name at GitHub and of the container (`runnerhub-<pool>-<short id>`).
    pub name: String,
    pub github_runner_id: Option<i64>,
    pub container_id: Option<String>,
    pub instance: String,
    /// The job it was launched for (none for warm runners).
    pub launched_for: Option<i64>,
    /// The job that took it (from `in_progress`).
    pub job_id: Option<i64>,
    /// Removal requested (idle timeout, API drain): deregister, then remove.
    pub draining: bool,
    pub created_at: DateTime<Utc>,
    pub idle_at: Option<DateTime<Utc>>,
    pub busy_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Runner {
    /// The name for a new runner of `pool` under the deployment's `prefix`
    /// (`github.runner_name_prefix`): unique per runner.
    pub fn name_for(prefix: &str, pool: &str, id: &str) -> String {
        let short: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        format!("{prefix}-{pool}-{short}")
    }

    /// Whose a GitHub registration named `name` is, for a deployment whose names start with
    /// `prefix`.
    pub fn name_ownership(name: &str, prefix: &str) -> NameOwnership {
        if name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('-'))
        {
            NameOwnership::Ours
        } else if name.starts_with(LEGACY_NAME_PREFIX) {
            NameOwnership::Legacy
        } else {
            NameOwnership::Foreign
        }
    }

    /// Moves forward to `to`; refuses to go backwards (late Docker or GitHub news).
    /// Returns whether the state changed.
    pub fn advance(&mut self, to: RunnerState, now: DateTime<Utc>) -> bool {
        if to == self.state || to.rank() < self.state.rank() {
            return false;
        }
        if self.state == RunnerState::Removed {
            return false;
        }
        self.state = to;
        match to {
            RunnerState::Idle => self.idle_at = Some(now),
            RunnerState::Busy => self.busy_at = Some(now),
            RunnerState::Finished | RunnerState::Failed => self.finished_at = Some(now),
            RunnerState::Removed => self.removed_at = Some(now),
            _ => {}
        }
        self.updated_at = now;
        true
    }

    /// Fails the runner with a reason (only before it finished).
    pub fn fail(&mut self, reason: impl Into<String>, now: DateTime<Utc>) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        self.failure_reason = Some(reason.into());
        self.advance(RunnerState::Failed, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> Runner {
        let now = Utc::now();
        Runner {
            id: "0b5e1c2a-1111".into(),
            pool: "linux".into(),
            state: RunnerState::Requested,
            failure_reason: None,
            labels: vec![],
            scope: "repos/o/r".into(),
            name: Runner::name_for("runnerhub-i", "linux", "0b5e1c2a-1111"),
            github_runner_id: None,
            container_id: None,
            instance: "i".into(),
            launched_for: None,
            job_id: None,
            draining: false,
            created_at: now,
            idle_at: None,
            busy_at: None,
            finished_at: None,
            removed_at: None,
            updated_at: now,
        }
    }

    #[test]
    fn names_are_short_and_docker_safe() {
        assert_eq!(
            Runner::name_for("runnerhub-ci1", "gpu", "0b5e1c2a-dead-beef"),
            "runnerhub-ci1-gpu-0b5e1c2a"
        );
    }

    #[test]
    fn a_name_is_ours_under_our_prefix_legacy_under_the_old_one_else_foreign() {
        use NameOwnership::*;
        let ours = |name| Runner::name_ownership(name, "runnerhub-ci1");
        assert_eq!(ours("runnerhub-ci1-linux-0b5e1c2a"), Ours);
        // Another deployment's prefix that merely starts like ours is not ours.
        assert_eq!(ours("runnerhub-ci10-linux-0b5e1c2a"), Legacy);
        assert_eq!(
            ours("runnerhub-linux-0b5e1c2a"),
            Legacy,
            "named before the prefix"
        );
        assert_eq!(ours("acme-build-7"), Foreign);
        assert_eq!(Runner::name_ownership("ci-linux-1", "ci"), Ours);
        assert_eq!(Runner::name_ownership("cibot-linux-1", "ci"), Foreign);
    }

    #[test]
    fn never_moves_backwards() {
        let now = Utc::now();
        let mut r = runner();
        assert!(
            r.advance(RunnerState::Busy, now),
            "busy may come before idle is observed"
        );
        assert!(!r.advance(RunnerState::Idle, now));
        assert!(r.advance(RunnerState::Finished, now));
        assert!(
            !r.fail("late", now),
            "a finished runner does not fail afterwards"
        );
        assert!(r.advance(RunnerState::Removed, now));
        assert!(!r.advance(RunnerState::Finished, now));
    }

    #[test]
    fn failure_keeps_the_reason() {
        let mut r = runner();
        assert!(r.fail("image missing", Utc::now()));
        assert_eq!(r.state, RunnerState::Failed);
        assert_eq!(r.failure_reason.as_deref(), Some("image missing"));
        assert!(!r.state.holds_slot());
    }
}
