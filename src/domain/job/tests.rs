use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_557_600 + secs, 0).unwrap()
}

fn obs(action: JobAction) -> JobObservation {
    let started = action.rank() >= JobStatus::InProgress.rank();
    let done = action == JobStatus::Completed;
    JobObservation {
        action,
        id: 7,
        run_id: 70,
        run_attempt: 1,
        repository: "o/r".into(),
        workflow_name: Some("CI".into()),
        name: "build".into(),
        labels: vec!["self-hosted".into(), "linux".into()],
        conclusion: done.then(|| "success".into()),
        runner_id: started.then_some(42),
        runner_name: started.then(|| "runner-42".into()),
        runner_group_name: started.then(|| "Default".into()),
        created_at: Some(at(0)),
        started_at: started.then(|| at(7)),
        completed_at: done.then(|| at(67)),
    }
}

fn replay(seq: &[JobAction]) -> Job {
    let mut job = Job::from_observation(&obs(seq[0]), 5, Some("linux".into()), at(100));
    for a in &seq[1..] {
        job.apply(&obs(*a), at(100));
    }
    job
}

#[test]
fn lifecycle_in_order() {
    use JobStatus::*;
    let job = replay(&[Queued, InProgress, Completed]);
    assert_eq!(job.status, Completed);
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    assert_eq!(job.runner_name.as_deref(), Some("runner-42"));
    assert_eq!(job.wait_seconds(), Some(7.0));
    assert_eq!(job.duration_seconds(), Some(60.0));
}

#[test]
fn late_queued_is_stale_not_applied() {
    let mut job = replay(&[JobStatus::InProgress]);
    let t = job.apply(&obs(JobStatus::Queued), at(200));
    assert_eq!(
        t,
        Transition::Stale {
            status: JobStatus::InProgress,
            action: JobStatus::Queued
        }
    );
    assert_eq!(job.status, JobStatus::InProgress);
}

#[test]
fn waiting_and_queued_alternate() {
    let mut job = replay(&[JobStatus::Queued]);
    assert!(matches!(
        job.apply(&obs(JobStatus::Waiting), at(1)),
        Transition::Moved { .. }
    ));
    assert_eq!(job.status, JobStatus::Waiting);
    job.apply(&obs(JobStatus::Queued), at(2));
    assert_eq!(job.status, JobStatus::Queued);
}

#[test]
fn cancelled_while_queued_has_no_runner_and_no_wait() {
    let mut cancelled = obs(JobStatus::Completed);
    cancelled.conclusion = Some("cancelled".into());
    cancelled.runner_id = None;
    cancelled.runner_name = None;
    let mut job = replay(&[JobStatus::Queued]);
    job.apply(&cancelled, at(5));
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(job.wait_seconds(), None);
}

#[test]
fn duplicate_changes_nothing() {
    let mut job = replay(&[JobStatus::Queued, JobStatus::InProgress]);
    let before = job.clone();
    assert_eq!(
        job.apply(&obs(JobStatus::InProgress), at(999)),
        Transition::Unchanged
    );
    assert_eq!(job, before, "not even updated_at moves");
}

fn lifecycle_action() -> impl Strategy<Value = JobAction> {
    prop_oneof![
        Just(JobStatus::Queued),
        Just(JobStatus::Waiting),
        Just(JobStatus::InProgress),
        Just(JobStatus::Completed),
    ]
}

proptest! {
    /// Any order and any duplication of a job's deliveries gives the same record as the
    /// in-order lifecycle, once the terminal delivery is among them.
    #[test]
    fn any_order_with_duplicates_converges(
        extra in proptest::collection::vec(lifecycle_action(), 0..12),
        seed in any::<u64>(),
    ) {
        use rand::{SeedableRng, seq::SliceRandom};
        let mut seq = vec![JobStatus::Queued, JobStatus::InProgress, JobStatus::Completed];
        seq.extend(extra);
        seq.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let expected = replay(&[JobStatus::Queued, JobStatus::InProgress, JobStatus::Completed]);
        let got = replay(&seq);
        prop_assert_eq!(got, expected);
    }

    /// Without the terminal delivery the status is the furthest one seen, never an earlier one.
    #[test]
    fn status_never_moves_backwards(seq in proptest::collection::vec(lifecycle_action(), 1..12)) {
        let mut job = replay(&seq[..1]);
        let mut furthest = seq[0].rank();
        for a in &seq[1..] {
            job.apply(&obs(*a), at(1));
            furthest = furthest.max(a.rank());
            prop_assert_eq!(job.status.rank(), furthest);
        }
    }
}
