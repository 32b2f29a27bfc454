//! The slow side effects of the scheduler, run as tasks that report back: bringing a runner
//! up (JIT registration, container) and taking it down (deregistration, container removal).

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use super::core::outcomes::{LaunchFailure, Launched, Teardown, TeardownRequest, parse_scope};
use crate::config::PoolConfig;
use crate::docker::{ContainerRuntime, DockerError, RunnerContainerSpec};
use crate::github::{DeleteOutcome, GithubApi, GithubError, JitRequest, RunnerScope};

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

/// How many launches may be at each of their two steps at once. Separate bounds, so that a
/// burst's registrations run ahead while the engine works through the containers: under one
/// bound every container start also waited for a GitHub round trip (about 0.3 s each at
/// github.com), one wave of slots after another.
#[derive(Clone)]
pub struct LaunchSlots {
    /// JIT registrations in flight: GitHub asks integrations to keep concurrent requests few.
    pub registrations: Arc<Semaphore>,
    /// Container create+start in flight: the engine is fastest with a few calls at once, not
    /// with a hundred (`benches/burst.rs`).
    pub containers: Arc<Semaphore>,
}

impl LaunchSlots {
    pub fn new(registrations: usize, containers: usize) -> Self {
        LaunchSlots {
            registrations: Arc::new(Semaphore::new(registrations)),
            containers: Arc::new(Semaphore::new(containers)),
        }
    }
}

pub async fn launch(
    github: Arc<dyn GithubApi>,
    docker: Arc<dyn ContainerRuntime>,
    req: LaunchRequest,
    slots: LaunchSlots,
) -> Result<Launched, LaunchFailure> {
    let registration_slot = slots.registrations.acquire().await;
    let jit = github
        .generate_jit_config(&JitRequest {
            scope: req.scope.clone(),
            name: req.name.clone(),
            labels: req.labels.clone(),
            runner_group_id: req.runner_group_id,
        })
        .await;
    drop(registration_slot);
    let jit = jit.map_err(|e| LaunchFailure {
        reason: "github_error",
        message: format!("JIT registration at {} failed: {e}", req.scope),
        github_runner_id: None,
        scope_not_found: matches!(e, GithubError::NotFound(_)),
    })?;
    let spec = RunnerContainerSpec::for_runner(
        &req.pool,
        &req.instance,
        &req.runner_id,
        &jit.encoded_jit_config,
    );
    let _container_slot = slots.containers.acquire().await;
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
            scope_not_found: false,
        }),
    }
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
