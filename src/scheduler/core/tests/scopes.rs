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

/// Two deployments on one organization: the reconciliation deletes leftovers under our
/// prefix, asks about old-style `runnerhub-…` names (deleted only if our database recorded
/// them, see effects.rs), and never touches another deployment's.
#[test]
fn the_reconciliation_deletes_only_registrations_named_under_our_prefix() {
    let mut h = Harness::new(config(vec![pool("linux", LINUX, 2)], 10));
    h.queue_job(1, "acme/app", LINUX, 0);
    let ours = h.core.config().runner_name_prefix();
    let launched = &h.launches()[0].1;
    assert!(
        launched.name.starts_with(&format!("{ours}-linux-")),
        "{}",
        launched.name
    );
    let plant = |h: &mut Harness, name: String| {
        h.outside.insert(
            name.clone(),
            super::harness::Outside {
                name,
                scope: "repos/acme/app".into(),
                labels: crate::domain::LabelSet::new(LINUX),
                github_id: 900 + h.outside.len() as i64,
                launched_at: h.now,
                registered: true,
                container: None,
                busy_with: None,
            },
        );
    };
    plant(&mut h, format!("{ours}-linux-ghost000"));
    plant(&mut h, "runnerhub-linux-ghost001".into());
    plant(&mut h, "deploy2-linux-ghost002".into());
    plant(&mut h, format!("{ours}x-linux-ghost003"));
    h.run_for(secs(61));
    let mut asked: Vec<String> = h
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::RemoveRegistration { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    asked.sort();
    asked.dedup();
    let mut expected = vec![
        format!("{ours}-linux-ghost000"),
        "runnerhub-linux-ghost001".to_owned(),
    ];
    if ours.starts_with("runnerhub-") {
        // `<ours>x-…` looks old-style too: effects.rs deletes it only if recorded.
        expected.push(format!("{ours}x-linux-ghost003"));
    }
    expected.sort();
    assert_eq!(asked, expected);
}
