//! The daemon's life under a service manager: signals, systemd notifications, reload.
//!
//! - **Start**: `READY=1` is sent once migrations ran, the listeners serve and the Docker engine
//!   answered (or [`DOCKER_READY_WAIT`] passed: webhooks must be taken even while Docker is down,
//!   since GitHub never retries a failed delivery; launches then fail and are retried).
//! - **Watchdog**: with `WatchdogSec=`, `WATCHDOG=1` is sent every half period while the
//!   listener serves `/healthz` to a loopback probe, the scheduler takes a command and the
//!   database answers, so a wedged daemon is restarted by systemd.
//! - **SIGTERM / SIGINT**: `STOPPING=1`, then [`crate::app::run`]'s ordered shutdown.
//! - **SIGHUP**: `RELOADING=1`, the configuration file is read again and applied through
//!   [`crate::app::App::reload`]; a configuration that does not load or validate is refused with
//!   the reason logged, and the running one is kept. `READY=1` follows either way.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) the notifications are no-ops.

use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::config::Config;
use crate::metrics;

/// Keys read only at start: a reload keeps their running value and warns.
pub const RESTART_ONLY_KEYS: &[&str] = &[
    "server.listen",
    "server.metrics_listen",
    "server.instance_id",
    "server.header_timeout",
    "server.body_budget",
    "server.max_connections",
    "database.url",
    "database.fleet",
    "docker.host",
];

/// How long start-up waits for the Docker engine before declaring itself ready anyway.
pub const DOCKER_READY_WAIT: Duration = Duration::from_secs(30);
/// Pause between Docker pings while waiting for the engine.
const DOCKER_RETRY: Duration = Duration::from_secs(1);

/// Copies the restart-only values of `running` into `new`; returns the keys that differed.
pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if new.server.listen != running.server.listen {
        new.server.listen = running.server.listen;
        kept.push("server.listen");
    }
    if new.server.metrics_listen != running.server.metrics_listen {
        new.server.metrics_listen = running.server.metrics_listen;
        kept.push("server.metrics_listen");
    }
    if new.server.instance_id != running.server.instance_id {
        // Containers are labelled with it: changing it live would orphan every runner.
        new.server.instance_id = running.server.instance_id.clone();
        kept.push("server.instance_id");
    }
    // The listener's limits are set when it starts serving.
    if new.server.header_timeout != running.server.header_timeout {
        new.server.header_timeout = running.server.header_timeout;
        kept.push("server.header_timeout");
    }
    if new.server.body_budget != running.server.body_budget {
        new.server.body_budget = running.server.body_budget.clone();
        kept.push("server.body_budget");
    }
    if new.server.max_connections != running.server.max_connections {
        new.server.max_connections = running.server.max_connections;
        kept.push("server.max_connections");
    }
    if new.database.url != running.database.url {
        new.database.url = running.database.url.clone();
        kept.push("database.url");
    }
    if new.database.fleet != running.database.fleet {
        // Joining or leaving a fleet changes the database lock the daemon holds.
        new.database.fleet = running.database.fleet;
        kept.push("database.fleet");
    }
    if new.docker.host != running.docker.host {
        new.docker.host = running.docker.host.clone();
        kept.push("docker.host");
    }
    kept
}

/// Where the configuration comes from, so SIGHUP can read it again the same way.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// `--config`; `None` means the default path, which may be absent.
    pub path: Option<PathBuf>,
    /// `--listen`, which overrides the file at start and on every reload.
    pub listen: Option<std::net::SocketAddr>,
}

impl ConfigSource {
    /// Reads, overrides and validates the configuration.
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        let explicit = self.path.is_some();
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
        let mut config = Config::load(&path, explicit)?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        Ok(config)
    }
}

/// Sends a systemd notification; a failure is logged, never fatal (the daemon works without).
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Handles signals and systemd notifications until shutdown starts. `ready` yields the app once
/// it serves. Signal handlers are installed before anything else, so an early SIGHUP does not
/// kill the process (its default action) and an early SIGTERM still shuts down in order.
pub async fn supervise(
    source: ConfigSource,
    shutdown: CancellationToken,
    ready: oneshot::Receiver<AppState>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut ready = Some(ready);
    let mut app: Option<AppState> = None;
    loop {
        tokio::select! {
            state = async { ready.as_mut().expect("guarded").await }, if ready.is_some() => {
                ready = None;
                // `Err`: the app stopped before it was ready; the run's error tells why.
                let Ok(state) = state else { continue };
                // Its own task: signals must be handled while Docker is awaited.
                tokio::spawn(announce_ready(state.clone(), shutdown.clone()));
                app = Some(state);
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM received: shutting down");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT received: shutting down");
                break;
            }
            _ = hangup.recv() => match &app {
                Some(state) => reload(&source, state),
                None => tracing::warn!("SIGHUP ignored: still starting"),
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    shutdown.cancel();
    Ok(())
}

/// Waits (bounded) for Docker, then tells systemd the daemon is ready and starts the watchdog.
async fn announce_ready(state: AppState, shutdown: CancellationToken) {
    let host = state.config().docker.host.clone();
    let docker_ok = tokio::select! {
        ok = wait_for_docker(&host) => ok,
        _ = shutdown.cancelled() => return,
    };
    if !docker_ok {
        tracing::warn!(
            docker.host = %host,
            "Docker engine not answering after {DOCKER_READY_WAIT:?}; ready anyway (webhooks are \
             accepted, runner launches fail until it answers)"
        );
    }
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    tracing::info!("ready");
    spawn_watchdog(state, shutdown);
}

/// True once the engine answers a ping, false after [`DOCKER_READY_WAIT`].
async fn wait_for_docker(host: &str) -> bool {
    use crate::docker::{BollardRuntime, ContainerRuntime};
    let attempt = async {
        loop {
            match BollardRuntime::connect(host).await {
                Ok(runtime) if runtime.ping().await.is_ok() => return,
                Ok(_) => tracing::debug!("Docker ping failed; retrying"),
                Err(error) => tracing::debug!(%error, "Docker not reachable yet; retrying"),
            }
            tokio::time::sleep(DOCKER_RETRY).await;
        }
    };
    tokio::time::timeout(DOCKER_READY_WAIT, attempt)
        .await
        .is_ok()
}

/// Feeds systemd's watchdog at half its period while the listener serves and the database
/// answers in time.
fn spawn_watchdog(state: AppState, shutdown: CancellationToken) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec) / 2;
    tracing::info!(?period, "feeding the systemd watchdog");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            // A failed task cancels `shutdown`; both may be ready when the tick fires.
            if shutdown.is_cancelled() {
                return;
            }
            // A daemon whose database hangs cannot take deliveries: let systemd restart it.
            // A daemon whose listener no longer serves takes no deliveries either, however
            // well its database answers: the probe goes through the listener as GitHub would.
            if let Err(error) = crate::http::serve::probe::probe(state.local_addr, period / 2).await
            {
                tracing::warn!(%error, "watchdog: the listener does not serve /healthz");
                continue;
            }
            // Deliveries acknowledged while the scheduler is stuck are never processed.
            if !state.scheduler.answers(period / 2).await {
                tracing::warn!("watchdog: the scheduler does not answer");
                continue;
            }
            match tokio::time::timeout(period / 2, state.store.ping()).await {
                Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
                Ok(Err(error)) => tracing::warn!(%error, "watchdog: database does not answer"),
                Err(_) => tracing::warn!("watchdog: database ping timed out"),
            }
        }
    });
}

/// Re-reads the configuration and applies it, or keeps the running one and says why.
fn reload(source: &ConfigSource, state: &AppState) {
    let mut states = vec![NotifyState::Reloading];
    // systemd ≥ 253 (Type=notify-reload) matches RELOADING=1 to the reload by this timestamp.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    let result = source
        .load()
        .map_err(|e| e.to_string())
        .and_then(|config| state.reload(config));
    match result {
        Ok(()) => {
            tracing::info!("configuration reloaded");
            metrics_reload(true);
            notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        }
        Err(message) => {
            tracing::error!(error = %message, "configuration reload refused; keeping the running configuration");
            metrics_reload(false);
            notify(&[
                NotifyState::Ready,
                NotifyState::Status("serving; last reload refused, see the log"),
            ]);
        }
    }
}

fn metrics_reload(success: bool) {
    let result = if success { "success" } else { "failure" };
    ::metrics::counter!(metrics::CONFIG_RELOADS_TOTAL, "result" => result).increment(1);
    ::metrics::gauge!(metrics::CONFIG_LAST_RELOAD_SUCCESSFUL).set(if success { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_with_env(
            text,
            std::path::Path::new("t.toml"),
            &[("GITHUB_WEBHOOK_SECRET".into(), "s".into())],
        )
        .unwrap()
    }

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let running = config("[server]\nlisten = \"127.0.0.1:3000\"\n");
        let mut new = config(
            "[server]\nlisten = \"0.0.0.0:4000\"\ninstance_id = \"other\"\n\
             [database]\nurl = \"sqlite://other.db\"\n[docker]\nhost = \"tcp://x:2375\"\n\
             [limits]\nmax_runners = 3\n",
        );
        let kept = keep_restart_only(&running, &mut new);
        assert_eq!(
            kept,
            [
                "server.listen",
                "server.instance_id",
                "database.url",
                "docker.host"
            ]
        );
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.database.url, running.database.url);
        assert_eq!(new.limits.max_runners, 3, "reloadable keys change");
        assert!(kept.iter().all(|k| RESTART_ONLY_KEYS.contains(k)));
    }
}
