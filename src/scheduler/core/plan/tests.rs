use chrono::{TimeZone, Utc};

use super::*;
use crate::domain::{Job, JobStatus, RunnerState};

fn job(id: i64, pool: &str, priority: i64, minute: i64) -> QueuedJob {
    let at = Utc.timestamp_opt(1_700_000_000 + minute * 60, 0).unwrap();
    let job = Job {
        id,
        run_id: 1,
        run_attempt: 1,
        repository: "o/r".into(),
        workflow_name: None,
        name: "j".into(),
        labels: vec!["self-hosted".into()],
        priority,
        pool: Some(pool.into()),
        status: JobStatus::Queued,
        conclusion: None,
        runner_id: None,
        runner_name: None,
        runner_group_name: None,
        created_at: Some(at),
        started_at: None,
        completed_at: None,
        first_seen_at: at,
        updated_at: at,
        outcome: None,
        outcome_detail: None,
    };
    QueuedJob::from_job(&job, pool, 1.0)
}

fn runner(id: &str, pool: &str, state: RunnerState, launched_for: Option<i64>) -> Runner {
    // A fixed time, like the jobs': the core reads no clock, nor do its tests.
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    Runner {
        id: id.into(),
        pool: pool.into(),
        state,
        failure_reason: None,
        labels: vec![],
        scope: "repos/o/r".into(),
        name: id.into(),
        github_runner_id: None,
        container_id: None,
        instance: "i".into(),
        launched_for,
        job_id: None,
        draining: false,
        created_at: now,
        idle_at: None,
        busy_at: None,
        finished_at: None,
        removed_at: None,
        updated_at: now,
    }
}

fn pool(name: &str, max: usize, min_idle: usize) -> PoolLimits {
    PoolLimits {
        name: name.into(),
        max_runners: max,
        min_idle,
        can_warm: true,
        backing_off: false,
    }
}

fn runners(list: Vec<Runner>) -> HashMap<String, Runner> {
    list.into_iter().map(|r| (r.id.clone(), r)).collect()
}

#[test]
fn the_free_slot_goes_to_the_best_job_across_pools() {
    let mut q = JobQueue::default();
    q.insert(job(1, "a", 0, 0));
    q.insert(job(2, "b", 100, 5));
    q.insert(job(3, "a", 50, 3));
    let plan = plan_launches(
        &[pool("a", 5, 0), pool("b", 5, 0)],
        &q,
        &HashMap::new(),
        2,
        &|_| true,
    );
    assert_eq!(
        plan,
        [
            Launch::ForJob {
                pool: "b".into(),
                job_id: 2
            },
            Launch::ForJob {
                pool: "a".into(),
                job_id: 3
            }
        ]
    );
}

#[test]
fn supply_already_on_the_way_is_not_launched_twice() {
    let mut q = JobQueue::default();
    q.insert(job(1, "a", 0, 0));
    q.insert(job(2, "a", 0, 1));
    // One warm idle runner can take either job: only one more launch is needed.
    let rs = runners(vec![runner("w", "a", RunnerState::Idle, None)]);
    let plan = plan_launches(&[pool("a", 5, 0)], &q, &rs, 10, &|_| true);
    assert_eq!(
        plan,
        [Launch::ForJob {
            pool: "a".into(),
            job_id: 1
        }]
    );
    // A runner launched for job 1 covers it: the next launch is for job 2.
    let rs = runners(vec![runner("r1", "a", RunnerState::Creating, Some(1))]);
    let plan = plan_launches(&[pool("a", 5, 0)], &q, &rs, 10, &|_| true);
    assert_eq!(
        plan,
        [Launch::ForJob {
            pool: "a".into(),
            job_id: 2
        }]
    );
}

#[test]
fn busy_runners_hold_slots_but_are_not_supply() {
    let mut q = JobQueue::default();
    q.insert(job(1, "a", 0, 0));
    let mut busy = runner("b", "a", RunnerState::Busy, None);
    busy.job_id = Some(99); // its job's `in_progress` arrived: it runs job 99
    let rs = runners(vec![busy]);
    assert!(
        plan_launches(&[pool("a", 1, 0)], &q, &rs, 10, &|_| true).is_empty(),
        "pool full"
    );
    assert!(
        plan_launches(&[pool("a", 5, 0)], &q, &rs, 1, &|_| true).is_empty(),
        "host full"
    );
    assert_eq!(
        plan_launches(&[pool("a", 2, 0)], &q, &rs, 10, &|_| true).len(),
        1
    );
}

#[test]
fn warm_pool_tops_up_min_idle_and_respects_backoff() {
    let q = JobQueue::default();
    let rs = runners(vec![runner("w", "a", RunnerState::Idle, None)]);
    assert_eq!(
        plan_launches(&[pool("a", 5, 3)], &q, &rs, 10, &|_| true),
        vec![Launch::Warm { pool: "a".into() }; 2]
    );
    let mut off = pool("a", 5, 3);
    off.backing_off = true;
    assert!(plan_launches(&[off], &q, &rs, 10, &|_| true).is_empty());
    let mut cannot = pool("a", 5, 3);
    cannot.can_warm = false;
    assert!(plan_launches(&[cannot], &q, &rs, 10, &|_| true).is_empty());
}

#[test]
fn draining_and_finished_runners_are_not_supply() {
    let mut q = JobQueue::default();
    q.insert(job(1, "a", 0, 0));
    let mut draining = runner("d", "a", RunnerState::Idle, Some(1));
    draining.draining = true;
    let rs = runners(vec![
        draining,
        runner("f", "a", RunnerState::Finished, Some(1)),
    ]);
    assert_eq!(
        plan_launches(&[pool("a", 5, 0)], &q, &rs, 10, &|_| true).len(),
        1
    );
}

#[test]
fn a_runner_busy_before_any_delivery_named_its_job_still_covers_the_job_it_was_launched_for() {
    let mut q = JobQueue::default();
    q.insert(job(1, "a", 0, 0));
    let rs = runners(vec![runner("b", "a", RunnerState::Busy, Some(1))]);
    assert!(plan_launches(&[pool("a", 5, 0)], &q, &rs, 10, &|_| true).is_empty());
}
