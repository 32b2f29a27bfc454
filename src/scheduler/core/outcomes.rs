//! What the slow side effects report back to the core, and what a teardown needs: plain data,
//! so that the core can be driven by the daemon's tasks and by replay alike.

use crate::github::RunnerScope;

/// A runner that is up: registered and its container started.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub github_runner_id: i64,
    pub container_id: String,
}

/// Why a launch failed, with a bounded reason code for metrics and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchFailure {
    /// One of docker_unavailable, image_missing, github_error, other.
    pub reason: &'static str,
    pub message: String,
    /// Registered at GitHub before the failure: must be deleted.
    pub github_runner_id: Option<i64>,
    /// GitHub answered the registration 404: the scope does not exist, or the credentials
    /// cannot see it (see `refusals.rs`).
    pub scope_not_found: bool,
}

impl LaunchFailure {
    /// GitHub refused the registration: the job's repository (or organization) is at fault,
    /// not the pool, so the backoff applies to that scope only.
    pub fn is_registration_refused(&self) -> bool {
        self.reason == "github_error"
    }
}

/// How a teardown ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    /// Deregistered (or never registered) and the container is gone.
    Done,
    /// GitHub says the runner is running a job: it was left alone.
    Busy,
    /// Something failed; try again later.
    Retry(String),
}

/// What to take down.
#[derive(Debug, Clone, PartialEq)]
pub struct TeardownRequest {
    pub scope: Option<RunnerScope>,
    pub github_runner_id: Option<i64>,
    pub container_id: Option<String>,
}

/// Parses the `scope` column back (`repos/o/r` or `orgs/o`).
pub fn parse_scope(scope: &str) -> Option<RunnerScope> {
    if let Some(repo) = scope.strip_prefix("repos/") {
        RunnerScope::repository(repo)
    } else {
        scope.strip_prefix("orgs/").map(RunnerScope::organization)
    }
}
