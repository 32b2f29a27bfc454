//! The `Store` contract of retention (`Store::prune`), on SQLite and on PostgreSQL alike: old
//! rows go in batches, oldest first, and nothing still needed goes however old it is (a
//! delivery not processed yet, a job not completed, a runner not removed).
//!
//! PostgreSQL comes from `RUNNERHUB_TEST_POSTGRES_URL`, as for `tests/store_contract.rs`.

#[path = "common/store_backends.rs"]
mod backends;
#[path = "common/store_fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use backends::{Observed, on_both_backends};
use chrono::Duration;
use fixtures::*;
use runnerhub::domain::{JobStatus, RunnerState};
use runnerhub::store::*;

/// Everything stored before this is old enough to go, if nothing needs it.
const CUTOFF_MS: i64 = 1_000;

/// Deletes `what` before the cutoff two rows at a time, as retention does with its batches,
/// and returns the size of each batch.
async fn prune_in_pairs(store: &Arc<dyn Store>, what: Prunable) -> Vec<u64> {
    let mut batches = Vec::new();
    loop {
        let rows = store.prune(what, at(CUTOFF_MS), 2).await.unwrap();
        batches.push(rows);
        if rows < 2 {
            return batches;
        }
    }
}

#[tokio::test]
async fn old_processed_deliveries_go_with_their_payloads_and_the_backlog_stays() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let batch = vec![
            genuine("old-processed-1", 0),
            genuine("old-processed-2", 1),
            genuine("old-failed-for-good", 2),
            genuine("old-waiting-for-a-retry", 3),
            genuine("old-not-processed-yet", 4),
            genuine("new-processed", 2_000),
            delivery("old-forged-1", false, 5, "octo/app", "workflow_job"),
            delivery("old-forged-2", false, 6, "octo/app", "workflow_job"),
            delivery("new-forged", false, 2_001, "octo/app", "workflow_job"),
        ];
        let outcomes = store.insert_deliveries(&batch).await.unwrap();
        seen.event_ids(&outcomes);
        let id = |i: usize| stored_id(&outcomes[i]);
        let failed = |retry_at| DeliveryOutcome::Failed {
            error: "boom".to_owned(),
            retry_at,
        };
        let done = |i| processed(id(i), DeliveryOutcome::Processed("ok".into()), 1, 10);
        store
            .commit_processing(&ProcessingBatch {
                deliveries: vec![
                    done(0),
                    done(1),
                    processed(id(2), failed(None), 5, 10),
                    processed(id(3), failed(Some(at(60_000))), 1, 10),
                    done(5),
                ],
                ..Default::default()
            })
            .await
            .unwrap();

        assert_eq!(
            prune_in_pairs(&store, Prunable::Deliveries).await,
            vec![2, 1],
            "processed, failed for good; oldest first, two per batch"
        );
        assert_eq!(
            prune_in_pairs(&store, Prunable::ForgedDeliveries).await,
            vec![2, 0]
        );
        for gone in [0, 1, 2, 6, 7] {
            assert!(store.event(id(gone)).await.unwrap().is_none(), "{gone}");
        }
        // What stays is whole: its payload is still there.
        for kept in [3, 4, 5, 8] {
            let event = store.event(id(kept)).await.unwrap().expect("kept");
            assert!(event.payload.is_some(), "{kept}");
        }
        let backlog = store.due_deliveries(at(60_000), 10).await.unwrap();
        assert_eq!(ids(&backlog, |d| d.id), vec![id(3), id(4)]);
        assert_eq!(*backlog[1].payload, **batch[4].payload.kept_text().unwrap());
        let health = store.ingest_health().await.unwrap();
        assert_eq!((health.pending, health.failed), (2, 0));
        let page = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(page.total, 4);
        seen.note("events left", &page);
        seen.note("backlog", &backlog);

        // A cutoff that keeps everything deletes nothing.
        for what in Prunable::ALL {
            assert_eq!(store.prune(what, at(-1), 500).await.unwrap(), 0);
        }
        seen
    })
    .await;
}

#[tokio::test]
async fn only_completed_jobs_and_runs_and_removed_runners_go() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let completed = |id, ms| {
            let mut job = job(id, "octo/app", JobStatus::Completed, 0, ms);
            job.conclusion = Some("success".to_owned());
            job
        };
        let mut forgotten_run = run(23, "octo/app", "in_progress");
        forgotten_run.created_at = Some(at(0) - Duration::days(40));
        forgotten_run.updated_at = forgotten_run.created_at;
        let mut run_without_update = run(24, "octo/app", "completed");
        run_without_update.updated_at = None;
        store
            .commit_processing(&ProcessingBatch {
                jobs: vec![
                    completed(301, 0),
                    completed(302, 1),
                    completed(303, 2),
                    job(304, "octo/app", JobStatus::Queued, 0, 0),
                    job(305, "octo/app", JobStatus::Waiting, 0, 0),
                    job(306, "octo/app", JobStatus::InProgress, 0, 0),
                    completed(307, 5_000),
                ],
                runs: vec![
                    run(21, "octo/app", "completed"),
                    run(22, "octo/app", "in_progress"),
                    forgotten_run,
                    run_without_update,
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        let removed_at = |state, id: &str, ms| {
            let mut runner = runner(id, "linux", state, 0);
            runner.removed_at = Some(at(ms));
            runner
        };
        let mut removed_without_time = runner("r-5", "linux", RunnerState::Removed, 20);
        removed_without_time.removed_at = None;
        for runner in [
            removed_at(RunnerState::Removed, "r-1", 10),
            removed_at(RunnerState::Removed, "r-2", 2_000),
            runner("r-3", "linux", RunnerState::Finished, 0),
            runner("r-4", "linux", RunnerState::Failed, 0),
            removed_without_time,
            runner("r-6", "linux", RunnerState::Idle, 0),
            runner("r-7", "linux", RunnerState::Busy, 0),
        ] {
            store.save_runner(&runner).await.unwrap();
        }

        assert_eq!(prune_in_pairs(&store, Prunable::Jobs).await, vec![2, 1]);
        assert_eq!(prune_in_pairs(&store, Prunable::Runs).await, vec![2, 1]);
        assert_eq!(prune_in_pairs(&store, Prunable::Runners).await, vec![2, 0]);

        let mut jobs = ids(
            &store
                .jobs_by_id(&[301, 302, 303, 304, 305, 306, 307])
                .await
                .unwrap(),
            |j| j.id,
        );
        jobs.sort_unstable();
        assert_eq!(jobs, vec![304, 305, 306, 307]);
        assert_eq!(
            store.schedulable_jobs().await.unwrap().len(),
            2,
            "the queue is whole"
        );
        let mut runs = ids(&store.runs_by_id(&[21, 22, 23, 24]).await.unwrap(), |r| {
            r.id
        });
        runs.sort_unstable();
        assert_eq!(
            runs,
            vec![22],
            "a run not updated for 35 days past the cutoff is over"
        );
        let runners = store
            .list_runners(&RunnerFilter {
                include_removed: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut names: Vec<&str> = runners.items.iter().map(|r| r.id.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["r-2", "r-3", "r-4", "r-6", "r-7"]);
        assert_eq!(store.live_runners().await.unwrap().len(), 4);
        seen.note("jobs left", &jobs);
        seen.note("runs left", &runs);
        seen.note("runners left", &names);
        seen
    })
    .await;
}

#[tokio::test]
async fn redelivery_asks_go_once_last_asked_before_the_cutoff() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let ask = |guid: &str, last_ms| RedeliveryAsk {
            delivery_guid: guid.to_owned(),
            kind: "repository".to_owned(),
            owner: "octo/app".to_owned(),
            hook_id: 7,
            event: "push".to_owned(),
            action: None,
            asks: 1,
            attempt_id: 1,
            first_asked_at: at(0),
            last_asked_at: at(last_ms),
            next_ask_at: None,
            recovered_at: None,
        };
        for (guid, last_ms) in [
            ("old-1", 0),
            ("old-2", 1),
            ("old-3", 2),
            ("asked-again", 2_000),
        ] {
            store
                .save_redelivery_ask(&ask(guid, last_ms))
                .await
                .unwrap();
        }
        assert_eq!(
            prune_in_pairs(&store, Prunable::Redeliveries).await,
            vec![2, 1]
        );
        let guids: Vec<String> = ["old-1", "old-2", "old-3", "asked-again"]
            .map(String::from)
            .to_vec();
        let left = store.redelivery_asks(&guids).await.unwrap();
        let left: Vec<&str> = left.iter().map(|a| a.delivery_guid.as_str()).collect();
        assert_eq!(left, ["asked-again"]);
        seen.note("asks left", &left);
        seen
    })
    .await;
}
