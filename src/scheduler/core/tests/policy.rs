//! Scheduling policy in virtual time (DESIGN §13): quotas, fair share, and why each queued
//! job waits.

use std::time::Duration;

use super::harness::{Harness, config, pool};
use crate::config::{Config, FairShare, QuotaConfig};
use crate::domain::{JobId, JobStatus, Runner};
use crate::scheduler::core::Input;
use crate::scheduler::core::wait::WaitReason;

pub(super) const LINUX: &[&str] = &["self-hosted", "linux"];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn quota(repositories: &[&str], max_runners: u32) -> QuotaConfig {
    QuotaConfig {
        repositories: repositories.iter().map(|r| r.to_string()).collect(),
        max_runners,
    }
}

pub(super) fn fair(mut config: Config) -> Config {
    config.scheduling.fair_share = FairShare::Repository;
    config
}

/// Runners holding a slot whose registration scope is one of `repos` (repository
/// registration: a runner only ever runs jobs of the repository it registered with).
pub(super) fn holding_for(h: &Harness, repos: &[&str]) -> usize {
    h.core
        .runners()
        .values()
        .filter(|r| r.state.holds_slot())
        .filter(|r| repos.iter().any(|repo| r.scope == format!("repos/{repo}")))
        .count()
}

pub(super) fn reason(h: &Harness, job: JobId) -> (WaitReason, String) {
    let info = h.core.wait_reasons(h.now)[&job].clone();
    (info.reason, info.detail)
}

pub(super) fn launched_for(h: &Harness) -> Vec<JobId> {
    h.launches()
        .iter()
        .filter_map(|(_, r): &(_, Runner)| r.launched_for)
        .collect()
}

#[test]
fn a_quota_is_never_exceeded_and_the_rest_of_the_pool_stays_usable() {
    let mut c = config(vec![pool("linux", LINUX, 6)], 10);
    c.quotas = vec![quota(&["acme/*"], 2)];
    let mut h = Harness::new(c);
    for id in 1..=5 {
        h.queue_job(id, &format!("acme/app{}", id % 2), LINUX, 0);
    }
    h.queue_job(10, "other/web", LINUX, 0);
    h.queue_job(11, "other/web", LINUX, 0);
    assert_eq!(launched_for(&h), [1, 2, 10, 11]);
    assert_eq!(
        reason(&h, 3),
        (WaitReason::Quota, "quota acme/* 2/2".to_owned())
    );
    // Jobs run and end one by one: acme never holds more than its 2 runners.
    for id in 1..=5 {
        h.run_for.insert(id, secs(60));
    }
    for _ in 0..40 {
        h.run_for(secs(15));
        assert!(holding_for(&h, &["acme/app0", "acme/app1"]) <= 2);
    }
    let done = |id| h.jobs[&id].status == JobStatus::Completed;
    assert!((1..=5).all(done), "every acme job ran in the end");
}

#[test]
fn several_quotas_must_all_have_room() {
    let mut c = config(vec![pool("linux", LINUX, 6)], 10);
    c.quotas = vec![quota(&["acme/*"], 3), quota(&["acme/api", "acme/web"], 1)];
    let mut h = Harness::new(c);
    h.queue_job(1, "acme/api", LINUX, 0);
    h.queue_job(2, "acme/web", LINUX, 0);
    h.queue_job(3, "acme/lib", LINUX, 0);
    assert_eq!(launched_for(&h), [1, 3]);
    assert_eq!(
        reason(&h, 2),
        (WaitReason::Quota, "quota acme/api, acme/web 1/1".to_owned())
    );
}

/// Twenty jobs of one repository fill a pool of two; a lone job of another repository arrives.
fn long_queue_then_a_lone_job(fair_share: bool) -> (Harness, Vec<JobId>) {
    let c = config(vec![pool("linux", LINUX, 2)], 10);
    let mut h = Harness::new(if fair_share { fair(c) } else { c });
    for id in 1..=20 {
        h.queue_job(id, "big/monorepo", LINUX, 0);
        h.run_for(secs(1));
    }
    h.run_for(secs(30));
    h.queue_job(100, "small/tool", LINUX, 0);
    h.complete(1);
    h.run_for(secs(30));
    h.complete(2);
    h.run_for(secs(30));
    let after: Vec<JobId> = launched_for(&h).into_iter().skip(2).collect();
    (h, after)
}

#[test]
fn fair_share_lets_a_lone_job_start_within_the_next_free_slots() {
    let (h, next) = long_queue_then_a_lone_job(true);
    assert_eq!(
        next[0], 100,
        "the first free slot goes to the lone job: {next:?}"
    );
    assert_eq!(h.jobs[&100].status, JobStatus::InProgress);
    // Without fair share the queue's order is priority, aging, age: the lone job is last.
    let (h, next) = long_queue_then_a_lone_job(false);
    assert_eq!(next, [3, 4]);
    assert_eq!(h.jobs[&100].status, JobStatus::Queued);
}

#[test]
fn fair_share_keeps_priority_first_and_aging_prevents_starvation() {
    let mut h = Harness::new(fair(config(vec![pool("linux", LINUX, 1)], 10)));
    h.queue_job(1, "big/monorepo", LINUX, 0);
    h.run_for(secs(30));
    h.queue_job(2, "big/monorepo", LINUX, 100);
    h.queue_job(3, "small/tool", LINUX, 0);
    h.complete(1);
    h.run_for(secs(30));
    assert_eq!(
        launched_for(&h)[1],
        2,
        "a higher rule score still goes first, whatever the repository"
    );
    // A score-0 job queued long before a stream of score-10 jobs ages past them (1 point a
    // minute), and then its tier is served.
    let mut h = Harness::new(fair(config(vec![pool("linux", LINUX, 1)], 10)));
    h.queue_job(1, "big/monorepo", LINUX, 0);
    h.run_for(secs(30));
    h.queue_job(2, "small/tool", LINUX, 0);
    h.run_for(Duration::from_secs(20 * 60));
    for id in 3..=6 {
        h.queue_job(id, "big/monorepo", LINUX, 10);
    }
    h.complete(1);
    h.run_for(secs(30));
    assert_eq!(launched_for(&h)[1], 2);
}

#[test]
fn each_wait_reason_in_its_state() {
    // pool_full, fair_share and runner_starting.
    let mut h = Harness::new(fair(config(vec![pool("linux", LINUX, 2)], 10)));
    for id in 1..=4 {
        h.queue_job(id, "big/monorepo", LINUX, 0);
    }
    assert_eq!(reason(&h, 1).0, WaitReason::RunnerStarting);
    assert!(
        reason(&h, 1).1.starts_with(&format!(
            "runner {}-linux-",
            h.core.config().runner_name_prefix()
        )),
        "{:?}",
        reason(&h, 1)
    );
    assert_eq!(
        reason(&h, 3),
        (
            WaitReason::PoolFull,
            "pool linux full: 2/2 runners".to_owned()
        )
    );
    h.run_for(secs(30));
    h.queue_job(9, "small/tool", LINUX, 0);
    assert_eq!(reason(&h, 9).0, WaitReason::PoolFull);
    let (why, detail) = reason(&h, 3);
    assert_eq!(why, WaitReason::FairShare);
    assert_eq!(
        detail,
        "fair share: big/monorepo has 2 runners of pool linux, small/tool 0"
    );

    // host_full: the pool has room, the host has not.
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 5)], 1));
    h.queue_job(1, "acme/app", LINUX, 0);
    h.queue_job(2, "acme/app", LINUX, 0);
    assert_eq!(
        reason(&h, 2),
        (WaitReason::HostFull, "host full: 1/1 runners".to_owned())
    );

    // launch_backoff, with what failed.
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 5)], 10));
    h.image_missing = true;
    h.queue_job(1, "acme/app", LINUX, 0);
    assert_eq!(
        reason(&h, 1),
        (
            WaitReason::LaunchBackoff,
            "launch backoff after: image not found".to_owned()
        )
    );

    // launch_backoff at one repository's scope: the others' jobs go on.
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 5)], 10));
    h.refused_scopes.insert("repos/acme/refused".into());
    h.queue_job(1, "acme/refused", LINUX, 0);
    h.queue_job(2, "acme/fine", LINUX, 0);
    assert_eq!(
        reason(&h, 1),
        (
            WaitReason::LaunchBackoff,
            "launch backoff after: JIT registration refused: 403".to_owned()
        )
    );
    assert_eq!(reason(&h, 2).0, WaitReason::RunnerStarting);

    // waiting_approval: no runner is launched for it until it is queued again.
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 5)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    h.queue_job(2, "acme/app", LINUX, 0);
    let launches = h.launches().len();
    let mut job = h.jobs[&2].clone();
    job.id = 3;
    job.status = JobStatus::Waiting;
    h.feed(Input::Job(Box::new(job.clone())));
    assert_eq!(reason(&h, 3).0, WaitReason::WaitingApproval);
    assert_eq!(
        h.launches().len(),
        launches,
        "no runner for a job awaiting approval"
    );
    job.status = JobStatus::Queued;
    h.feed(Input::Job(Box::new(job)));
    assert_eq!(h.launches().len(), launches + 1, "approved: a runner");
}
