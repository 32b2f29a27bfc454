//! The slow side effects of the scheduler, run as tasks that report back: bringing a runner
//! up (JIT registration, container) and taking it down (deregistration, container removal).

use std::sync::Arc;

use crate::config::PoolConfig;
use crate::docker::{ContainerRuntime, DockerError, RunnerContainerSpec};
use crate::github::{DeleteOutcome, GithubApi, GithubError, JitRequest, RunnerScope};

/// A runner that is up: registered and its container started.
#[derive(Debug, Clone)]
pub struct Launched {
    pub github_runner_id: i64,
    pub container_id: String,
}

/// Why a launch failed, with a bounded reason code for metrics and a message for people.
#[derive(Debug, Clone)]
pub struct LaunchFailure {
    /// One of docker_unavailable, image_missing, github_error, other.
    pub reason: &'static str,
    pub message: String,
    /// Registered at GitHub before the failure: must be deleted.
    pub github_runner_id: Option<i64>,
}

/// What a runner needs to come up.
pub struct LaunchRequest {
    pub runner_id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub scope: RunnerScope,
    pub runner_group_id: u64,
    pub pool: PoolConfig,
    pub instance: String,
}

pub async fn launch(
    github: Arc<dyn GithubApi>,
    docker: Arc<dyn ContainerRuntime>,
    req: LaunchRequest,
) -> Result<Launched, LaunchFailure> {
    let jit = github
        .generate_jit_config(&JitRequest {
            scope: req.scope.clone(),
            name: req.name.clone(),
            labels: req.labels.clone(),
            runner_group_id: req.runner_group_id,
        })
        .await
        .map_err(|e| LaunchFailure {
            reason: "github_error",
            message: format!("JIT registration at {} failed: {e}", req.scope),
            github_runner_id: None,
        })?;
    let spec = RunnerContainerSpec::for_runner(
        &req.pool,
        &req.instance,
        &req.runner_id,
        &jit.encoded_jit_config,
    );
    match docker.create_and_start(&spec).await {
        Ok(container_id) => Ok(Launched {
            github_runner_id: jit.runner_id,
            container_id,
        }),
        Err(e) => Err(LaunchFailure {
            reason: match e {
                DockerError::Unavailable(_) => "docker_unavailable",
                DockerError::ImageMissing(_) => "image_missing",
                _ => "other",
            },
            message: format!("container {} could not start: {e}", spec.name),
            github_runner_id: Some(jit.runner_id),
        }),
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
pub struct TeardownRequest {
    pub scope: Option<RunnerScope>,
    pub github_runner_id: Option<i64>,
    pub container_id: Option<String>,
}

/// Deregisters first (so GitHub stops offering the runner jobs), then removes the container.
pub async fn teardown(
    github: Arc<dyn GithubApi>,
    docker: Arc<dyn ContainerRuntime>,
    req: TeardownRequest,
) -> Teardown {
    if let (Some(scope), Some(id)) = (&req.scope, req.github_runner_id) {
        match github.delete_runner(scope, id).await {
            Ok(DeleteOutcome::Deleted | DeleteOutcome::NotFound) => {}
            Ok(DeleteOutcome::Busy) => return Teardown::Busy,
            Err(GithubError::NotFound(_)) => {}
            Err(e) => return Teardown::Retry(format!("deregistering runner {id} at {scope}: {e}")),
        }
    }
    if let Some(container) = &req.container_id
        && let Err(e) = docker.remove(container).await
    {
        return Teardown::Retry(format!("removing container {container}: {e}"));
    }
    Teardown::Done
}

/// Parses the `scope` column back (`repos/o/r` or `orgs/o`).
pub fn parse_scope(scope: &str) -> Option<RunnerScope> {
    if let Some(repo) = scope.strip_prefix("repos/") {
        RunnerScope::repository(repo)
    } else {
        scope.strip_prefix("orgs/").map(RunnerScope::organization)
    }
}
