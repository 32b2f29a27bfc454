//! [`ContainerRuntime`] on the Docker Engine API through bollard.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::errors::Error as BollardError;
use bollard::models::{EventMessage, EventMessageTypeEnum, HostConfig};
use bollard::system::EventsOptions;
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::stream::{self, BoxStream, StreamExt};

use super::{
    ContainerEvent, ContainerRuntime, DockerError, LABEL_INSTANCE, LABEL_MANAGED, LABEL_POOL,
    LABEL_RUNNER_ID, ManagedContainer, RunnerContainerSpec,
};

/// Timeout of one Docker API call (not of the event stream). Generous: creating a container on
/// a busy host with a slow storage driver can take tens of seconds.
const DOCKER_CALL_TIMEOUT_SECS: u64 = 120;

/// The Docker engine, reached over a unix socket or TCP, at the API version both sides speak.
#[derive(Clone)]
pub struct BollardRuntime {
    /// bollard client; cheap to clone (shared connection pool).
    docker: Docker,
    /// Time (Unix nanoseconds) of the newest event seen, so a re-subscription after a lost
    /// connection asks Docker to replay what happened meanwhile (`since`). Shared by clones.
    last_event_nanos: Arc<AtomicI64>,
}

impl BollardRuntime {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://host:2375`, `http://…`) and
    /// negotiates the API version: bollard's default is newer than e.g. Engine 20.10 (API 1.41),
    /// which would refuse it. (bollard 0.18 in fact drops the `/vX.Y` path prefix, so the engine
    /// answers at its own version; negotiating keeps us right once that is fixed.)
    pub async fn connect(host: &str) -> Result<Self, DockerError> {
        let docker = if host.starts_with("unix://") || host.starts_with('/') {
            Docker::connect_with_unix(host, DOCKER_CALL_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(host, DOCKER_CALL_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(DockerError::Other(format!(
                "docker.host `{host}`: expected unix://PATH, tcp://HOST:PORT or http://HOST:PORT"
            )));
        }
        .map_err(|e| map_error(host_context(host), e))?;
        let docker = timed("negotiate_version", docker.negotiate_version())
            .await
            .map_err(|e| map_error(host_context(host), e))?;
        tracing::info!(docker.host = host, api_version = %docker.client_version(), "connected to Docker");
        Ok(BollardRuntime {
            docker,
            last_event_nanos: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The underlying bollard client (for tests and diagnostics).
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for BollardRuntime {
    async fn ping(&self) -> Result<(), DockerError> {
        timed("ping", self.docker.ping())
            .await
            .map(drop)
            .map_err(|e| map_error("ping", e))
    }

    async fn create_and_start(&self, spec: &RunnerContainerSpec) -> Result<String, DockerError> {
        let (options, config) = create_request(spec);
        let created = timed(
            "create_container",
            self.docker.create_container(Some(options), config),
        )
        .await
        .map_err(|e| match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } if message.to_ascii_lowercase().contains("no such image") => {
                DockerError::ImageMissing(spec.image.clone())
            }
            BollardError::DockerResponseServerError {
                status_code: 409, ..
            } => DockerError::NameConflict(spec.name.clone()),
            e => map_error("create container", e),
        })?;
        let id = created.id;
        if let Err(e) = timed(
            "start_container",
            self.docker.start_container::<String>(&id, None),
        )
        .await
        {
            let err = map_error("start container", e);
            tracing::warn!(container.id = %id, container.name = %spec.name, error = %err, "container failed to start; removing it");
            // Best effort: a leftover is also found later by the orphan reaper via its labels.
            if let Err(remove_err) = self.remove(&id).await {
                tracing::warn!(container.id = %id, error = %remove_err, "cannot remove the container that failed to start");
            }
            return Err(err);
        }
        tracing::info!(container.id = %id, container.name = %spec.name, image = %spec.image, "runner container started");
        Ok(id)
    }

    async fn remove(&self, container_id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match timed(
            "remove_container",
            self.docker.remove_container(container_id, Some(options)),
        )
        .await
        {
            Ok(()) => Ok(()),
            // Already gone, or being removed by someone else right now: the goal is reached.
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(map_error("remove container", e)),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, DockerError> {
        let options = ListContainersOptions::<String> {
            all: true,
            filters: managed_filter(),
            ..Default::default()
        };
        let summaries = timed(
            "list_containers",
            self.docker.list_containers(Some(options)),
        )
        .await
        .map_err(|e| map_error("list containers", e))?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                let name = s
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default();
                Some(ManagedContainer {
                    id: s.id?,
                    name,
                    pool: labels.get(LABEL_POOL).cloned(),
                    runner_id: labels.get(LABEL_RUNNER_ID).cloned(),
                    instance: labels.get(LABEL_INSTANCE).cloned(),
                    running: s.state.as_deref() == Some("running"),
                    exit_code: s.status.as_deref().and_then(exit_code_from_status),
                    created: s
                        .created
                        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)),
                })
            })
            .collect())
    }

    fn events(&self) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        let last_seen = self.last_event_nanos.clone();
        // The HTTP request only leaves when the stream is first polled; `since` makes Docker
        // replay what happened from this call on (or, on a re-subscription, from the newest
        // event seen), so nothing falls into that gap. Delivery is at least once: the event at
        // exactly `since` may come twice.
        let since_nanos = match last_seen.load(Ordering::Relaxed) {
            0 => chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            nanos => nanos,
        };
        let since = Some(format!(
            "{}.{:09}",
            since_nanos.div_euclid(1_000_000_000),
            since_nanos.rem_euclid(1_000_000_000)
        ));
        let mut filters = managed_filter();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            ["start", "die", "oom", "destroy"]
                .map(String::from)
                .to_vec(),
        );
        let options = EventsOptions::<String> {
            since,
            until: None,
            filters,
        };
        // Docker sends `oom` just before `die`; remember it to flag the exit.
        let mut oom_seen: HashSet<String> = HashSet::new();
        let docker = self.docker.clone();
        let events = self.docker.events(Some(options)).filter_map(move |item| {
            let out = match item {
                Ok(message) => {
                    if let Some(nanos) = message.time_nano {
                        last_seen.fetch_max(nanos, Ordering::Relaxed);
                    }
                    translate_event(message, &mut oom_seen).map(Ok)
                }
                Err(e) => Some(Err(map_error("event stream", e))),
            };
            confirm_oom(docker.clone(), out)
        });
        // The stream never ends silently: the caller must know to subscribe again.
        let ended = stream::once(futures::future::ready(Err(DockerError::Unavailable(
            "Docker event stream closed (daemon restarting or connection lost); subscribe again and reconcile".into(),
        ))));
        events
            .chain(ended)
            .scan(false, |failed, item| {
                // Stop after the first error so that a consumer never sees events after a gap.
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            })
            .boxed()
    }
}

/// The Engine API's create request for a runner container (also what `benches/burst.rs` sends
/// straight to the engine as its baseline, so both create the same container).
pub fn create_request(
    spec: &RunnerContainerSpec,
) -> (CreateContainerOptions<String>, Config<String>) {
    let host_config = HostConfig {
        nano_cpus: spec.nano_cpus,
        memory: spec.memory_bytes,
        // Without this Docker allows as much swap again; a runner over its limit should be
        // OOM-killed and reported, not thrash the host's swap.
        memory_swap: spec.memory_bytes,
        network_mode: Some(spec.network.clone()),
        binds: (!spec.mounts.is_empty()).then(|| spec.mounts.clone()),
        privileged: Some(spec.privileged),
        ..Default::default()
    };
    let config = Config {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env_strings()),
        labels: Some(spec.labels.clone().into_iter().collect::<HashMap<_, _>>()),
        host_config: Some(host_config),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: spec.name.clone(),
        platform: None,
    };
    (options, config)
}

/// How long after a SIGKILL exit with no `oom` event the container's own record is asked.
const OOM_RECORD_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// `oom` and `die` come from different parts of the engine and, under load, now and then in
/// the other order (seen in CI: exit 137, no `oom` before it). So an exit by SIGKILL (137) with
/// no `oom` seen is checked against the container's `State.OOMKilled` once the engine has had
/// a moment to record it. Only such exits wait; every other event passes straight through.
async fn confirm_oom(
    docker: Docker,
    event: Option<Result<ContainerEvent, DockerError>>,
) -> Option<Result<ContainerEvent, DockerError>> {
    let Some(Ok(ContainerEvent::Exited {
        container_id,
        runner_id,
        exit_code: Some(137),
        oom: false,
    })) = event
    else {
        return event;
    };
    tokio::time::sleep(OOM_RECORD_DELAY).await;
    let oom = docker
        .inspect_container(&container_id, None)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|state| state.oom_killed)
        .unwrap_or(false);
    Some(Ok(ContainerEvent::Exited {
        container_id,
        runner_id,
        exit_code: Some(137),
        oom,
    }))
}

/// Maps one Docker event to ours; `None` for events we don't report (e.g. `oom` itself).
fn translate_event(
    message: EventMessage,
    oom_seen: &mut HashSet<String>,
) -> Option<ContainerEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = message.actor?;
    let container_id = actor.id?;
    let attributes = actor.attributes.unwrap_or_default();
    let runner_id = attributes.get(LABEL_RUNNER_ID).cloned();
    match message.action.as_deref()? {
        "start" => Some(ContainerEvent::Started {
            container_id,
            runner_id,
        }),
        "oom" => {
            oom_seen.insert(container_id);
            None
        }
        "die" => Some(ContainerEvent::Exited {
            oom: oom_seen.remove(&container_id),
            container_id,
            runner_id,
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        }),
        "destroy" => {
            oom_seen.remove(&container_id);
            Some(ContainerEvent::Destroyed {
                container_id,
                runner_id,
            })
        }
        _ => None,
    }
}

/// `label=runnerhub.managed=true`.
fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")])])
}

/// `Exited (3) 2 minutes ago` → 3.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

fn host_context(host: &str) -> &'static str {
    if host.starts_with("unix://") || host.starts_with('/') {
        "connect (unix socket)"
    } else {
        "connect (tcp)"
    }
}

/// Records the latency of one Docker call under a fixed call name.
async fn timed<T>(
    call: &'static str,
    fut: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, BollardError> {
    let started = Instant::now();
    let result = fut.await;
    metrics::histogram!(crate::metrics::DOCKER_CALL_DURATION_SECONDS, "call" => call)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Classifies a bollard error: connection-level failures are `Unavailable` (retry later),
/// the rest carry the engine's message.
fn map_error(context: &str, e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Other(format!("{context}: HTTP {status_code}: {message}")),
        BollardError::SocketNotFoundError(path) => {
            DockerError::Unavailable(format!("{context}: socket {path} does not exist"))
        }
        e @ (BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError) => {
            DockerError::Unavailable(format!("{context}: {}", error_chain(&e)))
        }
        e => DockerError::Other(format!("{context}: {}", error_chain(&e))),
    }
}

/// An error and its sources on one line ("client error (Connect): Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, id: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn oom_before_die_flags_the_exit() {
        let mut seen = HashSet::new();
        assert_eq!(translate_event(event("oom", "c1", &[]), &mut seen), None);
        let exited = translate_event(
            event("die", "c1", &[("exitCode", "137"), (LABEL_RUNNER_ID, "r1")]),
            &mut seen,
        );
        assert_eq!(
            exited,
            Some(ContainerEvent::Exited {
                container_id: "c1".into(),
                runner_id: Some("r1".into()),
                exit_code: Some(137),
                oom: true
            })
        );
        let plain = translate_event(event("die", "c1", &[("exitCode", "0")]), &mut seen);
        assert!(matches!(
            plain,
            Some(ContainerEvent::Exited {
                oom: false,
                exit_code: Some(0),
                ..
            })
        ));
        assert!(seen.is_empty());
    }

    #[test]
    fn exit_code_is_read_from_list_status() {
        assert_eq!(exit_code_from_status("Exited (3) 2 seconds ago"), Some(3));
        assert_eq!(
            exit_code_from_status("Exited (137) About a minute ago"),
            Some(137)
        );
        assert_eq!(exit_code_from_status("Up 3 seconds"), None);
        assert_eq!(exit_code_from_status("Created"), None);
    }
}
