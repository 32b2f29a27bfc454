//! Scheduler latency and scale, with GitHub and Docker replaced by zero-latency stand-ins so
//! that what is measured is runnerhub's own work (ingest, processing, queue, planning,
//! recording the runner, the launch task) and nothing of GitHub's JIT call or Docker's
//! create/start.
//!
//! `cargo bench --bench scheduler` (options: `-- --jobs 100 --queued 5000 --runners 200`).
//! 1. Latency: one job at a time; from the signed `queued` delivery's acknowledgement to the
//!    stand-in's `create_and_start` being called ("docker start"), and to GitHub first reporting
//!    the runner online ("idle"; found by the scheduler's poll, once a second).
//! 2. Scale: `--queued` jobs waiting and `--runners` runners up; the process's resident memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use runnerhub::config::{Config, Secret};
use runnerhub::docker::{
    ContainerEvent, ContainerRuntime, DockerError, ManagedContainer, RunnerContainerSpec,
};
use runnerhub::github::{
    DeleteOutcome, GithubApi, GithubError, JitConfig, JitRequest, RegisteredRunner, RunnerScope,
};
use runnerhub::webhook::signature::sign;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "shared/resident.rs"]
mod resident;
use resident::resident_mib;

const SECRET: &str = "bench-secret";

/// GitHub that answers at once; every registered runner is online.
#[derive(Default)]
struct InstantGithub {
    runners: Mutex<HashMap<i64, String>>,
    /// When each runner name was first reported online.
    first_online: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl GithubApi for InstantGithub {
    async fn generate_jit_config(&self, req: &JitRequest) -> Result<JitConfig, GithubError> {
        let mut runners = self.runners.lock().unwrap();
        let id = runners.len() as i64 + 1;
        runners.insert(id, req.name.clone());
        Ok(JitConfig {
            runner_id: id,
            runner_name: req.name.clone(),
            encoded_jit_config: Secret::new("jit"),
        })
    }

    async fn delete_runner(&self, _: &RunnerScope, id: i64) -> Result<DeleteOutcome, GithubError> {
        Ok(match self.runners.lock().unwrap().remove(&id) {
            Some(_) => DeleteOutcome::Deleted,
            None => DeleteOutcome::NotFound,
        })
    }

    async fn active_jobs(&self, _: &RunnerScope) -> Result<Vec<serde_json::Value>, GithubError> {
        Ok(Vec::new())
    }

    async fn job(&self, _: &RunnerScope, _: i64) -> Result<Option<serde_json::Value>, GithubError> {
        Ok(None)
    }

    async fn list_runners(&self, _: &RunnerScope) -> Result<Vec<RegisteredRunner>, GithubError> {
        let now = Instant::now();
        let runners = self.runners.lock().unwrap().clone();
        let mut online = self.first_online.lock().unwrap();
        Ok(runners
            .into_iter()
            .map(|(id, name)| {
                online.entry(name.clone()).or_insert(now);
                RegisteredRunner {
                    id,
                    name,
                    status: "online".into(),
                    busy: false,
                    labels: vec![],
                }
            })
            .collect())
    }
}

/// Docker that starts containers at once and reports when each start was asked for.
struct InstantDocker {
    started: mpsc::UnboundedSender<(String, Instant)>,
    containers: Mutex<Vec<ManagedContainer>>,
}

#[async_trait]
impl ContainerRuntime for InstantDocker {
    async fn ping(&self) -> Result<(), DockerError> {
        Ok(())
    }

    async fn create_and_start(&self, spec: &RunnerContainerSpec) -> Result<String, DockerError> {
        let _ = self.started.send((spec.name.clone(), Instant::now()));
        let runner_id = spec.labels.get(runnerhub::docker::LABEL_RUNNER_ID).cloned();
        self.containers.lock().unwrap().push(ManagedContainer {
            id: spec.name.clone(),
            name: spec.name.clone(),
            pool: spec.labels.get(runnerhub::docker::LABEL_POOL).cloned(),
            runner_id,
            instance: spec.labels.get(runnerhub::docker::LABEL_INSTANCE).cloned(),
            running: true,
            exit_code: None,
            created: None,
        });
        Ok(spec.name.clone())
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.containers.lock().unwrap().retain(|c| c.id != id);
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, DockerError> {
        Ok(self.containers.lock().unwrap().clone())
    }

    fn events(&self) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        Box::pin(futures::stream::pending())
    }
}

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn job_body(template: &serde_json::Value, id: i64) -> Vec<u8> {
    let mut v = template.clone();
    v["workflow_job"]["id"] = id.into();
    v["workflow_job"]["labels"] = serde_json::json!(["self-hosted", "linux"]);
    serde_json::to_vec(&v).unwrap()
}

async fn deliver(client: &reqwest::Client, url: &str, template: &serde_json::Value, id: i64) {
    let body = job_body(template, id);
    let r = client
        .post(url)
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", format!("sched-{id}"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        p(0.5),
        p(0.95),
        p(1.0)
    )
}

#[tokio::main]
async fn main() {
    let (jobs, queued, runners) = (
        arg("--jobs", 100),
        arg("--queued", 5000),
        arg("--runners", 200),
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [server]
        instance_id = "bench"
        [database]
        url = "sqlite://{}/bench.db"
        [github]
        token = "unused"
        [limits]
        max_runners = {runners}
        [[pools]]
        name = "linux"
        labels = ["self-hosted", "linux"]
        max_runners = {runners}
        "#,
        dir.path().display()
    );
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let config = Config::from_toml_with_env(&text, std::path::Path::new("bench"), &env).unwrap();
    let github = Arc::new(InstantGithub::default());
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let docker = Arc::new(InstantDocker {
        started: started_tx,
        containers: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/webhooks/github",
        listener.local_addr().unwrap()
    );
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let options = runnerhub::app::RunOptions {
        github: Some(github.clone()),
        docker: Some(docker.clone()),
        ..Default::default()
    };
    let server = tokio::spawn(runnerhub::app::run_with(
        config,
        listener,
        shutdown.clone(),
        options,
    ));
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fixtures = format!("{}/tests/fixtures/github", env!("CARGO_MANIFEST_DIR"));
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{fixtures}/webhooks/workflow_job.selfhosted.queued.json"
        ))
        .unwrap(),
    )
    .unwrap();

    // 1. Latency, one job at a time.
    let (mut to_start, mut to_idle) = (Vec::new(), Vec::new());
    for i in 0..jobs {
        let sent = Instant::now();
        deliver(&client, &url, &template, 1 + i as i64).await;
        let acked = Instant::now();
        let (name, at) = started.recv().await.unwrap();
        to_start.push(at - acked);
        let idle = loop {
            if let Some(at) = github.first_online.lock().unwrap().get(&name) {
                break *at;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        to_idle.push(idle - acked);
        let _ = sent;
    }
    println!("{jobs} jobs, one at a time (GitHub and Docker answer instantly):");
    println!("  ack -> docker start called: {}", percentiles(to_start));
    println!(
        "  ack -> runner online at GitHub: {} (found by the 1 s poll)",
        percentiles(to_idle)
    );

    // 2. Scale: fill up to `runners` runners and `queued` waiting jobs.
    let started_at = Instant::now();
    let total = queued.saturating_sub(jobs);
    let mut sends = Vec::new();
    for worker in 0..8 {
        let (client, url, template) = (client.clone(), url.clone(), template.clone());
        sends.push(tokio::spawn(async move {
            let mut id = 1_000_000 + worker as i64;
            while id < 1_000_000 + total as i64 {
                deliver(&client, &url, &template, id).await;
                id += 8;
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let status = loop {
        let v: serde_json::Value = client
            .get(format!("{base}/api/runners/pool/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pool = v["data"]["pools"][0].clone();
        if pool["queued"].as_u64().unwrap_or(0) as usize >= queued
            && pool["idle"].as_u64().unwrap_or(0) as usize >= runners
        {
            break pool;
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(300),
            "scale phase did not settle: {pool}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "scale: {} queued jobs, {} idle runners, reached in {:.1} s; process RSS {:.0} MiB",
        status["queued"],
        status["idle"],
        started_at.elapsed().as_secs_f64(),
        resident_mib()
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
