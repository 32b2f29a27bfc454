//! End to end with the real Docker engine: the test runner image registers through a JIT config
//! from the simulator, takes a matching job, and exits 0. Fails (does not skip) without Docker.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Receiver;
use runnerhub::github::sim::{JobSpec, SimConfig, Simulator};
use serde_json::json;

const IMAGE: &str = "runnerhub-test-runner:latest";
const SECRET: &str = "docker-test-secret";

/// Removes the container by name when the test ends, even on failure.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running `docker {}` failed (is the Docker CLI installed?): {e}",
                args.join(" ")
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_runner_container_takes_a_job_and_exits_zero() {
    tokio::task::spawn_blocking(common::e2e::ensure_runner_image)
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let sim = Simulator::start(SimConfig {
        webhook_url: Some(receiver.url.clone()),
        webhook_secret: SECRET.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let name = format!(
        "runnerhub-simtest-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/repos/acme/api/actions/runners/generate-jitconfig",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .json(
            &json!({"name": name, "runner_group_id": 1, "labels": ["self-hosted", "linux", "x64"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runner_id = registered["runner"]["id"].as_u64().expect("runner id");
    let jit = registered["encoded_jit_config"]
        .as_str()
        .expect("jit config")
        .to_string();

    let _guard = ContainerGuard(name.clone());
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--label",
        "runnerhub.managed=true",
        "--label",
        "runnerhub.test=sim_runner_docker",
        "-e",
        &format!("ACTIONS_RUNNER_INPUT_JITCONFIG={jit}"),
        "-e",
        "RUNNER_JOB_WAIT_TIMEOUT_SECS=60",
        IMAGE,
        "/home/runner/run.sh",
    ]);
    assert!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The runner comes online before the job exists; GitHub then hands the job to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !sim
        .runners()
        .iter()
        .any(|r| r.id == runner_id && r.status != runnerhub::github::sim::RunnerStatus::Registered)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "runner container never connected: {}",
            logs(&name)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = sim
        .enqueue_job(
            JobSpec::new("acme/api", &["self-hosted", "linux"])
                .with_duration(Duration::from_secs(1)),
        )
        .unwrap();

    let queued = receiver.wait_job("queued", Some(job.job_id)).await;
    let in_progress = receiver.wait_job("in_progress", Some(job.job_id)).await;
    assert_eq!(in_progress.json()["workflow_job"]["runner_id"], runner_id);
    assert_eq!(
        in_progress.json()["workflow_job"]["runner_name"],
        name.as_str()
    );
    let completed = receiver.wait_job("completed", Some(job.job_id)).await;
    assert_eq!(completed.json()["workflow_job"]["conclusion"], "success");
    for r in [&queued, &in_progress, &completed] {
        assert!(r.signature_ok(SECRET));
    }

    let waited = tokio::task::spawn_blocking({
        let name = name.clone();
        move || docker(&["wait", &name])
    })
    .await
    .unwrap();
    let exit_code = String::from_utf8_lossy(&waited.stdout).trim().to_string();
    assert_eq!(
        exit_code,
        "0",
        "container exit code; logs:\n{}",
        logs(&name)
    );
    assert!(
        sim.runners().iter().all(|r| r.id != runner_id),
        "the JIT runner leaves the list after its job"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_runner_container_fails_clearly_without_config() {
    tokio::task::spawn_blocking(common::e2e::ensure_runner_image)
        .await
        .unwrap();
    let out = docker(&["run", "--rm", IMAGE]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ACTIONS_RUNNER_INPUT_JITCONFIG is not set")
    );

    // A registered runner with no job for it gives up after RUNNER_JOB_WAIT_TIMEOUT_SECS.
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/orgs/acme/actions/runners/generate-jitconfig",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .json(&json!({"name": "idle-runner", "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jit = format!(
        "ACTIONS_RUNNER_INPUT_JITCONFIG={}",
        registered["encoded_jit_config"].as_str().unwrap()
    );
    let name = format!(
        "runnerhub-simtest-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let _guard = ContainerGuard(name.clone());
    let out = tokio::task::spawn_blocking(move || {
        docker(&[
            "run",
            "--name",
            &name,
            "--network",
            "host",
            "-e",
            &jit,
            "-e",
            "RUNNER_JOB_WAIT_TIMEOUT_SECS=1",
            IMAGE,
        ])
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job within 1s"));
    sim.shutdown().await;
}

fn logs(name: &str) -> String {
    let out = docker(&["logs", name]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
