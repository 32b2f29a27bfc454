//! A GitHub simulator for tests and demos: the REST subset runnerhub uses (runners, JIT config,
//! runs, jobs, hook deliveries, App installation tokens), signed webhook deliveries driven by a job
//! lifecycle like GitHub's, fault switches, and a small runner protocol spoken by the test runner
//! image (`runner-images/test-runner`).
//!
//! # Layout
//! - [`state`]: runners, runs, jobs, the delivery log and the job-assignment rules (pure, one mutex).
//! - `templates`: payloads built from GitHub's own examples, so keys match at every level.
//! - `rest`: the GitHub REST endpoints, token/JWT auth, rate-limit headers, REST faults.
//! - `control`: the `/_sim/` control API (JSON) and the runner protocol under `/_sim/runner/`.
//! - `webhook`: the delivery sender (HMAC signatures, drop/duplicate/reorder/delay faults).
//! - [`faults`], `jwt`, [`jit`] (the JIT config document), [`runner_client`] (an in-process runner),
//!   [`cli`] (`runnerhub sim serve|enqueue`).
//!
//! Shared state is a `std::sync::Mutex` never held across `.await`: every change happens in one
//! short critical section that also builds the webhooks it causes, which go to one sender task in
//! order. Runners long-poll; a `Notify` wakes them when jobs are assigned.

pub mod cli;
mod control;
pub mod faults;
mod hooks;
pub mod jit;
mod jwt;
mod rest;
pub mod runner_client;
mod spec;
pub mod state;
mod templates;
mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use faults::{FaultRule, Faults};
pub use hooks::SimHook;
pub use jwt::JwtError;
pub use state::{DeliveryRecord, Job, JobSpec, JobStatus, Run, Runner, RunnerStatus, Scope};

use state::{JobRunner, PendingDelivery, SimState, StateError};

/// A GitHub App whose JWTs the simulator accepts.
#[derive(Clone)]
pub struct SimApp {
    pub app_id: u64,
    /// Also accepted as `iss` (GitHub allows the client id).
    pub client_id: Option<String>,
    pub installation_id: u64,
    /// The app's RSA public key (PEM, SPKI or PKCS#1), to verify RS256 JWTs.
    pub public_key_pem: String,
}

impl std::fmt::Debug for SimApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish()
    }
}

/// How to run a simulator.
#[derive(Clone)]
pub struct SimConfig {
    /// Where to listen; default `127.0.0.1:0` (any free port, see [`SimHandle::url`]).
    pub listen: SocketAddr,
    /// Where to POST webhooks; `None` records deliveries without sending them.
    pub webhook_url: Option<String>,
    /// HMAC key of `X-Hub-Signature-256`.
    pub webhook_secret: String,
    /// Tokens accepted as `Authorization: Bearer|token` (PATs); installation tokens are added when issued.
    pub tokens: Vec<String>,
    /// Tokens accepted everywhere but refused (403) on hook administration, like a token
    /// without admin rights on the repository.
    pub read_only_tokens: Vec<String>,
    /// GitHub App accepted on `/app/*`; `None` answers 401 there.
    pub app: Option<SimApp>,
    /// Primary rate-limit budget per hour (`x-ratelimit-limit`); default 5000.
    pub rate_limit: u32,
    /// Owners (users/orgs) the simulator knows; REST calls for others answer 404. Empty: any owner.
    pub owners: Vec<String>,
    /// `X-GitHub-Hook-ID` and the hook id of the deliveries API; default 1.
    pub hook_id: u64,
    /// Base URL written into JIT configs for runners; default the listen URL. Set it when runners
    /// reach the simulator through another address (e.g. the Docker bridge gateway).
    pub runner_url: Option<String>,
    /// Delay before the simulated GitHub-hosted runner picks up a job without `self-hosted`.
    pub hosted_pickup_delay: Duration,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"<redacted>")
            .field("tokens", &format!("<{} redacted>", self.tokens.len()))
            .field("app", &self.app)
            .field("rate_limit", &self.rate_limit)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            webhook_secret: "sim-webhook-secret".into(),
            tokens: vec!["sim-token".into()],
            read_only_tokens: Vec::new(),
            app: None,
            rate_limit: 5000,
            owners: Vec::new(),
            hook_id: 1,
            runner_url: None,
            hosted_pickup_delay: Duration::from_millis(500),
        }
    }
}

/// The primary rate limit: a budget per hour window.
#[derive(Debug)]
struct RateLimit {
    limit: u32,
    used: u32,
    reset_at: i64,
}

/// What the server, the sender and the handle share.
struct Shared {
    config: SimConfig,
    base_url: String,
    state: Mutex<SimState>,
    faults: Mutex<faults::FaultState>,
    rate: Mutex<RateLimit>,
    jwt: Option<jwt::AppVerifier>,
    /// Woken whenever jobs are assigned or runners change, for long-polling runners.
    runner_wakeup: Notify,
    deliveries: mpsc::UnboundedSender<webhook::Outgoing>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, faults::FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the deliveries a state change caused, one to each hook that gets it, and wakes
    /// waiting runners.
    fn emit(&self, deliveries: Vec<PendingDelivery>) {
        for d in deliveries {
            for target in hooks::targets(self, d.event, d.repository.as_deref()) {
                let _ = self.deliveries.send(webhook::Outgoing::new(&d, target));
            }
        }
        self.runner_wakeup.notify_waiters();
    }

    fn enqueue_job(self: &Arc<Self>, spec: JobSpec) -> Result<EnqueuedJob, StateError> {
        let hosted = !spec.is_self_hosted();
        let (duration, conclusion) = (spec.duration, spec.conclusion.clone());
        let (run_id, job_id, out) = self.state().enqueue_job(spec)?;
        self.emit(out);
        if hosted {
            self.spawn_hosted_runner(job_id, duration, conclusion);
        }
        Ok(EnqueuedJob { run_id, job_id })
    }

    /// GitHub runs jobs without `self-hosted` on its own runners: simulate one.
    fn spawn_hosted_runner(self: &Arc<Self>, job_id: u64, duration: Duration, conclusion: String) {
        let shared = Arc::clone(self);
        let delay = self.config.hosted_pickup_delay;
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let runner = JobRunner {
                id: 1_000_000 + job_id % 1_000_000,
                name: format!("GitHub Actions {}", job_id % 1000),
                group_id: state::HOSTED_RUNNER_GROUP_ID,
                group_name: state::HOSTED_RUNNER_GROUP_NAME.into(),
            };
            let out = shared.state().start_job(job_id, runner);
            if out.is_empty() {
                return; // cancelled while queued
            }
            shared.emit(out);
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(duration) => {}
            }
            let out = shared
                .state()
                .complete_job(job_id, &conclusion)
                .unwrap_or_default();
            shared.emit(out);
        });
    }
}

/// Ids of a job created by [`SimHandle::enqueue_job`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnqueuedJob {
    pub run_id: u64,
    pub job_id: u64,
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `config.listen` and serves until [`SimHandle::shutdown`].
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the simulator to {}", config.listen))?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let jwt = match &config.app {
            Some(app) => Some(jwt::AppVerifier::new(
                app.app_id,
                app.client_id.clone(),
                &app.public_key_pem,
            )?),
            None => None,
        };
        let installation_id = config.app.as_ref().map_or(1, |a| a.installation_id);
        let state = SimState::with_owners(installation_id, &config.owners);
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            rate: Mutex::new(RateLimit {
                limit: config.rate_limit,
                used: 0,
                reset_at: chrono::Utc::now().timestamp() + 3600,
            }),
            config,
            base_url,
            state: Mutex::new(state),
            faults: Mutex::new(faults::FaultState::default()),
            jwt,
            runner_wakeup: Notify::new(),
            deliveries: tx,
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        });
        tasks.spawn(webhook::run_sender(Arc::clone(&shared), rx));
        let app = rest::router(Arc::clone(&shared)).merge(control::router(Arc::clone(&shared)));
        let shutdown = cancel.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator HTTP server stopped");
            }
        });
        tracing::info!(%addr, "GitHub simulator listening");
        Ok(SimHandle { shared, addr })
    }
}

/// A running simulator.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl SimHandle {
    /// Base URL, to use as runnerhub's `github.api_url`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a run with one queued job (webhooks `workflow_run.requested`, `workflow_job.queued`).
    pub fn enqueue_job(&self, spec: JobSpec) -> anyhow::Result<EnqueuedJob> {
        Ok(self.shared.enqueue_job(spec)?)
    }

    /// Cancels a job: `completed`/`cancelled` (no runner when it was still queued).
    pub fn cancel_job(&self, job_id: u64) -> anyhow::Result<()> {
        let out = self.shared.state().cancel_job(job_id)?;
        self.shared.emit(out);
        Ok(())
    }

    /// Sends a `push` of a new branch.
    pub fn send_push(&self, repository: &str, branch: &str) {
        let d = self.shared.state().push_delivery(repository, branch);
        self.shared.emit(vec![d]);
    }

    /// Sends a `pull_request.opened` from `branch`.
    pub fn send_pull_request(&self, repository: &str, branch: &str) {
        let d = self
            .shared
            .state()
            .pull_request_delivery(repository, branch);
        self.shared.emit(vec![d]);
    }

    /// The installed repository and organization hooks.
    pub fn hooks(&self) -> Vec<hooks::SimHook> {
        self.shared.state().hooks.hooks.values().cloned().collect()
    }

    /// The App's hook URL, if set.
    pub fn app_hook_url(&self) -> Option<String> {
        self.shared.state().hooks.app.url.clone()
    }

    /// The installations that got a token, one entry per token issued.
    pub fn issued_tokens(&self) -> Vec<u64> {
        let mut issued: Vec<u64> = self
            .shared
            .state()
            .token_installations
            .values()
            .copied()
            .collect();
        issued.sort();
        issued
    }

    /// The events the App subscribes to (its settings on GitHub).
    pub fn set_app_events(&self, events: &[&str]) {
        self.shared.state().hooks.app.events = events.iter().map(|e| e.to_string()).collect();
    }

    /// The delivery log, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared.state().deliveries.clone()
    }

    /// Resends a logged delivery with the same GUID (`redelivery: true`).
    pub fn redeliver(&self, delivery_id: u64) -> anyhow::Result<()> {
        webhook::redeliver(&self.shared, delivery_id)
            .ok_or_else(|| anyhow::anyhow!("no delivery {delivery_id}"))
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.shared.state().jobs.values().cloned().collect()
    }

    pub fn job(&self, job_id: u64) -> Option<Job> {
        self.shared.state().jobs.get(&job_id).cloned()
    }

    pub fn runs(&self) -> Vec<Run> {
        self.shared.state().runs.values().cloned().collect()
    }

    /// Registered runners (JIT runners leave the list after their job).
    pub fn runners(&self) -> Vec<Runner> {
        self.shared.state().runners.values().cloned().collect()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults::FaultState::new(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults().faults.clone()
    }

    /// Sets the primary rate-limit budget and its use in the current window.
    pub fn set_rate_limit(&self, limit: u32, used: u32) {
        let mut rate = self.shared.rate.lock().unwrap_or_else(|e| e.into_inner());
        rate.limit = limit;
        rate.used = used;
    }

    /// Stops the server, the sender and the hosted-runner tasks; waits up to 5 s for them.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("simulator tasks did not stop within 5 s");
        }
    }
}

/// A realistic mix of 12 jobs over three repositories: plain Linux builds, production deploys,
/// large builds, GPU jobs, and GitHub-hosted `ubuntu-latest` jobs that no pool should take.
pub fn demo_job_mix() -> Vec<JobSpec> {
    let job =
        |repo: &str, labels: &[&str], secs: u64, workflow: &str, name: &str, conclusion: &str| {
            JobSpec {
                repository: repo.into(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                duration: Duration::from_secs(secs),
                conclusion: conclusion.into(),
                workflow_name: workflow.into(),
                job_name: name.into(),
            }
        };
    let linux = ["self-hosted", "linux", "x64"];
    let prod = ["self-hosted", "linux", "x64", "production"];
    let large = ["self-hosted", "linux", "x64", "large"];
    let gpu = ["self-hosted", "gpu"];
    let hosted = ["ubuntu-latest"];
    vec![
        job("acme/api", &linux, 6, "CI", "test", "success"),
        job("acme/api", &linux, 4, "CI", "lint", "success"),
        job("acme/api", &large, 18, "CI", "integration", "success"),
        job(
            "acme/api",
            &prod,
            8,
            "Deploy",
            "deploy-production",
            "success",
        ),
        job("acme/web", &linux, 5, "CI", "build", "success"),
        job("acme/web", &linux, 9, "CI", "e2e", "failure"),
        job("acme/web", &hosted, 3, "Docs", "docs", "success"),
        job(
            "acme/web",
            &prod,
            7,
            "Deploy",
            "deploy-production",
            "success",
        ),
        job("acme/ml", &gpu, 20, "Train", "train-small", "success"),
        job("acme/ml", &gpu, 12, "Train", "eval", "success"),
        job("acme/ml", &large, 15, "CI", "build-image", "success"),
        job("acme/ml", &hosted, 3, "Lint", "ruff", "success"),
    ]
}
