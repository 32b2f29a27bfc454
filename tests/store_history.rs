//! The `Store` contract of pool history (`crate::history`), on SQLite and on PostgreSQL alike:
//! samples add up across instances without counting the queue twice, a repeated minute
//! replaces, the queue is counted per pool, job waits are read for the percentiles per hour,
//! and old samples are pruned.
//!
//! PostgreSQL comes from `RUNNERHUB_TEST_POSTGRES_URL`, as for `tests/store_contract.rs`.

#[path = "common/store_backends.rs"]
mod backends;
#[path = "common/store_fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use backends::{Observed, on_both_backends};
use chrono::{DateTime, Duration, Utc};
use fixtures::*;
use runnerhub::domain::{Job, JobOutcome, JobStatus};
use runnerhub::history::series::minute_start;
use runnerhub::history::waits::per_hour;
use runnerhub::store::*;

/// The start of the `n`th minute after the fixtures' epoch.
fn minute(n: i64) -> DateTime<Utc> {
    minute_start(t0()) + Duration::minutes(n)
}

fn sample(pool: &str, queued: u64, busy: u64, idle: u64, starting: u64) -> PoolSample {
    PoolSample {
        pool: pool.to_owned(),
        queued,
        busy,
        idle,
        starting,
    }
}

fn summary(minutes: &[PoolMinute]) -> Vec<(i64, String, [u64; 4])> {
    minutes
        .iter()
        .map(|m| {
            (
                (m.minute - minute(0)).num_minutes(),
                m.pool.clone(),
                [m.queued, m.busy, m.idle, m.starting],
            )
        })
        .collect()
}

#[tokio::test]
async fn instances_add_up_their_runners_and_share_one_queue() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let record = |instance: &'static str, n: i64, samples: Vec<PoolSample>| {
            let store = store.clone();
            async move {
                store
                    .record_pool_samples(instance, minute(n), &samples)
                    .await
                    .unwrap()
            }
        };
        record(
            "a",
            0,
            vec![sample("linux", 5, 2, 1, 0), sample("gpu", 1, 0, 0, 0)],
        )
        .await;
        record("b", 0, vec![sample("linux", 6, 3, 0, 1)]).await;
        // Instance a restarted within the minute: its second sample replaces the first.
        record(
            "a",
            0,
            vec![sample("linux", 5, 4, 2, 0), sample("gpu", 1, 0, 0, 0)],
        )
        .await;
        record("a", 1, vec![sample("linux", 2, 1, 1, 0)]).await;
        record("a", 2, vec![]).await;

        let minutes = store.pool_minutes(minute(0)).await.unwrap();
        assert_eq!(
            summary(&minutes),
            [
                (0, "gpu".to_owned(), [1, 0, 0, 0]),
                // Runners summed (4 + 3 busy); the queue is the fleet's, read by both: 6.
                (0, "linux".to_owned(), [6, 7, 2, 1]),
                (1, "linux".to_owned(), [2, 1, 1, 0]),
            ]
        );
        seen.note("minutes", &minutes);
        let later = store.pool_minutes(minute(1)).await.unwrap();
        assert_eq!(summary(&later), [(1, "linux".to_owned(), [2, 1, 1, 0])]);

        // The charts' answer: configured pools first, even without samples.
        let configured = ["arm".to_owned(), "linux".to_owned()];
        let now = minute(2) + Duration::seconds(5);
        let history = runnerhub::history::read(store.as_ref(), &configured, 1, now)
            .await
            .unwrap();
        let names: Vec<_> = history.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["arm", "linux", "gpu"]);
        assert!(history.pools[0].points.is_empty());
        assert_eq!(history.waits.len(), 1);
        seen.note("history pools", &history.pools);
        seen
    })
    .await;
}

#[tokio::test]
async fn the_queue_per_pool_is_the_jobs_waiting_for_a_runner() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let in_pool = |id, status, pool: Option<&str>| Job {
            pool: pool.map(str::to_owned),
            ..job(id, "octo/app", status, 0, id)
        };
        let jobs = vec![
            in_pool(1, JobStatus::Queued, Some("linux")),
            in_pool(2, JobStatus::Queued, Some("linux")),
            in_pool(3, JobStatus::Waiting, Some("linux")),
            in_pool(4, JobStatus::InProgress, Some("linux")),
            in_pool(5, JobStatus::Completed, Some("linux")),
            in_pool(6, JobStatus::Queued, None),
            in_pool(7, JobStatus::Queued, Some("gpu")),
            // Refused for good: out of the queue, however long it stays `queued`.
            Job {
                outcome: Some(JobOutcome::UnknownScope),
                ..in_pool(8, JobStatus::Queued, Some("linux"))
            },
        ];
        store
            .commit_processing(&ProcessingBatch {
                jobs,
                ..ProcessingBatch::default()
            })
            .await
            .unwrap();
        let queued = store.queued_jobs_per_pool().await.unwrap();
        assert_eq!(queued, [("gpu".to_owned(), 1), ("linux".to_owned(), 3)]);
        seen.note("queued", &queued);
        seen
    })
    .await;
}

/// Job `id` of `pool`, queued `waited_ms` before it started at `started_ms`, on a runner.
fn started(id: i64, pool: &str, started_ms: i64, waited_ms: i64) -> Job {
    Job {
        pool: Some(pool.to_owned()),
        created_at: Some(at(started_ms - waited_ms)),
        started_at: Some(at(started_ms)),
        runner_name: Some(format!("runner-{id}")),
        ..job(
            id,
            "octo/app",
            JobStatus::Completed,
            0,
            started_ms - waited_ms,
        )
    }
}

#[tokio::test]
async fn job_waits_give_the_percentiles_per_hour() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        const HOUR_MS: i64 = 3_600_000;
        let since = minute(0);
        let mut jobs: Vec<Job> = (1..=20)
            .map(|n| started(n, "linux", 10 * 60_000, n * 1_000))
            .collect();
        jobs.push(started(21, "gpu", 2 * HOUR_MS + 60_000, 300_000));
        // Not counted: started before the window; never started; no runner named it.
        jobs.push(started(22, "linux", -60_000, 1_000));
        jobs.push(job(23, "octo/app", JobStatus::Queued, 0, 1_000));
        jobs.push(Job {
            runner_name: None,
            ..started(24, "linux", 60_000, 1_000)
        });
        store
            .commit_processing(&ProcessingBatch {
                jobs,
                ..ProcessingBatch::default()
            })
            .await
            .unwrap();

        let waits = store.job_waits(since, 1_000).await.unwrap();
        assert_eq!(waits.len(), 21);
        assert_eq!(waits[0].pool.as_deref(), Some("gpu"), "the latest first");
        let hours = per_hour(&waits, since, 3);
        let figures: Vec<_> = hours
            .iter()
            .map(|h| (h.all.jobs, h.all.p50_seconds, h.all.p95_seconds))
            .collect();
        assert_eq!(
            figures,
            [
                (20, Some(10.0), Some(19.0)),
                (0, None, None),
                (1, Some(300.0), Some(300.0)),
            ]
        );
        assert_eq!(hours[2].pools["gpu"].jobs, 1);
        seen.note("hours", &hours);

        let latest = store.job_waits(since, 2).await.unwrap();
        assert_eq!(latest.len(), 2, "a bound on what one request reads");
        assert_eq!(latest[0].pool.as_deref(), Some("gpu"));
        seen
    })
    .await;
}

#[tokio::test]
async fn old_samples_are_pruned_oldest_first() {
    on_both_backends(|store: Arc<dyn Store>| async move {
        let mut seen = Observed::default();
        for n in 0..5 {
            store
                .record_pool_samples("a", minute(n), &[sample("linux", 1, 1, 0, 0)])
                .await
                .unwrap();
        }
        let mut batches = Vec::new();
        loop {
            let rows = store
                .prune(Prunable::PoolSamples, minute(3), 2)
                .await
                .unwrap();
            batches.push(rows);
            if rows < 2 {
                break;
            }
        }
        assert_eq!(batches, [2, 1]);
        let left = store.pool_minutes(minute(0)).await.unwrap();
        let kept: Vec<i64> = summary(&left).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(kept, [3, 4]);
        seen.note("left", &left);
        seen
    })
    .await;
}
