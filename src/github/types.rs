//! The types of the GitHub client's interface, and the wire shapes of the responses it reads.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;

/// Where a runner is registered: one repository, or an organization (then any of its
/// repositories' jobs may use it, subject to the runner group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunnerScope {
    /// `/repos/{owner}/{repo}/actions/runners…`
    Repository { owner: String, repo: String },
    /// `/orgs/{org}/actions/runners…`
    Organization { org: String },
}

impl RunnerScope {
    /// The scope of a repository given as `owner/name` (a webhook's `repository.full_name`).
    /// `None` unless there are exactly two non-empty parts, so a malformed name can never
    /// produce a path that escapes the repository.
    pub fn repository(full_name: &str) -> Option<Self> {
        let (owner, repo) = full_name.split_once('/')?;
        let valid = |s: &str| !s.is_empty() && !s.contains(['/', '?', '#', ' ']) && s != "..";
        (valid(owner) && valid(repo)).then(|| RunnerScope::Repository {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
        })
    }

    /// The scope of an organization.
    pub fn organization(org: &str) -> Self {
        RunnerScope::Organization {
            org: org.to_owned(),
        }
    }

    /// The API path prefix of the scope, without slashes at either end: `repos/o/r` or `orgs/o`.
    pub fn api_path(&self) -> String {
        match self {
            RunnerScope::Repository { owner, repo } => format!("repos/{owner}/{repo}"),
            RunnerScope::Organization { org } => format!("orgs/{org}"),
        }
    }
}

impl std::fmt::Display for RunnerScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunnerScope::Repository { owner, repo } => write!(f, "{owner}/{repo}"),
            RunnerScope::Organization { org } => write!(f, "org {org}"),
        }
    }
}

/// A request to register one just-in-time runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitRequest {
    /// Where the runner is registered.
    pub scope: RunnerScope,
    /// Runner name; unique within the scope (GitHub answers 409 otherwise).
    pub name: String,
    /// Labels the runner advertises (1..=100); `self-hosted` etc. must be listed explicitly.
    pub labels: Vec<String>,
    /// Runner group (1 = Default).
    pub runner_group_id: u64,
}

/// A registered JIT runner and the configuration its container starts with.
#[derive(Debug, Clone)]
pub struct JitConfig {
    /// GitHub's id of the runner, needed to delete it.
    pub runner_id: i64,
    /// The runner name GitHub registered.
    pub runner_name: String,
    /// Opaque base64 configuration for `ACTIONS_RUNNER_INPUT_JITCONFIG`; it holds the runner's
    /// credentials, hence a [`Secret`].
    pub encoded_jit_config: Secret,
}

/// What a runner deletion found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 204: the registration is gone.
    Deleted,
    /// 404: it was already gone (deleted before, or never existed) — success for a cleaner.
    NotFound,
    /// 422: the runner is running a job; try again once the job completed.
    Busy,
}

/// A runner as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredRunner {
    /// GitHub's runner id.
    pub id: i64,
    /// Runner name (ours start with `runnerhub-`).
    pub name: String,
    /// `online` or `offline`.
    pub status: String,
    /// Whether it is running a job.
    pub busy: bool,
    /// Label names, as GitHub spells them.
    pub labels: Vec<String>,
}

/// Why a GitHub call failed. Messages carry GitHub's `message` field, never headers or tokens.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// 401, or 403 that is not a rate limit: bad or insufficient credentials.
    #[error("GitHub refused the credentials: {0}")]
    Unauthorized(String),
    /// 409: a runner with this name already exists in the scope.
    #[error("GitHub reports a name conflict: {0}")]
    NameConflict(String),
    /// 422: the request was understood but refused (bad labels, runner group…).
    #[error("GitHub rejected the request: {0}")]
    Validation(String),
    /// 404: the repository, organization or runner does not exist or is not visible.
    #[error("not found at GitHub: {0}")]
    NotFound(String),
    /// Primary or secondary rate limit whose wait is too long to sleep through here.
    #[error("GitHub rate limit reached; retry in {retry_after:?}")]
    RateLimited {
        /// How long until GitHub accepts requests again.
        retry_after: Duration,
    },
    /// 5xx (after the retries), or any other unexpected status.
    #[error("GitHub answered HTTP {status}")]
    Server {
        /// The HTTP status code.
        status: u16,
    },
    /// Connection, TLS or timeout failure (after the retries), or a bad configuration of the client.
    #[error("cannot reach GitHub: {0}")]
    Transport(String),
    /// A 2xx response whose body was not what the API documents.
    #[error("unexpected GitHub response: {0}")]
    Decode(String),
}

impl GithubError {
    /// Whether a later retry of the same call may succeed (the caller may re-queue it).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GithubError::RateLimited { .. }
                | GithubError::Server { .. }
                | GithubError::Transport(_)
        )
    }
}

/// `{"message": "...", "documentation_url": "..."}`, GitHub's error body.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub message: Option<String>,
}

/// A label object in runner responses.
#[derive(Debug, Deserialize)]
pub(crate) struct WireLabel {
    pub name: String,
}

/// A runner object in runner responses.
#[derive(Debug, Deserialize)]
pub(crate) struct WireRunner {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub busy: bool,
    #[serde(default)]
    pub labels: Vec<WireLabel>,
}

impl From<WireRunner> for RegisteredRunner {
    fn from(w: WireRunner) -> Self {
        RegisteredRunner {
            id: w.id,
            name: w.name,
            status: w.status,
            busy: w.busy,
            labels: w.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

/// Response of `generate-jitconfig`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireJitConfig {
    pub runner: WireRunner,
    pub encoded_jit_config: String,
}

/// Response of `GET …/actions/runners`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireRunnerList {
    pub total_count: u64,
    pub runners: Vec<WireRunner>,
}

/// Response of `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireInstallationToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// `GET …/actions/runs`: only the ids are read.
#[derive(Deserialize)]
pub(crate) struct WireRunList {
    pub workflow_runs: Vec<WireRunId>,
}

#[derive(Deserialize)]
pub(crate) struct WireRunId {
    pub id: i64,
}

/// `GET …/actions/runs/{id}/jobs`: the jobs are kept whole, to be read as a delivery would be.
#[derive(Deserialize)]
pub(crate) struct WireJobList {
    pub jobs: Vec<serde_json::Value>,
}

/// Stands in for the client when no credentials are configured (and no pool needs them).
pub struct NoCredentials;

#[async_trait::async_trait]
impl crate::github::GithubApi for NoCredentials {
    async fn generate_jit_config(&self, _: &JitRequest) -> Result<JitConfig, GithubError> {
        Err(GithubError::Unauthorized(
            "no GitHub credentials configured".into(),
        ))
    }

    async fn delete_runner(&self, _: &RunnerScope, _: i64) -> Result<DeleteOutcome, GithubError> {
        Err(GithubError::Unauthorized(
            "no GitHub credentials configured".into(),
        ))
    }

    async fn list_runners(&self, _: &RunnerScope) -> Result<Vec<RegisteredRunner>, GithubError> {
        Err(GithubError::Unauthorized(
            "no GitHub credentials configured".into(),
        ))
    }

    async fn active_jobs(&self, _: &RunnerScope) -> Result<Vec<serde_json::Value>, GithubError> {
        Err(GithubError::Unauthorized(
            "no GitHub credentials configured".into(),
        ))
    }

    async fn job(&self, _: &RunnerScope, _: i64) -> Result<Option<serde_json::Value>, GithubError> {
        Err(GithubError::Unauthorized(
            "no GitHub credentials configured".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_scope_parses_owner_and_name_only() {
        let scope = RunnerScope::repository("octo/hello").unwrap();
        assert_eq!(scope.api_path(), "repos/octo/hello");
        assert_eq!(RunnerScope::organization("octo").api_path(), "orgs/octo");
        for bad in ["octo", "/hello", "octo/", "a/b/c", "a/..", "a/b?x"] {
            assert_eq!(RunnerScope::repository(bad), None, "{bad}");
        }
    }
}
