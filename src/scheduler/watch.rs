//! Follows Docker's event stream for our containers and forwards it to the scheduler,
//! re-subscribing with backoff when the engine goes away (it may be restarting).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::core::Input;
use crate::docker::{ContainerEvent, ContainerRuntime};
use crate::supervisor::Supervisor;

const MAX_RESUBSCRIBE_BACKOFF: Duration = Duration::from_secs(30);

pub(super) fn spawn_docker_events(
    docker: Arc<dyn ContainerRuntime>,
    events: mpsc::UnboundedSender<Input>,
    shutdown: CancellationToken,
    supervisor: &Supervisor,
) {
    supervisor.spawn("docker events watcher", async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut stream = docker.events();
            let mut received_any = false;
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = shutdown.cancelled() => return,
                };
                match item {
                    Some(Ok(event)) => {
                        received_any = true;
                        if let Some(input) = as_input(event)
                            && events.send(input).is_err()
                        {
                            return; // scheduler gone
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "Docker event stream lost; re-subscribing");
                        break;
                    }
                    None => break,
                }
            }
            if received_any {
                backoff = Duration::from_millis(500);
            }
            let _ = events.send(Input::DockerStreamLost);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_RESUBSCRIBE_BACKOFF);
        }
    });
}

/// What the core needs of a container event: only our runners' containers stopping or going.
fn as_input(event: ContainerEvent) -> Option<Input> {
    match event {
        ContainerEvent::Started { .. } => None,
        ContainerEvent::Exited {
            runner_id,
            exit_code,
            oom,
            ..
        } => Some(Input::ContainerExited {
            runner_id: runner_id?,
            exit_code,
            oom,
        }),
        ContainerEvent::Destroyed { runner_id, .. } => Some(Input::ContainerRemoved {
            runner_id: runner_id?,
        }),
    }
}
