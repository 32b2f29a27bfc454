//! When a pool counts as stalled (status.rs): queued jobs it cannot launch for, past
//! `scheduling.stall_after`, for a cause other than capacity; in virtual time.

use std::time::Duration;

use super::harness::{Harness, config, pool, t0};
use super::{LINUX, minutes, secs};
use crate::scheduler::core::status::Blocked;

/// `scheduling.stall_after`'s default.
const STALL_AFTER: Duration = Duration::from_secs(5 * 60);

fn stalled(h: &Harness) -> Option<Blocked> {
    h.core.pool_statuses()[0].stalled.clone()
}

#[test]
fn a_missing_image_stalls_the_pool_after_the_threshold_and_it_recovers() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 3)], 10));
    h.image_missing = true;
    h.queue_job(1, "acme/a", LINUX, 0);
    h.queue_job(2, "acme/b", LINUX, 0);
    h.run_for(STALL_AFTER - secs(10));
    assert_eq!(stalled(&h), None, "not yet past the threshold");
    h.run_for(secs(20));
    let blocked = stalled(&h).expect("stalled after 5 minutes of failing launches");
    assert_eq!(blocked.since, t0(), "since the first failure");
    assert_eq!(blocked.jobs, 2);
    assert!(
        blocked.reason.contains("image not found"),
        "{}",
        blocked.reason
    );
    h.image_missing = false;
    h.run_for(minutes(2));
    assert!(h.core.queue().is_empty());
    assert_eq!(stalled(&h), None, "recovered once a runner came online");
}

#[test]
fn a_refused_repository_stalls_its_pool_while_the_others_are_served() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.refused_scopes.insert("repos/acme/refused".into());
    h.queue_job(1, "acme/refused", LINUX, 0);
    h.run_for(secs(1));
    h.queue_job(2, "acme/other", LINUX, 0);
    h.run_for(minutes(6));
    assert_eq!(h.jobs[&2].status, crate::domain::JobStatus::InProgress);
    let blocked = stalled(&h).expect("the refused repository's job cannot be launched");
    assert_eq!(blocked.jobs, 1, "only the refused repository's job");
    assert!(
        blocked.reason.contains("repos/acme/refused"),
        "{}",
        blocked.reason
    );
    assert_eq!(h.core.pool_statuses()[0].consecutive_failures, 0);
    // GitHub takes the registration again: the next attempt succeeds and the stall clears.
    h.refused_scopes.clear();
    h.run_for(minutes(2));
    assert_eq!(h.jobs[&1].status, crate::domain::JobStatus::InProgress);
    assert_eq!(stalled(&h), None);
}

#[test]
fn the_threshold_is_scheduling_stall_after() {
    let mut cfg = config(vec![pool("linux", LINUX, 2)], 10);
    cfg.scheduling.stall_after = secs(20);
    let mut h = Harness::new(cfg);
    h.refused_scopes.insert("repos/acme/refused".into());
    h.queue_job(1, "acme/refused", LINUX, 0);
    h.run_for(secs(15));
    assert_eq!(stalled(&h), None);
    h.run_for(secs(10));
    let blocked = stalled(&h).expect("stalled 20 s after the first refusal");
    assert_eq!(blocked.since, t0());
}

#[test]
fn a_full_pool_is_not_stalled_however_long_its_queue_waits() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    for id in 1..=4 {
        h.queue_job(id, "acme/app", LINUX, 0);
    }
    h.run_for(minutes(60));
    assert_eq!(
        h.core.queue().len(),
        3,
        "one runs, three wait for the one slot"
    );
    assert_eq!(stalled(&h), None);
    // And the check asked for no ticks of its own while nothing was blocked.
    assert_eq!(h.core.next_stall_check(), None);
}
