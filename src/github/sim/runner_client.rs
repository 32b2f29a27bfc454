//! An in-process runner speaking the simulator's runner protocol (see [`super::jit`]), the async
//! twin of the `runnerhub-test-runner` binary: for tests that fake Docker but want real jobs.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::jit::JitConfig;

/// Seconds a job poll waits on the server before polling again.
const POLL_WAIT_SECS: u64 = 20;

/// The job handed to a runner.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AssignedJob {
    pub job_id: u64,
    pub run_id: u64,
    pub repository: String,
    pub labels: Vec<String>,
    pub workflow_name: String,
    pub job_name: String,
    pub duration_ms: u64,
    pub conclusion: String,
}

/// Connects as the runner of `encoded_jit_config`, waits for a job (at most `job_wait`, forever
/// when `None`), "runs" it for its simulated duration, reports its conclusion and returns it.
pub async fn run_runner(
    encoded_jit_config: &str,
    job_wait: Option<Duration>,
) -> anyhow::Result<AssignedJob> {
    let config = JitConfig::decode(encoded_jit_config)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(POLL_WAIT_SECS + 10))
        .build()?;
    let base = config.server_url.trim_end_matches('/');
    let auth = format!("Bearer {}", config.credential);
    let connected = client
        .post(format!("{base}/_sim/runner/connect"))
        .header("Authorization", &auth)
        .send()
        .await?;
    if !connected.status().is_success() {
        bail!(
            "runner {} could not connect: HTTP {}",
            config.runner_name,
            connected.status()
        );
    }
    let started = tokio::time::Instant::now();
    let job = loop {
        if job_wait.is_some_and(|w| started.elapsed() >= w) {
            bail!(
                "runner {}: no job within {:?}",
                config.runner_name,
                job_wait.unwrap_or_default()
            );
        }
        let resp = client
            .get(format!("{base}/_sim/runner/job?wait_secs={POLL_WAIT_SECS}"))
            .header("Authorization", &auth)
            .send()
            .await
            .context("polling for a job")?;
        match resp.status().as_u16() {
            200 => break resp.json::<AssignedJob>().await?,
            204 => continue,
            code => bail!(
                "runner {}: job poll answered HTTP {code}",
                config.runner_name
            ),
        }
    };
    tokio::time::sleep(Duration::from_millis(job.duration_ms)).await;
    let done = client
        .post(format!("{base}/_sim/runner/job/{}/complete", job.job_id))
        .header("Authorization", &auth)
        .json(&json!({"conclusion": job.conclusion}))
        .send()
        .await?;
    if !done.status().is_success() {
        bail!(
            "runner {}: completing job {} answered HTTP {}",
            config.runner_name,
            job.job_id,
            done.status()
        );
    }
    Ok(job)
}
