//! The task that records pool history: at the start of every minute, this instance's runners
//! per pool (the scheduler's counters) and the queue per pool (the database's, which in a fleet
//! is every instance's), one row per pool (see the module above for how instances add up).

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::series;
use crate::scheduler::SchedulerHandle;
use crate::store::{Store, StoreResult};

/// Samples until `shutdown`. A failed sample is logged (once until one succeeds again) and the
/// minute is left without this instance's row: the charts show a gap, nothing else suffers.
pub async fn run(
    store: Arc<dyn Store>,
    scheduler: SchedulerHandle,
    instance: String,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        let now = Utc::now();
        let wait = (series::next_sample_at(now) - now)
            .to_std()
            .unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match sample(store.as_ref(), &scheduler, &instance).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("pool history: sampling works again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "pool history: cannot record this minute's sample; retrying each minute");
            }
            Err(_) => {}
        }
    }
}

/// Records this minute's sample of every pool.
async fn sample(store: &dyn Store, scheduler: &SchedulerHandle, instance: &str) -> StoreResult<()> {
    let minute = series::minute_start(Utc::now());
    // A scheduler that stopped stops the daemon (the supervisor sees to it); nothing to record.
    let Some(pools) = scheduler.pools().await else {
        return Ok(());
    };
    let queued = store.queued_jobs_per_pool().await?;
    store
        .record_pool_samples(instance, minute, &series::samples_of(&pools, &queued))
        .await
}
