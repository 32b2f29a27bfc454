//! `BollardRuntime` against the real Docker engine. These tests fail (never skip) without one,
//! and need `busybox-static` installed to build their image (see `common/test_image.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::test_image::{ContainerCleanup, ensure_test_image};
use futures::StreamExt;
use runnerhub::config::{PoolConfig, Secret};
use runnerhub::docker::{
    BollardRuntime, ContainerEvent, ContainerRuntime, DockerError, JIT_CONFIG_ENV, LABEL_INSTANCE,
    LABEL_MANAGED, LABEL_POOL, LABEL_RUNNER_ID, RunnerContainerSpec,
};

const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

async fn runtime() -> BollardRuntime {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    BollardRuntime::connect(&host)
        .await
        .unwrap_or_else(|e| panic!("these tests need a running Docker engine at {host}: {e}"))
}

/// A spec for a fresh runner id (unique container name) running `command` in the test image.
fn spec(command: &[&str], memory: &str) -> (RunnerContainerSpec, ContainerCleanup) {
    let pool = PoolConfig {
        name: "rttest".into(),
        labels: vec!["self-hosted".into()],
        image: ensure_test_image().into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("FOO".into(), "bar".into())]),
        cpus: 0.5,
        memory: memory.into(),
        network: "bridge".into(),
        ..Default::default()
    };
    let runner_id = uuid::Uuid::new_v4().simple().to_string();
    let spec = RunnerContainerSpec::for_runner(
        &pool,
        "test-instance",
        &runner_id,
        &Secret::new("jit-secret"),
    );
    let cleanup = ContainerCleanup(vec![spec.name.clone()]);
    (spec, cleanup)
}

/// The next event about `container_id` that `pick` accepts, or a panic after the timeout.
async fn wait_for<T>(
    events: &mut futures::stream::BoxStream<'static, Result<ContainerEvent, DockerError>>,
    mut pick: impl FnMut(&ContainerEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            let event = events
                .next()
                .await
                .expect("event stream ended")
                .expect("event stream error");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("timed out waiting for a Docker event")
}

#[tokio::test]
async fn create_start_inspect_list_and_remove() {
    let runtime = runtime().await;
    runtime.ping().await.unwrap();
    let mount_dir = tempfile::tempdir().unwrap();
    let (mut spec, _cleanup) = spec(&["sleep", "300"], "64m");
    spec.mounts = vec![format!("{}:/data:ro", mount_dir.path().display())];

    let id = runtime.create_and_start(&spec).await.unwrap();

    let inspect = runtime.client().inspect_container(&id, None).await.unwrap();
    let config = inspect.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels[LABEL_MANAGED], "true");
    assert_eq!(labels[LABEL_POOL], "rttest");
    assert_eq!(labels[LABEL_RUNNER_ID], spec.labels[LABEL_RUNNER_ID]);
    assert_eq!(labels[LABEL_INSTANCE], "test-instance");
    let env = config.env.unwrap();
    assert!(env.contains(&"FOO=bar".to_owned()), "{env:?}");
    assert!(
        env.contains(&format!("{JIT_CONFIG_ENV}=jit-secret")),
        "{env:?}"
    );
    assert_eq!(config.cmd.unwrap(), vec!["sleep", "300"]);
    let host = inspect.host_config.unwrap();
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    assert_eq!(host.binds.unwrap(), spec.mounts);
    assert_eq!(inspect.state.unwrap().running, Some(true));

    let listed = runtime.list_managed().await.unwrap();
    let ours = listed
        .iter()
        .find(|c| c.id == id)
        .expect("list_managed finds the container");
    assert_eq!(ours.name, spec.name);
    assert_eq!(ours.pool.as_deref(), Some("rttest"));
    assert_eq!(
        ours.runner_id.as_deref(),
        Some(spec.labels[LABEL_RUNNER_ID].as_str())
    );
    assert_eq!(ours.instance.as_deref(), Some("test-instance"));
    assert!(ours.running);
    assert!(ours.created.is_some());

    // A second container with the same name is a conflict, not a silent replacement.
    let err = runtime.create_and_start(&spec).await.unwrap_err();
    assert!(
        matches!(err, DockerError::NameConflict(ref n) if *n == spec.name),
        "{err:?}"
    );

    runtime.remove(&id).await.unwrap();
    runtime.remove(&id).await.expect("removing twice is fine");
    assert!(
        !runtime
            .list_managed()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == id)
    );
}

#[tokio::test]
async fn events_report_start_exit_code_and_destroy() {
    let runtime = runtime().await;
    let mut events = runtime.events();
    let (spec, _cleanup) = spec(&["sh", "-c", "exit 3"], "64m");
    let runner_id = spec.labels[LABEL_RUNNER_ID].clone();

    let id = runtime.create_and_start(&spec).await.unwrap();

    let started = wait_for(&mut events, |e| match e {
        ContainerEvent::Started {
            container_id,
            runner_id,
        } if *container_id == id => Some(runner_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(started.as_deref(), Some(runner_id.as_str()));
    let (exit_code, oom) = wait_for(&mut events, |e| match e {
        ContainerEvent::Exited {
            container_id,
            exit_code,
            oom,
            ..
        } if *container_id == id => Some((*exit_code, *oom)),
        _ => None,
    })
    .await;
    assert_eq!(exit_code, Some(3));
    assert!(!oom);

    // Docker emits `die` a moment before the container's state says so: poll briefly.
    let mut ours = None;
    for _ in 0..50 {
        let listed = runtime.list_managed().await.unwrap();
        ours = listed.into_iter().find(|c| c.id == id && !c.running);
        if ours.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ours = ours.expect("list_managed shows the container as exited");
    assert_eq!(ours.exit_code, Some(3));

    runtime.remove(&id).await.unwrap();
    wait_for(&mut events, |e| match e {
        ContainerEvent::Destroyed {
            container_id,
            runner_id: r,
        } if *container_id == id => {
            assert_eq!(r.as_deref(), Some(runner_id.as_str()));
            Some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn out_of_memory_is_reported() {
    let runtime = runtime().await;
    let mut events = runtime.events();
    // Doubles a shell string until the 32 MiB limit (no swap) triggers the OOM killer. With
    // 8 MiB the kill sometimes came before the engine watched the container's memory events:
    // exit 137 with no `oom` event and `OOMKilled` false (2 of 5 by hand with `docker run`, and
    // once in CI), so there was nothing for the daemon to report; 32 MiB: 16 of 16 reported.
    let (spec, _cleanup) = spec(&["sh", "-c", "a=x; while true; do a=$a$a; done"], "32m");

    let id = runtime.create_and_start(&spec).await.unwrap();
    let (exit_code, oom) = wait_for(&mut events, |e| match e {
        ContainerEvent::Exited {
            container_id,
            exit_code,
            oom,
            ..
        } if *container_id == id => Some((*exit_code, *oom)),
        _ => None,
    })
    .await;
    assert!(oom, "exit code {exit_code:?} without an oom event");
    assert_eq!(exit_code, Some(137));
    runtime.remove(&id).await.unwrap();
}

#[tokio::test]
async fn missing_image_is_reported_without_pulling() {
    let runtime = runtime().await;
    let (mut spec, _cleanup) = spec(&["true"], "");
    spec.image = "runnerhub-test-no-such-image:latest".into();
    let err = runtime.create_and_start(&spec).await.unwrap_err();
    assert!(
        matches!(&err, DockerError::ImageMissing(image) if image == "runnerhub-test-no-such-image:latest"),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not pull"), "{err}");
}

#[tokio::test]
async fn unreachable_engine_is_unavailable() {
    let err = BollardRuntime::connect("unix:///nonexistent/docker.sock")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, DockerError::Unavailable(_)), "{err:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = BollardRuntime::connect(&format!("tcp://127.0.0.1:{port}"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, DockerError::Unavailable(_)), "{err:?}");
    let err = BollardRuntime::connect("ssh://host").await.err().unwrap();
    assert!(matches!(err, DockerError::Other(_)), "{err:?}");
}
