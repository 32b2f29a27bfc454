//! The core driven through hours of virtual time against a model of GitHub and Docker
//! ([`harness`]); each test runs in milliseconds, with no sleeps.

mod fleet;
mod harness;
mod policy;
mod property;
mod purity;
mod refusals;
mod scopes;
mod stalls;

use std::time::Duration;

use super::Effect;
use crate::domain::RunnerState;
use harness::{Harness, config, pool};

const LINUX: &[&str] = &["self-hosted", "linux"];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[test]
fn a_job_gets_a_runner_that_comes_online_takes_it_and_is_removed_after() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    let launches = h.launches();
    assert_eq!(launches.len(), 1);
    let runner = launches[0].1.clone();
    assert_eq!(
        (runner.launched_for, runner.state),
        (Some(1), RunnerState::Requested)
    );
    assert_eq!(runner.labels, LINUX, "registered with the job's labels");
    h.run_for(secs(10));
    // Online after 10 s, seen at the next poll, and GitHub handed it the job.
    assert_eq!(h.runner_state(&runner.id), Some(RunnerState::Busy));
    assert!(
        h.log
            .iter()
            .any(|(_, e)| matches!(e, Effect::JobWaited { seconds, .. } if *seconds == 10.0))
    );
    h.complete(1);
    assert_eq!(h.runner_state(&runner.id), None, "torn down and forgotten");
    assert_eq!(h.saved_runners[&runner.id].state, RunnerState::Removed);
    assert!(h.core.queue().is_empty());
    assert_eq!(
        h.launches().len(),
        1,
        "nothing launched that demand did not ask for"
    );
}

#[test]
fn a_runner_never_online_fails_at_its_bootstrap_timeout_and_is_replaced_with_growing_backoff() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.boot = None;
    h.queue_job(1, "acme/app", LINUX, 0);
    h.run_for(minutes(8 * 60));
    let launches = h.launches();
    // Each runner fails 2 min after its launch; the next waits out the backoff after that.
    let gaps: Vec<i64> = launches
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).num_seconds() - 120)
        .collect();
    assert_eq!(&gaps[..8], [1, 2, 4, 8, 16, 32, 60, 60], "{gaps:?}");
    assert!(gaps[8..].iter().all(|g| *g == 60));
    let failed = h
        .saved_runners
        .values()
        .filter(|r| r.failure_reason.as_deref() == Some("not online within bootstrap_timeout (2m)"))
        .count();
    assert_eq!(failed, launches.len() - 1);
    // Every failed runner was torn down: only the current one is left.
    assert_eq!(h.core.runners().len(), 1);
    assert!(h.outside.values().filter(|o| o.container.is_some()).count() <= 1);
}

#[test]
fn a_repository_github_refuses_backs_off_alone_and_the_pool_serves_the_others() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.refused_scopes.insert("repos/acme/refused".into());
    h.queue_job(1, "acme/refused", LINUX, 0);
    h.run_for(secs(1));
    h.queue_job(2, "acme/other", LINUX, 0);
    h.run_for(secs(30));
    let state = |id: i64| h.jobs[&id].status;
    assert_eq!(
        state(2),
        crate::domain::JobStatus::InProgress,
        "the other repository is served"
    );
    assert_eq!(state(1), crate::domain::JobStatus::Queued);
    let refused = h
        .launches()
        .iter()
        .filter(|(_, r)| r.scope == "repos/acme/refused")
        .count();
    // At 0 s, then after the 1 s pause; job 2 has held the one slot since.
    assert_eq!(refused, 2);
    h.complete(2);
    h.run_for(secs(60));
    let refused_later = h
        .launches()
        .iter()
        .filter(|(_, r)| r.scope == "repos/acme/refused")
        .count();
    // Pauses of 2, 4, 8, 16, 32 s in the next minute: a handful of attempts, not sixty.
    let more = refused_later - refused;
    assert!((3..=6).contains(&more), "{more} attempts in a minute");
    let status = &h.core.pool_statuses()[0];
    assert_eq!(status.consecutive_failures, 0, "the pool itself is fine");
}

#[test]
fn a_missing_image_pauses_the_whole_pool() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 3)], 10));
    h.image_missing = true;
    h.queue_job(1, "acme/a", LINUX, 0);
    h.queue_job(2, "acme/b", LINUX, 0);
    h.run_for(minutes(5));
    assert!(h.core.pool_statuses()[0].consecutive_failures >= 6);
    let attempts = h.launches().len();
    // Two at first, then one pass per backoff: 1+2+4+8+16+32+60+60+60+60 s ≈ 5 min.
    assert!((6..=24).contains(&attempts), "{attempts} attempts");
    h.image_missing = false;
    h.run_for(minutes(2));
    assert!(h.core.queue().is_empty(), "served once the image is there");
    assert_eq!(h.core.pool_statuses()[0].consecutive_failures, 0);
}

#[test]
fn a_warm_pool_is_refilled_through_hours_of_idle_timeouts() {
    let mut linux = pool("linux", LINUX, 3);
    linux.min_idle = 1;
    linux.repository = Some("acme/app".into());
    let mut h = Harness::new(config(vec![linux], 10));
    h.run_for(minutes(3 * 60));
    // A warm runner lives 10 s boot + 10 min idle (seen at the next poll), then is replaced.
    let launches = h.launches();
    assert!((16..=18).contains(&launches.len()), "{}", launches.len());
    assert!(
        launches
            .iter()
            .all(|(_, r)| r.launched_for.is_none() && r.scope == "repos/acme/app")
    );
    let supply = h
        .core
        .runners()
        .values()
        .filter(|r| r.state.is_supply())
        .count();
    assert_eq!(supply, 1, "one warm runner at any time");
    // Ticks only at deadlines: polls while starting, timeouts, reconciles — not every second.
    assert!(h.ticks < 3 * 60 * 4, "{} ticks in 3 h", h.ticks);
}

#[test]
fn a_drained_idle_runner_goes_at_once_and_a_busy_one_after_its_job() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    h.queue_job(2, "acme/app", LINUX, 0);
    h.run_for(secs(10));
    let busy: Vec<String> = h.core.runners().keys().cloned().collect();
    assert_eq!(busy.len(), 2);
    h.feed(super::Input::Drain {
        runner_id: busy[0].clone(),
    });
    assert_eq!(
        h.runner_state(&busy[0]),
        Some(RunnerState::Busy),
        "its job goes on"
    );
    let job = h.outside[&busy[0]].busy_with.unwrap();
    h.complete(job);
    assert_eq!(h.runner_state(&busy[0]), None);
    // A warm-less pool with no queue: a drained idle runner is torn down at once.
    h.queue_job(3, "acme/app", LINUX, 0);
    h.run_for(secs(10));
    let new = h.launches().last().unwrap().1.id.clone();
    h.complete(3);
    assert_eq!(h.runner_state(&new), None);
}

#[test]
fn a_push_prewarms_one_runner_where_none_is_ready() {
    let mut linux = pool("linux", LINUX, 3);
    linux.prewarm_on = vec!["push".into()];
    linux.repository = Some("acme/app".into());
    let mut h = Harness::new(config(vec![linux, pool("other", &["gpu"], 3)], 10));
    h.feed(super::Input::Prewarm {
        event: "push".into(),
    });
    h.feed(super::Input::Prewarm {
        event: "push".into(),
    });
    assert_eq!(h.launches().len(), 1, "one warm runner, not one per push");
    assert_eq!(h.launches()[0].1.pool, "linux");
    h.run_for(minutes(11));
    assert!(
        h.core.runners().is_empty(),
        "idle timeout, no refill without min_idle"
    );
    h.feed(super::Input::Prewarm {
        event: "pull_request".into(),
    });
    assert_eq!(h.launches().len(), 1, "only the events the pool names");
}

#[test]
fn aging_lets_an_old_job_overtake_a_newer_better_one() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 1)], 10));
    h.queue_job(100, "acme/app", LINUX, 0);
    h.run_for(secs(10)); // the one slot is busy
    h.queue_job(1, "acme/app", LINUX, 0);
    h.run_for(minutes(120));
    h.queue_job(2, "acme/app", LINUX, 100);
    h.complete(100);
    // Job 1 has 120 points of aging over job 2's +100: it gets the freed slot.
    assert_eq!(h.launches().last().unwrap().1.launched_for, Some(1));
}

#[test]
fn a_restart_adopts_a_runner_whose_launch_it_interrupted_and_launches_nothing_twice() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    let runner = h.launches()[0].1.clone();
    // Killed after the container started but before the launch result was saved: the
    // database still says `requested`.
    h.saved_runners.insert(runner.id.clone(), runner.clone());
    h.run_for(secs(12)); // meanwhile the runner came online and took the job
    assert!(h.outside[&runner.id].busy_with.is_some());
    h.saved_runners.insert(runner.id.clone(), runner.clone());
    h.restart();
    h.run_for(secs(5));
    assert_eq!(h.runner_state(&runner.id), Some(RunnerState::Busy));
    assert_eq!(
        h.outside[&runner.id].container,
        Some(true),
        "its container was not killed"
    );
    assert_eq!(h.launches().len(), 1, "no second runner for the job");
    assert_eq!(h.core.runner(&runner.id).unwrap().github_runner_id, Some(1));
}

#[test]
fn a_restart_fails_and_replaces_a_launch_that_never_got_a_container() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    let runner = h.launches()[0].1.clone();
    h.outside.remove(&runner.id); // died before anything existed outside
    h.saved_runners.insert(runner.id.clone(), runner.clone());
    h.restart();
    assert_eq!(h.saved_runners[&runner.id].state, RunnerState::Removed);
    assert_eq!(
        h.saved_runners[&runner.id].failure_reason.as_deref(),
        Some("launch interrupted by a restart")
    );
    assert_eq!(h.launches().len(), 2, "replaced");
    assert_eq!(h.launches()[1].1.launched_for, Some(1));
}

#[test]
fn a_container_that_crashes_before_its_job_is_replaced() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.boot = Some(secs(30));
    h.queue_job(1, "acme/app", LINUX, 0);
    let first = h.launches()[0].1.id.clone();
    h.run_for(secs(5));
    h.crash(&first);
    assert_eq!(h.saved_runners[&first].state, RunnerState::Removed);
    h.run_for(secs(2)); // after the 1 s backoff
    assert_eq!(h.launches().len(), 2);
    assert_eq!(h.launches()[1].1.launched_for, Some(1));
}

#[test]
fn the_next_deadline_is_the_earliest_thing_due() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    // Nothing starting: the next reconciliation, a minute after the one at start.
    assert_eq!(h.core.next_deadline(h.now), Some(h.now + minutes(1)));
    h.queue_job(1, "acme/app", LINUX, 0);
    // A runner starting: the first poll, a poll interval after the launch.
    assert_eq!(h.core.next_deadline(h.now), Some(h.now + secs(1)));
}

#[test]
fn a_poll_that_sees_the_runner_busy_before_the_webhook_launches_no_second_runner() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 3)], 10));
    h.hold_deliveries = true;
    // Online between two polls, and handed the job at once: the next poll sees it busy.
    h.boot = Some(Duration::from_millis(10_500));
    h.queue_job(1, "acme/app", LINUX, 0);
    h.run_for(secs(20));
    let runner = h.launches()[0].1.id.clone();
    assert_eq!(
        h.runner_state(&runner),
        Some(RunnerState::Busy),
        "seen busy by a poll"
    );
    assert_eq!(
        h.launches().len(),
        1,
        "the job is still queued, but its runner runs it"
    );
    for job in std::mem::take(&mut h.held) {
        h.feed(super::Input::Job(Box::new(job)));
    }
    assert_eq!(
        h.saved_runners[&runner].job_id,
        Some(1),
        "the link is saved"
    );
    assert!(h.core.queue().is_empty());
}

#[test]
fn with_organization_registration_each_job_registers_with_its_own_owner() {
    let mut cfg = config(vec![pool("linux", LINUX, 4)], 10);
    cfg.github.registration = crate::config::Registration::Organization;
    cfg.github.organization = None;
    let mut h = Harness::new(cfg);
    h.queue_job(1, "acme/app", LINUX, 0);
    h.queue_job(2, "globex/site", LINUX, 0);
    let scopes: Vec<(Option<i64>, String)> = h
        .launches()
        .into_iter()
        .map(|(_, r)| (r.launched_for, r.scope))
        .collect();
    assert_eq!(
        scopes,
        [
            (Some(1), "orgs/acme".to_owned()),
            (Some(2), "orgs/globex".to_owned())
        ]
    );
    h.run_for(secs(30));
    assert_eq!(
        h.core.queue().len(),
        0,
        "both taken by their own org's runner"
    );
}

#[test]
fn a_job_another_fleet_instance_claimed_gets_no_runner_here() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 4)], 10));
    h.feed(super::Input::LaunchesPaused(true));
    h.queue_job(1, "acme/app", LINUX, 0);
    h.queue_job(2, "acme/app", LINUX, 0);
    assert!(h.launches().is_empty(), "nothing launches while paused");
    h.feed(super::Input::ClaimedElsewhere { job_id: 1 });
    h.feed(super::Input::LaunchesPaused(false));
    let launched: Vec<Option<i64>> = h.launches().iter().map(|(_, r)| r.launched_for).collect();
    assert_eq!(
        launched,
        [Some(2)],
        "only the job no other instance claimed"
    );
    // GitHub may hand that runner job 1 (it knows nothing of claims): job 2 then gets another
    // runner here, but job 1 never does.
    h.run_for(minutes(10));
    assert!(
        h.launches().iter().all(|(_, r)| r.launched_for != Some(1)),
        "nothing launched for the claimed job"
    );
}
