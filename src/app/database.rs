//! The daemon's database: opened by URL scheme, held while serving (or waited for, as a
//! standby), migrated, and kept up by a housekeeping task.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::telemetry::repeats::{self, Repeats};

/// Opens the configured database and applies migrations. The scheme picks the backend:
/// `sqlite:` or `postgres:`/`postgresql:`.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store = connect_store(url).await?;
    migrate_store(store.as_ref(), url).await?;
    Ok(store)
}

/// Opens the configured database without touching its schema.
pub(super) async fn connect_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let shown = crate::config::redact_url_password(url);
    Ok(if url.starts_with("sqlite:") {
        Arc::new(
            SqliteStore::connect(url)
                .await
                .with_context(|| format!("cannot open database {shown}"))?,
        )
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Arc::new(
            PostgresStore::connect(url)
                .await
                .with_context(|| format!("cannot connect to database {shown}"))?,
        )
    } else {
        anyhow::bail!("database.url {shown}: expected sqlite://PATH or postgres://…");
    })
}

pub(super) async fn migrate_store(store: &dyn Store, url: &str) -> anyhow::Result<()> {
    store.migrate().await.with_context(|| {
        format!(
            "cannot apply database migrations to {}",
            crate::config::redact_url_password(url)
        )
    })
}

/// How often a standby tries to take the database over.
const STANDBY_RETRY: Duration = Duration::from_secs(3);

/// Makes this daemon the one serving from the database. With `database.standby`, waits while
/// another one does; false when `shutdown` came first.
pub(super) async fn take_database(
    store: &dyn Store,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut waiting = false;
    loop {
        let locked = if config.database.fleet {
            store.lock_for_fleet(&config.server.instance_id).await
        } else {
            store.lock_for_serving(&config.server.instance_id).await
        };
        match locked {
            Ok(()) => {
                if waiting {
                    tracing::warn!("standby: the database is free; taking over");
                }
                return Ok(true);
            }
            Err(StoreError::InUse(holder)) if config.database.standby => {
                if !waiting {
                    tracing::warn!(%holder, "standby: another daemon serves from the database; waiting to take over");
                    waiting = true;
                }
                // Under systemd: not ready yet, and not a start that hangs either.
                let extend = (STANDBY_RETRY * 3).as_micros() as u32;
                crate::lifecycle::notify(&[
                    sd_notify::NotifyState::Status(
                        "standby: another daemon serves from the database",
                    ),
                    sd_notify::NotifyState::ExtendTimeoutUsec(extend),
                ]);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(STANDBY_RETRY) => {}
                }
            }
            Err(error) => return Err(anyhow::Error::new(error).context("cannot start")),
        }
    }
}

/// How often the store does its housekeeping (WAL checkpoints). Often, so that each checkpoint
/// is small: its fsync of the database file delays the WAL fsyncs that acknowledgements wait
/// on by about its size. Measured at a steady 1,000 deliveries/s over 30 s (ingest bench), p99
/// of the acknowledgements in back-to-back runs: 3.1–4.1 ms every 100 ms, 10.8 ms every 50 ms
/// (more fsyncs), 49 ms every 250 ms (larger ones); docs/performance.md has the spread over more
/// runs.
const STORE_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(100);

/// Runs the store's housekeeping until `shutdown`; stops the daemon (`stop_daemon`) if the
/// database turns out to be served by another daemon meanwhile.
pub(super) async fn maintain_store(
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    stop_daemon: CancellationToken,
) {
    let mut tick = tokio::time::interval(STORE_MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            _ = tick.tick() => store.maintain().await,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => {}
            Err(StoreError::InUse(holder)) => {
                // Two daemons on one database would both launch a runner for every job.
                tracing::error!(%holder, "lost the database to another daemon; stopping");
                stop_daemon.cancel();
                return;
            }
            Err(error) => {
                // Ten times a second in a fault (a full disk): one line per window instead.
                static REPEATS: Repeats = Repeats::new(repeats::WINDOW);
                if let Some(held) = REPEATS.admit() {
                    tracing::warn!(%error, "database maintenance failed{held}");
                }
            }
        }
    }
}
