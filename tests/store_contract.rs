//! The `Store` contract: every scenario runs on SQLite and on PostgreSQL, checks what the trait
//! promises, and the two backends must have seen exactly the same.
//!
//! PostgreSQL comes from `RUNNERHUB_TEST_POSTGRES_URL` (`.ci/postgres start` prints it); without
//! it these tests fail, they do not skip. Times are whole microseconds, PostgreSQL's precision.

#[path = "common/store_backends.rs"]
mod backends;
#[path = "common/store_fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use backends::{Observed, TestDatabase, on_both_backends};
use fixtures::*;
use runnerhub::domain::{Job, JobOutcome, JobStatus, RunnerState, WorkflowRun};
use runnerhub::store::*;
use runnerhub::webhook::intake::{NewDelivery, Settled};

#[tokio::test]
async fn migrating_again_keeps_the_data() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let outcomes = store.insert_deliveries(&[genuine("g-1", 0)]).await.unwrap();
        seen.event_ids(&outcomes);
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        let page = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(page.total, 1);
        seen.note("events after migrating twice", &page);
        seen
    })
    .await;
}

#[tokio::test]
async fn appending_stores_genuine_guids_once_and_every_forged_attempt() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        assert!(store.insert_deliveries(&[]).await.unwrap().is_empty());
        let first = vec![
            genuine("a", 0),
            genuine("b", 1),
            genuine("a", 2),
            delivery("x", false, 3, "octo/app", "workflow_job"),
            delivery("x", false, 4, "octo/app", "workflow_job"),
            delivery("b", false, 5, "octo/app", "workflow_job"),
        ];
        let committed = store.append_deliveries(&first).await.unwrap();
        committed.durable.await.unwrap();
        let outcomes = committed.value;
        seen.event_ids(&outcomes);
        assert_eq!(outcomes.len(), first.len());
        assert_eq!(
            outcomes[2],
            InsertOutcome::Duplicate,
            "a repeated within the batch"
        );
        let stored: Vec<i64> = [0, 1, 3, 4, 5]
            .iter()
            .map(|&i| stored_id(&outcomes[i]))
            .collect();
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "ids follow the batch order: {stored:?}"
        );
        seen.note("first batch", &outcomes);

        // Across batches: a stored genuine GUID is a duplicate; a GUID that only forged
        // attempts used is still free for the genuine delivery.
        let second = vec![
            genuine("a", 10),
            genuine("c", 11),
            genuine("x", 12),
            delivery("c", false, 13, "octo/app", "workflow_job"),
        ];
        let outcomes = store.insert_deliveries(&second).await.unwrap();
        seen.event_ids(&outcomes);
        assert_eq!(outcomes[0], InsertOutcome::Duplicate);
        for outcome in &outcomes[1..] {
            assert!(stored_id(outcome) > stored[4]);
        }
        seen.note("second batch", &outcomes);

        // Offered again: the genuine ones are duplicates now, the forged ones stored again.
        let again = store.insert_deliveries(&first).await.unwrap();
        seen.event_ids(&again);
        for (d, outcome) in first.iter().zip(&again) {
            assert_eq!(d.signature_valid, *outcome == InsertOutcome::Duplicate);
        }
        // Each stored id carries its own delivery's payload (the two forged `x` differ).
        let page = store
            .list_events(&EventFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, 5 + 3 + 3);
        for record in &page.items {
            let full = store.event(record.id).await.unwrap().unwrap();
            let payload = full.payload.clone().unwrap();
            if record.signature_valid {
                assert_eq!(payload["delivery"], record.delivery_id.as_str());
                assert!(!record.processed);
            } else {
                let text = payload.as_str().expect("a forged body is shown as text");
                assert!(text.starts_with(&format!("forged body {} ", record.delivery_id)));
                assert_eq!(record.outcome.as_deref(), Some("rejected"));
                assert!(record.processed && record.processed_at == Some(record.received_at));
            }
            seen.note("event", &full);
        }
        seen
    })
    .await;
}

#[tokio::test]
async fn due_deliveries_retries_and_ingest_health() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let mut ignored = delivery("settled", true, 3, "octo/app", "star");
        ignored.settled = Some(Settled::Ignored("event not handled".to_owned()));
        let batch = vec![
            genuine("d1", 0),
            genuine("d2", 1),
            genuine("d3", 2),
            ignored,
            delivery("forged", false, 4, "octo/app", "workflow_job"),
        ];
        let outcomes = store.insert_deliveries(&batch).await.unwrap();
        seen.event_ids(&outcomes);
        let [d1, d2, d3] = [0, 1, 2].map(|i| stored_id(&outcomes[i]));

        let due = store.due_deliveries(at(100), 10).await.unwrap();
        assert_eq!(
            ids(&due, |d| d.id),
            vec![d1, d2, d3],
            "settled deliveries are not due"
        );
        for (d, sent) in due.iter().zip(&batch) {
            assert_eq!(*d.payload, **sent.payload.kept_text().unwrap());
            assert_eq!(d.attempts, 0);
        }
        seen.note("due", &due);
        assert_eq!(
            ids(&store.due_deliveries(at(100), 2).await.unwrap(), |d| d.id),
            vec![d1, d2]
        );
        seen.note("health before", &store.ingest_health().await.unwrap());

        let failed = |retry_at| DeliveryOutcome::Failed {
            error: "boom".to_owned(),
            retry_at,
        };
        let outcome = ProcessingBatch {
            deliveries: vec![
                processed(
                    d1,
                    DeliveryOutcome::Processed("job queued".to_owned()),
                    1,
                    100,
                ),
                processed(d2, failed(Some(at(60_000))), 1, 100),
                processed(d3, failed(None), 1, 100),
            ],
            ..Default::default()
        };
        store.commit_processing(&outcome).await.unwrap();
        assert!(store.due_deliveries(at(100), 10).await.unwrap().is_empty());
        let retried = store.due_deliveries(at(60_000), 10).await.unwrap();
        assert_eq!(ids(&retried, |d| d.id), vec![d2]);
        assert_eq!(retried[0].attempts, 1);
        let health = store.ingest_health().await.unwrap();
        assert_eq!((health.pending, health.failed), (1, 1));
        assert_eq!(health.oldest_pending_at, Some(at(1)));
        assert_eq!(health.last_received_at, Some(at(4)));
        seen.note("health while d2 waits", &health);
        seen.note(
            "events while d2 waits",
            &store.list_events(&EventFilter::default()).await.unwrap(),
        );

        store
            .commit_processing(&ProcessingBatch {
                deliveries: vec![processed(
                    d2,
                    DeliveryOutcome::Ignored("stale".to_owned()),
                    2,
                    60_001,
                )],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(store.ingest_health().await.unwrap().pending, 0);
        let d2_now = store.event(d2).await.unwrap().unwrap();
        assert_eq!(
            (d2_now.outcome.as_deref(), d2_now.attempts),
            (Some("ignored"), 2)
        );
        seen.note("d2 at last", &d2_now);
        seen.note("health after", &store.ingest_health().await.unwrap());
        seen
    })
    .await;
}

#[tokio::test]
async fn commit_processing_upserts_jobs_and_runs_with_the_outcomes() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let outcomes = store.insert_deliveries(&[genuine("j1", 0)]).await.unwrap();
        seen.event_ids(&outcomes);
        let delivery_id = stored_id(&outcomes[0]);
        let mut unmatched = job(202, "octo/app", JobStatus::Queued, 0, 5);
        unmatched.pool = None;
        let mut superseded = job(201, "octo/app", JobStatus::Queued, 10, 0);
        superseded.priority = -1;
        store
            .commit_processing(&ProcessingBatch {
                deliveries: vec![processed(
                    delivery_id,
                    DeliveryOutcome::Processed("queued".into()),
                    1,
                    10,
                )],
                // A job twice in one batch: the last record is the one kept.
                jobs: vec![
                    superseded,
                    job(201, "octo/app", JobStatus::Queued, 10, 0),
                    unmatched,
                ],
                runs: vec![run(20, "octo/app", "queued")],
            })
            .await
            .unwrap();
        let jobs = store.jobs_by_id(&[202, 201, 999]).await.unwrap();
        let mut found = ids(&jobs, |j| j.id);
        found.sort_unstable();
        assert_eq!(found, vec![201, 202]);
        assert_eq!(
            store.job(201).await.unwrap().unwrap(),
            job(201, "octo/app", JobStatus::Queued, 10, 0)
        );
        assert_eq!(store.job(999).await.unwrap(), None);
        assert!(store.jobs_by_id(&[]).await.unwrap().is_empty());
        assert_eq!(
            store.runs_by_id(&[20, 21]).await.unwrap(),
            vec![run(20, "octo/app", "queued")]
        );
        assert!(store.event(delivery_id).await.unwrap().unwrap().processed);

        // The processor merged the state; the store writes it. Run, repository, name and first
        // sight are fixed when the job is first stored.
        let mut started = job(201, "other/repo", JobStatus::InProgress, 15, 50);
        started.run_id = 99;
        started.name = "renamed".to_owned();
        started.labels = vec!["gpu".to_owned()];
        started.runner_id = Some(7);
        started.runner_name = Some("runnerhub-linux-abc".to_owned());
        started.runner_group_name = Some("Default".to_owned());
        started.started_at = Some(at(60));
        started.conclusion = Some("success".to_owned());
        let mut finished_run = run(20, "other/repo", "completed");
        finished_run.conclusion = Some("success".to_owned());
        finished_run.run_attempt = 2;
        store
            .commit_processing(&ProcessingBatch {
                jobs: vec![started.clone()],
                runs: vec![finished_run.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        let stored = store.job(201).await.unwrap().unwrap();
        let original = job(201, "octo/app", JobStatus::Queued, 10, 0);
        let expected = Job {
            run_id: original.run_id,
            repository: original.repository.clone(),
            name: original.name.clone(),
            first_seen_at: original.first_seen_at,
            ..started
        };
        assert_eq!(stored, expected);
        let run_now = store.runs_by_id(&[20]).await.unwrap();
        assert_eq!(
            run_now,
            vec![WorkflowRun {
                repository: "octo/app".to_owned(),
                ..finished_run
            }]
        );
        seen.note("jobs", &store.jobs_by_id(&[201, 202]).await.unwrap());
        seen.note("runs", &run_now);
        seen
    })
    .await;
}

#[tokio::test]
async fn event_listing_filters_pages_and_statistics() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let batch = vec![
            delivery("e1", true, 0, "octo/app", "workflow_job"),
            delivery("e2", true, 1, "octo/lib", "workflow_job"),
            delivery("e3", true, 2, "octo/app", "push"),
            delivery("e4", false, 3, "octo/app", "workflow_job"),
            delivery("e5", true, 4, "octo/app", "workflow_job"),
            delivery("e6", true, 5, "octo/lib", "push"),
            delivery("e7", true, 6, "octo/app", "workflow_job"),
        ];
        let outcomes = store.insert_deliveries(&batch).await.unwrap();
        seen.event_ids(&outcomes);
        let all: Vec<i64> = outcomes.iter().map(stored_id).collect();
        store
            .commit_processing(&ProcessingBatch {
                deliveries: vec![
                    processed(all[0], DeliveryOutcome::Processed("ok".into()), 1, 10),
                    processed(
                        all[1],
                        DeliveryOutcome::Ignored("GitHub-hosted".into()),
                        1,
                        10,
                    ),
                    processed(
                        all[2],
                        DeliveryOutcome::Failed {
                            error: "bad".into(),
                            retry_at: None,
                        },
                        1,
                        10,
                    ),
                ],
                ..Default::default()
            })
            .await
            .unwrap();

        let page = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!((page.total, page.limit, page.offset), (7, DEFAULT_PAGE, 0));
        let mut newest_first = all.clone();
        newest_first.reverse();
        assert_eq!(ids(&page.items, |e| e.id), newest_first);
        assert!(
            page.items.iter().all(|e| e.payload.is_none()),
            "no payloads in a listing"
        );
        seen.note("all", &page);

        let app = |limit, offset| EventFilter {
            repository: Some("octo/app".to_owned()),
            event: None,
            limit,
            offset,
            ..Default::default()
        };
        let page = store.list_events(&app(2, 1)).await.unwrap();
        assert_eq!(
            (page.total, ids(&page.items, |e| e.id)),
            (5, vec![all[4], all[3]])
        );
        seen.note("octo/app, 2 from 1", &page);
        let past_the_end = store.list_events(&app(2, 50)).await.unwrap();
        assert_eq!((past_the_end.total, past_the_end.items.len()), (5, 0));
        seen.note("past the end", &past_the_end);
        let pushes = EventFilter {
            event: Some("push".to_owned()),
            ..Default::default()
        };
        let page = store.list_events(&pushes).await.unwrap();
        assert_eq!(
            (page.total, ids(&page.items, |e| e.id)),
            (2, vec![all[5], all[2]])
        );
        let both = EventFilter {
            repository: Some("octo/lib".to_owned()),
            ..pushes
        };
        assert_eq!(
            ids(&store.list_events(&both).await.unwrap().items, |e| e.id),
            vec![all[5]]
        );
        let huge = store
            .list_events(&EventFilter {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(huge.limit, MAX_PAGE);

        let one = store.event(all[0]).await.unwrap().unwrap();
        assert_eq!(
            one.payload.as_ref().unwrap()["repository"]["full_name"],
            "octo/app"
        );
        assert_eq!(store.event(9_999).await.unwrap().map(|e| e.id), None);
        seen.note("one event", &one);

        let stats = store.event_statistics(at(2)).await.unwrap();
        assert_eq!(
            (stats.total, stats.pending, stats.signature_failures),
            (5, 3, 1)
        );
        assert_eq!(stats.by_event["workflow_job"], 3);
        assert_eq!(stats.by_outcome["failed"], 1);
        assert_eq!(stats.by_outcome["rejected"], 1);
        seen.note("statistics since e3", &stats);
        seen.note(
            "statistics since the start",
            &store.event_statistics(at(0)).await.unwrap(),
        );
        let health = store.ingest_health().await.unwrap();
        assert_eq!((health.pending, health.failed), (3, 1));
        seen.note("health", &health);
        seen
    })
    .await;
}

#[tokio::test]
async fn job_queries_filter_order_and_page() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let mut jobs = vec![
            job(1, "octo/app", JobStatus::Queued, 0, 0),
            job(2, "octo/app", JobStatus::Queued, 100, 10),
            job(3, "octo/lib", JobStatus::Waiting, 100, 5),
            job(4, "octo/app", JobStatus::InProgress, 50, 20),
            job(5, "octo/lib", JobStatus::Completed, 0, 30),
            job(6, "octo/app", JobStatus::Queued, 0, 0),
            job(7, "octo/app", JobStatus::Queued, 10, 40),
        ];
        jobs[5].pool = None; // GitHub-hosted: recorded, never scheduled
        jobs[2].first_seen_at = at(100); // queued before job 2, heard of after it
        jobs[6].created_at = None; // ordered by when runnerhub first saw it
        jobs[3].started_at = Some(at(500));
        jobs[3].updated_at = at(500);
        jobs[4].started_at = Some(at(400));
        jobs[4].completed_at = Some(at(700));
        jobs[4].updated_at = at(700);
        store
            .commit_processing(&ProcessingBatch {
                jobs,
                ..Default::default()
            })
            .await
            .unwrap();

        let page = store.list_jobs(&JobFilter::default()).await.unwrap();
        assert_eq!(page.total, 7);
        assert_eq!(ids(&page.items, |j| j.id), vec![3, 7, 5, 4, 2, 6, 1]);
        seen.note("all jobs", &page);
        let queued_app = JobFilter {
            status: vec![JobStatus::Queued],
            repository: Some("octo/app".to_owned()),
            limit: 2,
            offset: 1,
        };
        let page = store.list_jobs(&queued_app).await.unwrap();
        assert_eq!((page.total, ids(&page.items, |j| j.id)), (4, vec![2, 6]));
        seen.note("queued in octo/app, 2 from 1", &page);
        let past_the_end = store
            .list_jobs(&JobFilter {
                offset: 100,
                ..queued_app.clone()
            })
            .await
            .unwrap();
        // No rows, but the total still counts what the filter matches.
        assert_eq!((past_the_end.total, past_the_end.items.len()), (4, 0));
        seen.note("past the end", &past_the_end);
        assert_eq!(
            store.job(4).await.unwrap().unwrap().status,
            JobStatus::InProgress
        );

        let mut schedulable = ids(&store.schedulable_jobs().await.unwrap(), |j| j.id);
        schedulable.sort_unstable();
        assert_eq!(schedulable, vec![1, 2, 3, 7]);
        seen.note("schedulable", &schedulable);

        let pending = store.pending_jobs(None, 10).await.unwrap();
        assert_eq!(ids(&pending, |j| j.id), vec![3, 2, 7, 1, 6]);
        seen.note("pending", &pending);
        let pending = store.pending_jobs(Some("octo/app"), 2).await.unwrap();
        assert_eq!(ids(&pending, |j| j.id), vec![2, 7]);

        let recent = store.job_repositories_since(at(600), 10).await.unwrap();
        assert_eq!(recent, vec!["octo/lib"]);
        // The most recently active first (job 5 at 700 ms, then job 4 at 500 ms).
        let recent = store.job_repositories_since(at(0), 10).await.unwrap();
        assert_eq!(recent, vec!["octo/lib", "octo/app"]);
        let recent = store.job_repositories_since(at(0), 1).await.unwrap();
        assert_eq!(recent, vec!["octo/lib"]);
        seen.note("repositories since 0 ms", &recent);

        let active = store.jobs_active_since(at(450), None, 10).await.unwrap();
        assert_eq!(ids(&active, |j| j.id), vec![5, 4]);
        seen.note("active since 450 ms", &active);
        let active = store
            .jobs_active_since(at(600), Some("octo/lib"), 10)
            .await
            .unwrap();
        assert_eq!(ids(&active, |j| j.id), vec![5]);
        assert!(
            store
                .jobs_active_since(at(600), Some("octo/app"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        seen
    })
    .await;
}

#[tokio::test]
async fn a_refused_job_keeps_its_first_outcome_and_leaves_the_queue() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let queued = job(1, "acme", JobStatus::Queued, 0, 0);
        let mut hosted = job(2, "octo/app", JobStatus::Queued, 0, 0);
        hosted.pool = None;
        hosted.set_outcome(
            JobOutcome::NoPool,
            "no pool serves labels [x]".into(),
            at(1),
        );
        let batch = |jobs| ProcessingBatch {
            jobs,
            ..Default::default()
        };
        store
            .commit_processing(&batch(vec![queued.clone(), hosted]))
            .await
            .unwrap();
        assert_eq!(
            store.job(2).await.unwrap().unwrap().outcome,
            Some(JobOutcome::NoPool),
            "recorded with the job"
        );

        let refused = store
            .record_job_outcome(1, JobOutcome::UnusableRepository, "not owner/name", at(50))
            .await
            .unwrap()
            .expect("recorded by this call");
        assert_eq!(refused.outcome, Some(JobOutcome::UnusableRepository));
        assert_eq!(refused.outcome_detail.as_deref(), Some("not owner/name"));
        assert_eq!(refused.updated_at, at(50), "a change fleet instances read");
        assert_eq!(refused.status, JobStatus::Queued, "GitHub's status stays");
        seen.note("refused", &refused);
        let again = store
            .record_job_outcome(1, JobOutcome::UnknownScope, "404", at(60))
            .await
            .unwrap();
        assert_eq!(again, None, "the first outcome stands");
        assert_eq!(
            store
                .record_job_outcome(99, JobOutcome::UnknownScope, "404", at(60))
                .await
                .unwrap(),
            None
        );
        assert!(store.schedulable_jobs().await.unwrap().is_empty());

        // A later delivery's upsert, from a record read before the refusal, keeps the outcome.
        let mut started = queued;
        started.status = JobStatus::InProgress;
        started.updated_at = at(70);
        store
            .commit_processing(&batch(vec![started]))
            .await
            .unwrap();
        let stored = store.job(1).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.outcome),
            (JobStatus::InProgress, Some(JobOutcome::UnusableRepository))
        );
        seen.note("after a later delivery", &stored);
        seen
    })
    .await;
}

#[tokio::test]
async fn runners_are_saved_updated_and_listed() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let one = runner("r1aaaaaa", "linux", RunnerState::Requested, 0);
        let two = runner("r2bbbbbb", "gpu", RunnerState::Idle, 10);
        let mut gone = runner("r3cccccc", "linux", RunnerState::Removed, 20);
        gone.removed_at = Some(at(30));
        gone.scope = "orgs/octo".to_owned();
        for r in [&one, &two, &gone] {
            store.save_runner(r).await.unwrap();
        }
        // An update changes its progress; what it was created as stays.
        let mut busy = one.clone();
        busy.state = RunnerState::Busy;
        busy.github_runner_id = Some(42);
        busy.container_id = Some("c0ffee".to_owned());
        busy.job_id = Some(201);
        busy.draining = true;
        busy.idle_at = Some(at(40));
        busy.busy_at = Some(at(50));
        busy.updated_at = at(50);
        let mut rewritten = busy.clone();
        rewritten.pool = "gpu".to_owned();
        rewritten.labels = vec!["changed".to_owned()];
        rewritten.instance = "instance-2".to_owned();
        store.save_runner(&rewritten).await.unwrap();
        assert_eq!(
            store.runner_by_name(&one.name).await.unwrap(),
            Some(busy.clone())
        );
        assert_eq!(store.runner_by_name("runnerhub-none").await.unwrap(), None);

        let live = store.live_runners().await.unwrap();
        assert_eq!(live, vec![busy.clone(), two.clone()]);
        assert_eq!(
            store.registered_scopes().await.unwrap(),
            ["orgs/octo", "repos/octo/app"],
            "a removed runner's scope too, each once"
        );
        seen.note("live", &live);
        let listed = store.list_runners(&RunnerFilter::default()).await.unwrap();
        assert_eq!((listed.total, listed.items.len()), (2, 2));
        assert_eq!(listed.items[0].id, two.id, "newest first");
        let history = RunnerFilter {
            include_removed: true,
            limit: 1,
            offset: 1,
            ..Default::default()
        };
        let page = store.list_runners(&history).await.unwrap();
        assert_eq!(
            (page.total, page.items[0].id.as_str()),
            (3, two.id.as_str())
        );
        seen.note("history, 1 from 1", &page);
        let past_the_end = RunnerFilter {
            offset: 10,
            ..history.clone()
        };
        let page = store.list_runners(&past_the_end).await.unwrap();
        assert_eq!((page.total, page.items.len()), (3, 0));
        let removed = RunnerFilter {
            state: Some(RunnerState::Removed),
            ..Default::default()
        };
        assert_eq!(
            store.list_runners(&removed).await.unwrap().items,
            vec![gone.clone()]
        );
        let linux = RunnerFilter {
            pool: Some("linux".to_owned()),
            ..Default::default()
        };
        let page = store.list_runners(&linux).await.unwrap();
        assert_eq!(
            page.items,
            vec![busy.clone()],
            "removed runners are history"
        );
        seen.note("linux", &page);

        // The name is unique: another runner under it is refused, not merged.
        let mut clash = runner("r4dddddd", "linux", RunnerState::Requested, 60);
        clash.name = two.name.clone();
        assert!(store.save_runner(&clash).await.is_err());
        assert_eq!(store.live_runners().await.unwrap().len(), 2);
        seen
    })
    .await;
}

#[tokio::test]
async fn live_events_are_stored_replayed_and_pruned() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        assert_eq!(
            store.live_event_bounds().await.unwrap(),
            LiveEventBounds::default()
        );
        let first: Vec<LiveEventRow> = (1..=5).map(|s| live(s, s * 10)).collect();
        store.insert_live_events(&first, 10).await.unwrap();
        let bounds = store.live_event_bounds().await.unwrap();
        assert_eq!(
            (bounds.max_seq, bounds.reserved_seq, bounds.pruned_through),
            (5, 10, 0)
        );
        // A batch retried after a failed commit carries rows already stored.
        let retried: Vec<LiveEventRow> = (4..=8).map(|s| live(s, s * 10)).collect();
        store.insert_live_events(&retried, 20).await.unwrap();
        assert_eq!(store.live_events_after(0, 100, 100).await.unwrap().len(), 8);

        let replay = store.live_events_after(2, 5, 10).await.unwrap();
        assert_eq!(replay, first[2..].to_vec());
        seen.note("after 2 through 5", &replay);
        let replay = store.live_events_after(0, 8, 2).await.unwrap();
        assert_eq!(ids(&replay, |e| e.seq), vec![1, 2]);

        // Keep the newest 5: seqs 1..=3 go.
        assert_eq!(store.prune_live_events(5, at(0)).await.unwrap(), 3);
        assert_eq!(store.live_event_bounds().await.unwrap().pruned_through, 3);
        // Older than 55 ms: seqs 4 and 5 go, whatever keep_last says.
        assert_eq!(store.prune_live_events(100, at(55)).await.unwrap(), 2);
        // Nothing to do leaves the boundary where it is.
        assert_eq!(store.prune_live_events(100, at(0)).await.unwrap(), 0);
        let bounds = store.live_event_bounds().await.unwrap();
        assert_eq!(
            (bounds.max_seq, bounds.reserved_seq, bounds.pruned_through),
            (8, 20, 5)
        );
        seen.note("bounds after pruning", &bounds);
        seen.note("left", &store.live_events_after(0, 100, 100).await.unwrap());

        store.insert_live_events(&[], 30).await.unwrap();
        assert_eq!(store.live_event_bounds().await.unwrap().reserved_seq, 30);
        seen
    })
    .await;
}

#[tokio::test]
async fn open_store_names_the_database_without_its_password() {
    let database = TestDatabase::create().await;
    let missing = backends::with_database(&database.url, &format!("{}_missing", database.name));
    let (scheme, rest) = missing.split_once("://").unwrap();
    let with_password = match rest.split_once('@') {
        Some((user, host)) => format!(
            "{scheme}://{}:hunter2@{host}",
            user.split(':').next().unwrap()
        ),
        None => format!("{scheme}://postgres:hunter2@{rest}"),
    };
    let error = runnerhub::app::open_store(&with_password).await.err();
    database.drop_now().await;
    let message = format!("{:#}", error.expect("a database that does not exist"));
    assert!(message.contains(":***@"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let error = runnerhub::app::open_store("mysql://root:hunter2@localhost/db")
        .await
        .err()
        .expect("not a supported scheme");
    let message = format!("{error:#}");
    assert!(
        message.contains("mysql://root:***@localhost/db"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn the_store_is_usable_from_many_tasks_at_once() {
    // Ingest batches overlap (the next starts while the last syncs): concurrent appends of
    // the same GUIDs must still store each genuine one exactly once.
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let store: Arc<dyn Store> = store.clone();
                tokio::spawn(async move {
                    let batch: Vec<NewDelivery> = (0..50)
                        .map(|i| genuine(&format!("g-{}", (i * (task + 1)) % 60), i))
                        .collect();
                    store.insert_deliveries(&batch).await.unwrap()
                })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            stored += task
                .await
                .unwrap()
                .iter()
                .filter(|o| **o != InsertOutcome::Duplicate)
                .count();
        }
        let total = store
            .list_events(&EventFilter::default())
            .await
            .unwrap()
            .total;
        assert_eq!(stored as i64, total);
        seen.note("distinct GUIDs stored", &total);
        seen
    })
    .await;
}
