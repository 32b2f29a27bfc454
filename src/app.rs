//! The long-lived handles, the shared HTTP state, and `run`: the daemon from listener to exit.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::events::{EventBus, Retention};
use crate::scheduler::Processor;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::webhook::ingest::IngestQueue;

/// How long in-flight requests get to finish once shutdown starts.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long background tasks get to flush once HTTP is closed.
const TASK_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Everything a request handler may need, behind one `Arc`.
pub struct App {
    /// The live configuration; replaced whole on reload, never held across `.await`.
    config: RwLock<Arc<Config>>,
    pub store: Arc<dyn Store>,
    pub ingest: IngestQueue,
    pub bus: EventBus,
    pub metrics: PrometheusHandle,
    /// Cancelled when the daemon starts shutting down: the webhook answers 503 from then on.
    pub shutdown: CancellationToken,
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
}

/// The process-wide Prometheus recorder (installed once, even when tests start several apps).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("non-empty buckets")
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// Opens the configured database and applies migrations.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url).await.with_context(|| {
            format!(
                "cannot open database {}",
                crate::config::redact_url_password(url)
            )
        })?)
    } else {
        anyhow::bail!("database.url: only sqlite:// is supported by this build so far");
    };
    store
        .migrate()
        .await
        .context("cannot apply database migrations")?;
    Ok(store)
}

/// Runs the daemon on `listener` until `shutdown` is cancelled, then stops in order:
/// stop intake (503), close WebSockets → finish in-flight requests → flush the delivery log
/// writer → stop the processor → flush the live event log.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = open_store(&config.database.url).await?;
    let tracker = TaskTracker::new();
    // Background work stops only after HTTP has drained, so acknowledged writes complete.
    let background = CancellationToken::new();
    let stored = Arc::new(Notify::new());
    let ingest = IngestQueue::start(store.clone(), stored.clone(), background.clone(), &tracker);
    let (bus, live_log) = EventBus::start(store.clone(), Retention::default())
        .await
        .context("cannot start the live event log")?;
    let processor = Processor::new(store.clone(), &config, bus.clone());
    tracker.spawn(processor.run(stored, background.clone()));

    let state = AppState(Arc::new(App {
        config: RwLock::new(Arc::new(config)),
        store,
        ingest,
        bus,
        metrics: metrics_handle(),
        shutdown: shutdown.clone(),
    }));
    let address = listener.local_addr()?;
    tracing::info!(%address, "runnerhub listening");
    let server = axum::serve(listener, crate::http::router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    tracing::info!("shutting down: webhook intake closed");
    match tokio::time::timeout(HTTP_DRAIN_DEADLINE, server).await {
        Ok(result) => result.context("HTTP server task")?.context("HTTP server")?,
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
    // Last: every producer of live events has stopped, so the log gets all of them.
    if tokio::time::timeout(TASK_DRAIN_DEADLINE, live_log.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the live event log did not flush in time");
    }
    tracing::info!("runnerhub stopped");
    Ok(())
}
