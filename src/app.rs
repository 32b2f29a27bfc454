//! The long-lived handles, the shared HTTP state, and `run`: the daemon from listener to exit.

mod database;
pub mod fd_limit;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::docker::LazyRuntime;
use crate::events::{EventBus, Retention};
use crate::github::{GithubApi, GithubClient, SharedGithub};
use crate::scheduler::{SchedulerDeps, SchedulerHandle};
use crate::store::Store;
use crate::supervisor::{InjectedFaults, Supervisor};
use crate::webhook::ingest::IngestQueue;
pub use database::open_store;
use database::{connect_store, maintain_store, migrate_store, take_database};

/// How long in-flight requests get to finish once shutdown starts.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// Connections the dedicated metrics listener holds at once (`server.metrics_listen`).
const METRICS_MAX_CONNECTIONS: usize = 32;
/// How long background tasks get to flush once HTTP is closed.
const TASK_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Everything a request handler may need, behind one `Arc`.
pub struct App {
    /// The live configuration; replaced whole on reload, never held across `.await`.
    config: RwLock<Arc<Config>>,
    /// Publishes each reloaded configuration to the tasks that keep a copy (processor, scheduler).
    config_updates: watch::Sender<Arc<Config>>,
    /// The one GitHub client, swapped on reload.
    pub github: Arc<SharedGithub>,
    pub store: Arc<dyn Store>,
    pub ingest: IngestQueue,
    pub scheduler: SchedulerHandle,
    pub bus: EventBus,
    pub metrics: PrometheusHandle,
    /// Cancelled when the daemon starts shutting down: the webhook and `/readyz` answer 503 from
    /// then on, while the listener stays open for `server.shutdown_grace`.
    pub shutdown: CancellationToken,
    /// Hooks named by received deliveries, for redelivery.
    pub hook_sightings: Arc<crate::hooks::sightings::HookSightings>,
    /// The address the main listener is bound to (the browser checks' "listen address", the
    /// watchdog's self-probe).
    pub local_addr: std::net::SocketAddr,
    /// Bytes of request bodies in memory at once (`server.body_budget`), shared by all requests.
    pub body_budget: crate::http::body::BodyBudget,
    /// The main listener's open connections (bounded; the watchdog's probe goes through them).
    pub connections: Arc<crate::http::serve::connections::Connections>,
    /// Alone, or this instance's place in a fleet (`database.fleet`).
    pub fleet: crate::fleet::Fleet,
    /// When this process started serving (`GET /api/instances`).
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// Optional parts of [`run_with`] that only the binary (or a test) provides.
#[derive(Default)]
pub struct RunOptions {
    /// A bound listener for `/metrics` alone. When `None` and `server.metrics_listen` is set,
    /// [`run_with`] binds that address itself.
    pub metrics_listener: Option<TcpListener>,
    /// Called once the database is migrated and the listeners serve (sd_notify READY, reload).
    pub on_ready: Option<Box<dyn FnOnce(AppState) + Send>>,
    /// Replaces the GitHub client built from the config (benchmarks isolate runnerhub's own
    /// latency with a zero-latency stand-in).
    pub github: Option<Arc<dyn GithubApi>>,
    /// Replaces the Docker engine connection (same purpose).
    pub docker: Option<Arc<dyn crate::docker::ContainerRuntime>>,
    /// Faults to inject, so that tests can see a failing task stop the daemon.
    pub faults: InjectedFaults,
}

#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock poisoned").clone()
    }

    pub fn webhook_secrets(&self) -> Vec<Secret> {
        self.config().github.webhook_secrets.clone()
    }

    pub fn allow_unsigned(&self) -> bool {
        let config = self.config();
        config.github.allow_unsigned && config.github.webhook_secrets.is_empty()
    }

    pub fn api_tokens(&self) -> Vec<Secret> {
        self.config().server.api_tokens.clone()
    }

    /// Every configuration the daemon switches to from now on (the current one first).
    pub fn subscribe_config(&self) -> watch::Receiver<Arc<Config>> {
        self.config_updates.subscribe()
    }

    /// Validates `new` and makes it the live configuration. Keys that only take effect at start
    /// (see [`crate::lifecycle::RESTART_ONLY_KEYS`]) keep their running value, with a warning
    /// naming each. On error nothing changes.
    pub fn reload(&self, mut new: Config) -> Result<(), String> {
        new.validate().map_err(|e| e.to_string())?;
        let current = self.config();
        for key in crate::lifecycle::keep_restart_only(&current, &mut new) {
            tracing::warn!(
                key,
                "changing `{key}` needs a restart; keeping the running value"
            );
        }
        crate::metrics::describe(&new);
        self.github.reload(&new);
        let new = Arc::new(new);
        *self.config.write().expect("config lock poisoned") = new.clone();
        self.config_updates.send_replace(new);
        Ok(())
    }
}

/// The GitHub client. Without pools no runner is ever launched, so credentials are optional
/// then, and a client that refuses every call stands in.
fn github_client(config: &Config) -> anyhow::Result<Arc<dyn GithubApi>> {
    match GithubClient::from_config(&config.github) {
        Ok(client) => Ok(Arc::new(client)),
        Err(_) if config.pools.is_empty() => Ok(Arc::new(crate::github::NoCredentials)),
        Err(error) => {
            Err(error.context("pools are configured, so runnerhub needs GitHub credentials"))
        }
    }
}

/// With `database.fleet`: this instance's place in the fleet, after its first heartbeat.
async fn join_fleet(
    store: &Arc<dyn Store>,
    config: &Config,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<crate::fleet::Fleet> {
    if !config.database.fleet {
        return Ok(crate::fleet::Fleet::alone());
    }
    let Some(fleet_store) = store.clone().fleet_store() else {
        anyhow::bail!("database.fleet: this database cannot hold a fleet (PostgreSQL only)");
    };
    let fleet = crate::fleet::Fleet::member(
        fleet_store,
        &config.server.instance_id,
        config.database.instance_timeout,
    );
    crate::fleet::membership::join(&fleet, config, started_at)
        .await
        .context("cannot join the fleet")?;
    Ok(fleet)
}

/// Runs the daemon on `listener` until `shutdown` is cancelled, then stops in order:
/// stop intake (503) → keep answering for `server.shutdown_grace` → close the listener and finish
/// in-flight requests, close WebSockets → flush the delivery log writer → stop the scheduler →
/// flush the live event log. Runner containers are left running: the next start reconciles them.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

/// [`run`], with a metrics listener and a readiness callback.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut options: RunOptions,
) -> anyhow::Result<()> {
    let metrics_listener = match (options.metrics_listener, config.server.metrics_listen) {
        (Some(listener), _) => Some(listener),
        (None, Some(address)) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (server.metrics_listen)"))?,
        ),
        (None, None) => None,
    };
    // The recorder first: metrics recorded before it exists are lost.
    let metrics = crate::metrics::handle();
    crate::metrics::describe(&config);
    crate::metrics::init_process_gauges();
    // The lock first: a second daemon (say, a newer version started by mistake beside the
    // running one) must not migrate the schema under the one that serves.
    let store = connect_store(&config.database.url).await?;
    if !take_database(store.as_ref(), &config, &shutdown).await? {
        return Ok(()); // stopped while standing by
    }
    migrate_store(store.as_ref(), &config.database.url).await?;
    let started_at = chrono::Utc::now();
    let fleet = join_fleet(&store, &config, started_at).await?;
    let tracker = TaskTracker::new();
    // Background work stops only after HTTP has drained, so acknowledged writes complete.
    let background = CancellationToken::new();
    let supervisor = Supervisor::new(tracker.clone(), background.clone(), shutdown.clone());
    let stored = Arc::new(Notify::new());
    let ingest = IngestQueue::start(
        store.clone(),
        stored.clone(),
        background.clone(),
        &supervisor,
    );
    let (bus, live_log) = match fleet.as_member() {
        Some(member) => {
            EventBus::start_in_fleet(
                store.clone(),
                member.store.clone(),
                Retention::default(),
                &supervisor,
            )
            .await
        }
        None => EventBus::start(store.clone(), Retention::default(), &supervisor).await,
    }
    .context("cannot start the live event log")?;
    let config = Arc::new(config);
    let (config_updates, _) = watch::channel(config.clone());
    let github = match options.github.take() {
        Some(github) => SharedGithub::injected(github),
        None => SharedGithub::from_config(github_client(&config)?),
    };
    if !config.pools.is_empty() {
        supervisor.spawn(
            "catch-up",
            crate::scheduler::catch_up::run(
                store.clone(),
                github.clone(),
                stored.clone(),
                config_updates.subscribe(),
                fleet.clone(),
                background.clone(),
            ),
        );
    }
    let hook_sightings = Arc::new(crate::hooks::sightings::HookSightings::default());
    supervisor.spawn(
        "redelivery",
        crate::hooks::redelivery::run(
            store.clone(),
            hook_sightings.clone(),
            config_updates.subscribe(),
            fleet.clone(),
            background.clone(),
        ),
    );
    let scheduler = crate::scheduler::start(
        SchedulerDeps {
            store: store.clone(),
            github: github.clone(),
            docker: options
                .docker
                .take()
                .unwrap_or_else(|| Arc::new(LazyRuntime::new(&config.docker.host))),
            bus: bus.clone(),
            fleet: fleet.clone(),
        },
        config_updates.subscribe(),
        stored,
        background.clone(),
        &supervisor,
        options.faults,
    );
    supervisor.spawn(
        "database maintenance",
        maintain_store(store.clone(), background.clone(), shutdown.clone()),
    );
    supervisor.spawn(
        "pool history",
        crate::history::sampler::run(
            store.clone(),
            scheduler.clone(),
            config.server.instance_id.clone(),
            background.clone(),
        ),
    );
    supervisor.spawn(
        "retention",
        crate::retention::run(
            store.clone(),
            config_updates.subscribe(),
            fleet.clone(),
            background.clone(),
        ),
    );
    if fleet.is_fleet() {
        supervisor.spawn(
            "fleet heartbeat",
            crate::fleet::membership::run(
                crate::fleet::membership::Membership {
                    fleet: fleet.clone(),
                    started_at,
                    config: config_updates.subscribe(),
                    github: github.clone(),
                    bus: bus.clone(),
                },
                background.clone(),
            ),
        );
    }

    let local_addr = listener.local_addr()?;
    let body_budget = crate::http::body::BodyBudget::new(config.server.body_budget_bytes());
    let config_max_connections = config.server.max_connections;
    let state = AppState(Arc::new(App {
        config: RwLock::new(config),
        config_updates,
        github,
        store,
        ingest,
        scheduler,
        bus,
        metrics,
        shutdown: shutdown.clone(),
        hook_sightings,
        local_addr,
        body_budget,
        connections: crate::http::serve::connections::Connections::new(fd_limit::connection_limit(
            config_max_connections,
        )),
        fleet,
        started_at,
    }));
    let address = listener.local_addr()?;
    tracing::info!(%address, "runnerhub listening");
    // Closing the listener is its own token: it happens `shutdown_grace` after intake stops.
    let close = CancellationToken::new();
    let dedicated_metrics = metrics_listener.is_some();
    let limits = crate::http::serve::Limits {
        header_timeout: state.config().server.header_timeout,
    };
    tracing::info!(
        max_connections = state.connections.max(),
        header_timeout = ?limits.header_timeout,
        "connection limits"
    );
    let server = crate::http::serve::serve(
        listener,
        crate::http::router(state.clone(), !dedicated_metrics),
        limits,
        close.clone(),
        state.connections.clone(),
    );
    let server = tokio::spawn(server);
    if let Some(listener) = metrics_listener {
        tracing::info!(address = %listener.local_addr()?, "metrics listening");
        // The same timeouts as the main listener, and a small bound of its own: scrapers
        // are few, and its descriptors come out of the reserve.
        let metrics = crate::http::serve::serve(
            listener,
            crate::http::metrics_router(state.clone()),
            limits,
            close.clone(),
            crate::http::serve::connections::Connections::new(METRICS_MAX_CONNECTIONS),
        );
        supervisor.spawn("metrics listener", metrics);
    }
    if let Some(on_ready) = options.on_ready {
        on_ready(state.clone());
    }
    shutdown.cancelled().await;
    if supervisor.failure().is_none() {
        let grace = state.config().server.shutdown_grace;
        tracing::info!(?grace, "shutting down: webhook intake closed (503)");
        tokio::time::sleep(grace).await;
    } else {
        // The grace period lets a load balancer see /readyz fail first; a broken daemon
        // should be restarted as soon as its acknowledged work is flushed.
        tracing::info!("shutting down after a task failure: webhook intake closed (503)");
    }
    close.cancel();
    match tokio::time::timeout(HTTP_DRAIN_DEADLINE, server).await {
        Ok(result) => result.context("HTTP server task")?,
        Err(_) => tracing::warn!("in-flight requests did not finish in time; closing anyway"),
    }
    background.cancel();
    tracker.close();
    if tokio::time::timeout(TASK_DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop in time");
    }
    // Last: every producer of live events (scheduler, processor) has stopped.
    if tokio::time::timeout(TASK_DRAIN_DEADLINE, live_log.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the live event log did not flush in time");
    }
    // Explicitly: a task that outlived the drain deadline may still hold the store.
    state.0.store.unlock_serving().await;
    tracing::info!("runnerhub stopped");
    match supervisor.failure() {
        Some(failure) => Err(anyhow::anyhow!("{failure}")),
        None => Ok(()),
    }
}
