//! Jobs that can never get a runner leave the queue with an outcome (refusals.rs), and the
//! pool goes on serving the others; in virtual time.

use super::harness::{Harness, config, pool, t0};
use super::{LINUX, minutes, secs};
use crate::domain::{JobOutcome, JobStatus};
use crate::scheduler::core::Effect;

fn refusals(h: &Harness) -> Vec<(i64, JobOutcome, String)> {
    h.log
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::RefuseJob {
                job_id,
                outcome,
                detail,
                pool,
            } => {
                assert_eq!(pool, "linux");
                Some((*job_id, *outcome, detail.clone()))
            }
            _ => None,
        })
        .collect()
}

fn launches_for(h: &Harness, job: i64) -> usize {
    h.launches()
        .iter()
        .filter(|(_, r)| r.launched_for == Some(job))
        .count()
}

#[test]
fn a_job_with_no_usable_repository_is_refused_at_once_and_the_pool_serves_the_next() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.queue_job(1, "acme", LINUX, 0);
    h.queue_job(2, "acme/app", LINUX, 0);
    let refused = refusals(&h);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].0, refused[0].1),
        (1, JobOutcome::UnusableRepository)
    );
    assert!(refused[0].2.contains("`acme`"), "{}", refused[0].2);
    assert!(h.core.queue().get(1).is_none(), "out of the queue");
    h.run_for(secs(10));
    assert_eq!(
        h.jobs[&2].status,
        JobStatus::InProgress,
        "the one slot serves job 2"
    );
    h.run_for(minutes(10));
    assert_eq!(launches_for(&h, 1), 0);
    assert_eq!(
        h.core.pool_statuses()[0].stalled,
        None,
        "nothing left to stall on"
    );
    // Restarts neither queue it again nor refuse it twice.
    h.restart();
    h.run_for(secs(10));
    assert!(h.core.queue().is_empty());
    assert_eq!(refusals(&h).len(), 1);
    assert_eq!(h.jobs[&1].outcome, Some(JobOutcome::UnusableRepository));
}

#[test]
fn a_job_recorded_before_refusals_existed_is_refused_at_restore() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.queue_job(1, "acme", LINUX, 0);
    // What an older version left: queued, no outcome.
    h.jobs.get_mut(&1).unwrap().outcome = None;
    h.restart();
    assert_eq!(refusals(&h).len(), 2, "once by each process");
    assert!(h.core.queue().is_empty());
}

#[test]
fn a_scope_github_answers_404_for_refuses_its_jobs_after_stall_after_while_others_run() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.not_found_scopes.insert("repos/acme/gone".into());
    h.queue_job(1, "acme/gone", LINUX, 0);
    h.run_for(secs(1));
    h.queue_job(2, "acme/app", LINUX, 0);
    h.run_for(secs(20));
    assert_eq!(
        h.jobs[&2].status,
        JobStatus::InProgress,
        "not blocked by job 1"
    );
    h.complete(2);
    h.run_for(minutes(4));
    assert!(refusals(&h).is_empty(), "404s for 4 minutes: not yet");
    assert!(h.core.queue().get(1).is_some());
    h.run_for(minutes(1) + secs(10));
    let refused = refusals(&h);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].0, refused[0].1), (1, JobOutcome::UnknownScope));
    assert!(refused[0].2.contains("repos/acme/gone"), "{}", refused[0].2);
    assert!(h.core.queue().is_empty());
    assert_eq!(
        h.core.pool_statuses()[0].stalled,
        None,
        "refused before the pool counted as stalled"
    );
    let attempts = launches_for(&h, 1);
    // A job that arrives there later gets one attempt, and is refused after its 404.
    h.queue_job(3, "acme/gone", LINUX, 0);
    h.run_for(minutes(2));
    assert_eq!(launches_for(&h, 3), 1);
    assert_eq!(refusals(&h).len(), 2);
    assert_eq!(launches_for(&h, 1), attempts, "nothing more for job 1");
}

#[test]
fn only_an_unbroken_run_of_404s_refuses_and_a_403_never_does() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.not_found_scopes.insert("repos/acme/flaky".into());
    h.refused_scopes.insert("repos/acme/forbidden".into());
    h.queue_job(1, "acme/flaky", LINUX, 0);
    h.queue_job(2, "acme/forbidden", LINUX, 0);
    h.run_for(minutes(3));
    // GitHub answers something else once: the run of 404s starts over.
    h.not_found_scopes.clear();
    h.refused_scopes.insert("repos/acme/flaky".into());
    h.run_for(secs(61));
    h.refused_scopes.remove("repos/acme/flaky");
    h.not_found_scopes.insert("repos/acme/flaky".into());
    let second_run = h.now;
    h.run_for(minutes(3));
    assert!(refusals(&h).is_empty(), "{:?}", refusals(&h));
    h.run_for(minutes(3));
    let refused = refusals(&h);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 1);
    let at = h
        .log
        .iter()
        .find(|(_, e)| matches!(e, Effect::RefuseJob { .. }))
        .map(|(at, _)| *at)
        .unwrap();
    assert!(
        at - second_run >= chrono::Duration::minutes(5),
        "refused at {at}"
    );
    // The 403 repository waits and stalls its pool, an hour on.
    h.run_for(minutes(60));
    assert_eq!(refusals(&h).len(), 1);
    assert!(h.core.queue().get(2).is_some());
    let stalled = h.core.pool_statuses()[0].stalled.clone().expect("stalled");
    assert!(
        stalled.reason.contains("repos/acme/forbidden"),
        "{}",
        stalled.reason
    );
    assert_eq!(stalled.since, t0());
}
