//! The container runtime: what the launcher and reconciler need from Docker, behind a trait so
//! fast tests can use a fake, and its bollard implementation.
//!
//! Every container runnerhub creates carries [`LABEL_MANAGED`]`=true`; listing and events are
//! filtered on it, so containers of other tools on the same host are never touched.

mod bollard_runtime;
mod lazy;
mod spec;

pub use bollard_runtime::{BollardRuntime, create_request};
pub use lazy::LazyRuntime;
pub use spec::{JIT_CONFIG_ENV, RunnerContainerSpec};

/// Marks a container as runnerhub's (`"true"`).
pub const LABEL_MANAGED: &str = "runnerhub.managed";
/// The pool whose configuration the container was made from.
pub const LABEL_POOL: &str = "runnerhub.pool";
/// runnerhub's id of the runner (its database key, not GitHub's runner id).
pub const LABEL_RUNNER_ID: &str = "runnerhub.runner-id";
/// The runnerhub instance that created the container (`server.instance_id`).
pub const LABEL_INSTANCE: &str = "runnerhub.instance";

/// Operations on the Docker engine that runs runner containers.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Checks that the engine answers (readiness probe, start-up check).
    async fn ping(&self) -> Result<(), DockerError>;
    /// Creates and starts a container; returns its id. The image must already be present:
    /// nothing is pulled. A container that was created but failed to start is removed again.
    async fn create_and_start(&self, spec: &RunnerContainerSpec) -> Result<String, DockerError>;
    /// Removes a container, killing it if it runs. An unknown container is not an error.
    async fn remove(&self, container_id: &str) -> Result<(), DockerError>;
    /// Every container labelled `runnerhub.managed=true`, running or not.
    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, DockerError>;
    /// Start/exit/destroy events of managed containers from the moment of this call on (even
    /// before the stream is first polled). The stream ends with an
    /// `Err` (never silently) when the connection is lost, e.g. because the daemon restarted;
    /// the caller subscribes again and reconciles with [`ContainerRuntime::list_managed`].
    fn events(&self) -> futures::stream::BoxStream<'static, Result<ContainerEvent, DockerError>>;
}

/// A managed container as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedContainer {
    /// Full container id.
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// Value of [`LABEL_POOL`].
    pub pool: Option<String>,
    /// Value of [`LABEL_RUNNER_ID`].
    pub runner_id: Option<String>,
    /// Value of [`LABEL_INSTANCE`].
    pub instance: Option<String>,
    /// State is `running` (paused or restarting containers count as not running).
    pub running: bool,
    /// Exit code of an exited container (read from the list's status text, which avoids one
    /// inspect call per container).
    pub exit_code: Option<i64>,
    /// Creation time.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// A lifecycle event of a managed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    /// The container started.
    Started {
        container_id: String,
        runner_id: Option<String>,
    },
    /// The container's process ended (Docker's `die`).
    Exited {
        container_id: String,
        runner_id: Option<String>,
        /// Exit code, when Docker reports one.
        exit_code: Option<i64>,
        /// The kernel's OOM killer struck first (Docker's `oom` event preceded the `die`).
        oom: bool,
    },
    /// The container was removed.
    Destroyed {
        container_id: String,
        runner_id: Option<String>,
    },
}

/// Why a Docker call failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached (socket missing, daemon down or restarting, timeout).
    #[error("Docker engine unavailable: {0}")]
    Unavailable(String),
    /// The image is not present locally; runnerhub never pulls (there may be no registry).
    #[error(
        "image `{0}` is not present on the Docker host; runnerhub does not pull images: build, load or pull it there first"
    )]
    ImageMissing(String),
    /// A container with this name already exists.
    #[error("a container named `{0}` already exists")]
    NameConflict(String),
    /// Anything else the engine refused.
    #[error("Docker error: {0}")]
    Other(String),
}
