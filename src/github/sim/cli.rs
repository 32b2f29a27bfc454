//! `runnerhub sim ...`: run the simulator as a process and drive it through its control API.
//!
//! ```text
//! GITHUB_WEBHOOK_SECRET=s3cret runnerhub sim serve --listen 127.0.0.1:4010 \
//!     --webhook-url http://127.0.0.1:3000/api/webhooks/github
//! runnerhub sim enqueue --sim-url http://127.0.0.1:4010 --repo acme/api \
//!     --labels self-hosted,linux,x64 --duration 5s --count 3
//! runnerhub sim enqueue --sim-url http://127.0.0.1:4010 --demo
//! runnerhub sim push --sim-url http://127.0.0.1:4010 --repo acme/api --branch feature
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{JobSpec, SimApp, SimConfig, Simulator, demo_job_mix};

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: SimCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run the GitHub simulator until Ctrl-C / SIGTERM.
    Serve(ServeArgs),
    /// Enqueue jobs in a running simulator.
    Enqueue(EnqueueArgs),
    /// Send a `push` webhook from a running simulator.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub listen: SocketAddr,
    /// Where to POST webhooks (runnerhub's `/api/webhooks/github`); none = only log deliveries.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook secret.
    #[arg(long, default_value = "GITHUB_WEBHOOK_SECRET")]
    pub webhook_secret_env: String,
    /// Environment variable holding the token (PAT) the REST API accepts; `sim-token` when unset.
    #[arg(long, default_value = "GITHUB_TOKEN")]
    pub token_env: String,
    /// GitHub App id accepted on `/app/*` (with --installation-id and --app-public-key).
    #[arg(long, requires_all = ["installation_id", "app_public_key"])]
    pub app_id: Option<u64>,
    #[arg(long)]
    pub installation_id: Option<u64>,
    /// PEM file with the App's RSA public key.
    #[arg(long)]
    pub app_public_key: Option<PathBuf>,
    /// Primary rate-limit budget per hour.
    #[arg(long, default_value_t = 5000)]
    pub rate_limit: u32,
    /// Known owners (repeatable); REST calls for other owners answer 404. None = any.
    #[arg(long)]
    pub owner: Vec<String>,
    /// Base URL written into JIT configs, when runners reach the simulator at another address.
    #[arg(long)]
    pub runner_url: Option<String>,
    /// Enqueue the demo job mix at start.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Base URL of the simulator.
    #[arg(long, default_value = "http://127.0.0.1:4010")]
    pub sim_url: String,
    /// Repository, `owner/repo`.
    #[arg(long, required_unless_present = "demo")]
    pub repo: Option<String>,
    /// The job's `runs-on` labels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "self-hosted,linux,x64")]
    pub labels: Vec<String>,
    /// How long the job runs (humantime: 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[arg(long, default_value = "success")]
    pub conclusion: String,
    #[arg(long, default_value = "CI")]
    pub workflow: String,
    #[arg(long, default_value = "build")]
    pub job_name: String,
    /// Enqueue the demo job mix instead.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[arg(long, default_value = "http://127.0.0.1:4010")]
    pub sim_url: String,
    #[arg(long)]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
}

pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Serve(a) => serve(a).await,
        SimCommand::Enqueue(a) => enqueue(a).await,
        SimCommand::Push(a) => {
            let v = post(
                &a.sim_url,
                "/_sim/push",
                json!({"repository": a.repo, "branch": a.branch}),
            )
            .await?;
            println!("{v}");
            Ok(())
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let webhook_secret = std::env::var(&a.webhook_secret_env).unwrap_or_default();
    if a.webhook_url.is_some() && webhook_secret.is_empty() {
        bail!(
            "--webhook-url needs a webhook secret in ${}",
            a.webhook_secret_env
        );
    }
    let token = std::env::var(&a.token_env).unwrap_or_else(|_| "sim-token".into());
    let app = match (a.app_id, a.installation_id, &a.app_public_key) {
        (Some(app_id), Some(installation_id), Some(path)) => Some(SimApp {
            app_id,
            client_id: None,
            installation_id,
            public_key_pem: std::fs::read_to_string(path)
                .with_context(|| format!("reading --app-public-key {}", path.display()))?,
        }),
        _ => None,
    };
    let config = SimConfig {
        listen: a.listen,
        webhook_url: a.webhook_url,
        webhook_secret,
        tokens: vec![token],
        app,
        rate_limit: a.rate_limit,
        owners: a.owner,
        runner_url: a.runner_url,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await?;
    println!("GitHub simulator listening on {}", sim.url());
    if a.demo {
        for spec in demo_job_mix() {
            sim.enqueue_job(spec)?;
        }
    }
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn enqueue(a: EnqueueArgs) -> anyhow::Result<()> {
    let jobs: Vec<JobSpec> = if a.demo {
        demo_job_mix()
    } else {
        let repo = a.repo.context("--repo is required")?;
        (0..a.count)
            .map(|_| JobSpec {
                repository: repo.clone(),
                labels: a.labels.clone(),
                duration: a.duration,
                conclusion: a.conclusion.clone(),
                workflow_name: a.workflow.clone(),
                job_name: a.job_name.clone(),
            })
            .collect()
    };
    let v = post(&a.sim_url, "/_sim/jobs", json!({"jobs": jobs})).await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

async fn post(sim_url: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let url = format!("{}{path}", sim_url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url} answered {status}: {v}");
    }
    Ok(v)
}
