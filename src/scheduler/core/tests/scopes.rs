//! The full reconciliation sweeps every scope runnerhub registered at, not only those with
//! live runners (scopes.rs): a registration leaked where no runner is left is deleted.

use super::harness::{Harness, config, pool};
use super::{LINUX, minutes, secs};
use crate::scheduler::core::Effect;

fn leaked(h: &Harness) -> usize {
    h.outside
        .values()
        .filter(|o| o.registered && o.scope == "repos/acme/leaky")
        .count()
}

/// Full listings of the leaky repository so far.
fn sweeps(h: &Harness) -> usize {
    h.log
        .iter()
        .filter(|(_, e)| {
            matches!(e, Effect::ListGithubRunners { scopes, full: true }
                if scopes.iter().any(|s| s.api_path() == "repos/acme/leaky"))
        })
        .count()
}

/// A JIT registration GitHub carried out while the client timed out; its job is cancelled
/// before a retry, so no runner is left at that repository.
fn leak_and_cancel(h: &mut Harness) {
    h.leak_next_registration = true;
    h.queue_job(1, "acme/leaky", LINUX, 0);
    h.complete(1);
    assert_eq!(leaked(h), 1, "the registration exists at GitHub");
    assert!(
        h.core
            .runners()
            .values()
            .all(|r| r.scope != "repos/acme/leaky"),
        "and no record is left there"
    );
}

#[test]
fn a_registration_leaked_where_no_runner_is_left_is_deleted_at_the_next_reconcile() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(2, "acme/other", LINUX, 0); // keeps some runner alive elsewhere
    leak_and_cancel(&mut h);
    h.run_for(secs(61));
    assert_eq!(
        leaked(&h),
        0,
        "deleted by the first reconciliation after the removal"
    );
}

#[test]
fn after_a_restart_every_scope_in_the_database_is_swept() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    leak_and_cancel(&mut h);
    // Crash before the reconciliation, with nothing live: only the database knows the scope.
    h.restart();
    h.run_for(secs(1));
    assert_eq!(leaked(&h), 0);
}

#[test]
fn a_quiet_scope_is_listed_for_ten_minutes_after_a_removal_then_hourly() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    leak_and_cancel(&mut h);
    h.run_for(minutes(10));
    let early = sweeps(&h);
    assert!(
        (9..=11).contains(&early),
        "{early} listings in the first 10 minutes"
    );
    h.run_for(minutes(3 * 60));
    let later = sweeps(&h) - early;
    assert!(
        (2..=4).contains(&later),
        "{later} listings in 3 quiet hours"
    );
}
