//! The current state in one JSON value: what a WebSocket client gets on connect, so that a new
//! dashboard page needs no REST calls.
//!
//! Shape (the `data` of a `snapshot` message):
//!
//! ```text
//! {
//!   "queue":   [Job…],     // queued + waiting jobs in the scheduler's order: aged priority,
//!                          // then oldest (≤ 500); each with wait_reason and wait_detail
//!                          // (DESIGN §13) when a pool serves it
//!   "queue_total": 12,     // all pending jobs, even beyond the 500 listed
//!   "running": [Job…],     // in-progress jobs, newest first (≤ 200)
//!   "finished": [Job…],    // jobs completed in the last hour, latest first (≤ 25)
//!   "runners": [Runner…],  // runners not yet removed (the scheduler's live state)
//!   "pools":   [Pool…],    // configured pools with their counters; in a fleet, every
//!                          // instance's (one entry per pool and instance)
//!   "limits":  {"max_runners": 20},
//!   "scheduling": {"aging_per_minute": 1.0},  // the queue's order: priority + aging × minutes
//!   "stats":   {"window_seconds": 3600, "jobs_completed": 40, "jobs_per_hour": 40.0,
//!               "jobs_failed": 2, "p50_wait_seconds": 3.5 | null, "running": 3,
//!               "queued": 12, "webhooks_failed": 0},
//!   "repositories": ["acme/api", …] | null,  // the filter the snapshot was built for
//!   "instances": [Instance…] | null  // a fleet's instances (`GET /api/instances`), else null
//! }
//! Job    = the `job` event's data: {id, run_id, repository, workflow_name, name, labels, priority,
//!          pool, status, conclusion, runner_name, created_at, started_at, completed_at,
//!          first_seen_at, wait_seconds, duration_seconds, …}
//! Runner = the `runner` event's data: {id, pool, state, container_id, github_runner_name, job_id?,
//!          instance}; in a fleet, every instance's runners
//! Pool   = the `pool` event's data: {name, labels, max_runners, min_idle, idle, busy,
//!          starting, queued, consecutive_failures, instance}; another instance's pool lacks
//!          consecutive_failures (its counters are its runners recorded in the database)
//! ```
//!
//! A `job` event replaces the job with the same `id`; a `runner` event the runner with the same
//! `id`; a `pool` event the pool with the same `name` and `instance` (fields it lacks keep their
//! value); an `instance` event the instance with the same `id`.

use chrono::Utc;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::domain::{Job, JobStatus, queue_rank};
use crate::scheduler::job_json_with_wait;
use crate::scheduler::processor::job_json;
use crate::store::JobFilter;

/// Jobs listed in `queue` at most; `queue_total` counts them all.
const SNAPSHOT_QUEUE_MAX: u32 = 500;
/// In-progress jobs listed at most.
const SNAPSHOT_RUNNING_MAX: u32 = 200;
/// Recently finished jobs listed at most.
const SNAPSHOT_FINISHED_MAX: usize = 25;
/// The window of the headline numbers.
const STATS_WINDOW_SECS: i64 = 3600;
/// Jobs read to compute the headline numbers at most.
const STATS_JOBS_MAX: u32 = 20_000;
/// Conclusions counted as failures in the headline numbers.
const FAILED_CONCLUSIONS: [&str; 3] = ["failure", "timed_out", "startup_failure"];

/// The snapshot of everything (see the module doc for the shape).
pub async fn snapshot(state: &AppState) -> anyhow::Result<Value> {
    snapshot_for(state, &[]).await
}

/// The snapshot restricted to `repositories` (empty: all).
pub async fn snapshot_for(state: &AppState, repositories: &[String]) -> anyhow::Result<Value> {
    let config = state.config();
    let store = &state.store;
    // One repository is filtered in SQL; several are filtered here from the unfiltered rows.
    let one = match repositories {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let wanted = |job: &Job| repositories.is_empty() || repositories.contains(&job.repository);

    let mut queue = store.pending_jobs(one, SNAPSHOT_QUEUE_MAX).await?;
    queue.retain(&wanted);
    // The scheduler's order (aging included), not the stored score alone.
    let aging = config.priority.aging_per_minute;
    queue.sort_by_key(|j| {
        let queued_ms = j.created_at.unwrap_or(j.first_seen_at).timestamp_millis();
        (
            std::cmp::Reverse(queue_rank(j.priority, queued_ms, aging)),
            queued_ms,
            j.id,
        )
    });
    let queue_waits = super::jobs::wait_reasons(state, &queue).await;
    let mut running_jobs = store
        .list_jobs(&JobFilter {
            status: vec![JobStatus::InProgress],
            repository: one.map(str::to_owned),
            limit: SNAPSHOT_RUNNING_MAX,
            offset: 0,
        })
        .await?
        .items;
    running_jobs.retain(&wanted);
    let mut counts = [0i64; 3];
    for (status, count) in [JobStatus::Queued, JobStatus::Waiting, JobStatus::InProgress]
        .into_iter()
        .zip(counts.iter_mut())
    {
        let page = store
            .list_jobs(&JobFilter {
                status: vec![status],
                repository: one.map(str::to_owned),
                limit: 1,
                offset: 0,
            })
            .await?;
        *count = page.total;
    }
    let [queued, waiting, mut running] = counts;
    let mut queue_total = queued + waiting;
    if repositories.len() > 1 {
        // The SQL counts covered every repository; an exact count is not worth a query per
        // repository here, so the listed queue stands in (capped like the list).
        queue_total = queue.len() as i64;
        running = -1;
    }

    let now = Utc::now();
    let since = now - chrono::Duration::seconds(STATS_WINDOW_SECS);
    let mut recent = store.jobs_active_since(since, one, STATS_JOBS_MAX).await?;
    recent.retain(&wanted);
    let completed: Vec<&Job> = recent
        .iter()
        .filter(|j| j.status == JobStatus::Completed && j.completed_at.is_some_and(|t| t >= since))
        .collect();
    let mut finished = completed.clone();
    finished.sort_by_key(|j| std::cmp::Reverse(j.completed_at));
    finished.truncate(SNAPSHOT_FINISHED_MAX);
    let failed = completed
        .iter()
        .filter(|j| {
            j.conclusion
                .as_deref()
                .is_some_and(|c| FAILED_CONCLUSIONS.contains(&c))
        })
        .count();
    let mut waits: Vec<f64> = recent
        .iter()
        .filter(|j| j.started_at.is_some_and(|t| t >= since))
        .filter_map(Job::wait_seconds)
        .collect();
    waits.sort_by(f64::total_cmp);
    let p50_wait = (!waits.is_empty()).then(|| waits[(waits.len() - 1) / 2]);
    let webhooks_failed = store
        .event_statistics(since)
        .await?
        .by_outcome
        .get("failed")
        .copied()
        .unwrap_or(0);

    // Runners and pool counters are the scheduler's live state (it owns them); in a fleet the
    // runners are every instance's, from the database, and so are the other instances' pools.
    let me = &config.server.instance_id;
    let (mut runners, mut pools) = match state.scheduler.snapshot().await {
        Some(live) => (
            live.runners
                .iter()
                .map(|r| crate::scheduler::runner_event(r).data)
                .collect::<Vec<_>>(),
            live.pools
                .iter()
                .map(|p| crate::scheduler::pool_event_data(p, me))
                .collect::<Vec<_>>(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let instances = match state.fleet.as_member() {
        Some(member) => {
            let fleet_runners = store.live_runners().await?;
            let instances = member.store.instances(member.timeout).await?;
            runners = fleet_runners
                .iter()
                .map(|r| crate::scheduler::runner_event(r).data)
                .collect();
            pools = super::fleet_pools::fleet_pools(me, pools, &instances, &fleet_runners, &queue);
            Some(instances)
        }
        None => None,
    };
    let running = (running >= 0).then_some(running);
    Ok(json!({
        "queue": queue
            .iter()
            .map(|job| job_json_with_wait(job, queue_waits.get(&job.id)))
            .collect::<Vec<_>>(),
        "queue_total": queue_total,
        "running": running_jobs.iter().map(job_json).collect::<Vec<_>>(),
        "finished": finished.into_iter().map(job_json).collect::<Vec<_>>(),
        "runners": runners,
        "pools": pools,
        "limits": {"max_runners": config.limits.max_runners},
        "scheduling": {"aging_per_minute": aging},
        "stats": {
            "window_seconds": STATS_WINDOW_SECS,
            "jobs_completed": completed.len(),
            "jobs_per_hour": completed.len() as f64 * 3600.0 / STATS_WINDOW_SECS as f64,
            "jobs_failed": failed,
            "p50_wait_seconds": p50_wait,
            "running": running,
            "queued": queue_total,
            "webhooks_failed": webhooks_failed,
        },
        "repositories": (!repositories.is_empty()).then_some(repositories),
        "instances": instances,
    }))
}
