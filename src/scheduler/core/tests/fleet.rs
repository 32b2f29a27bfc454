//! Quotas and fair share across a fleet, in virtual time (DESIGN §13): the other instances'
//! runners, as each fleet sync reads them from the database ([`Input::RunnersElsewhere`]),
//! count with this instance's own. (That two instances deciding at once cannot both take a
//! quota's last slot is the claim's business, in the database: tests/fleet_quota.rs.)

use std::time::Duration;

use super::harness::{Harness, config, pool};
use super::policy::{LINUX, fair, holding_for, launched_for, quota, reason};
use crate::config::Config;
use crate::domain::JobStatus;
use crate::scheduler::core::Input;
use crate::scheduler::core::policy::{Policy, RunnersElsewhere};
use crate::scheduler::core::wait::WaitReason;

fn elsewhere(counts: &[(&str, &str, usize)]) -> Input {
    Input::RunnersElsewhere(RunnersElsewhere::new(
        counts
            .iter()
            .map(|(pool, repo, n)| (pool.to_string(), repo.to_string(), *n)),
    ))
}

/// This instance's runners holding a slot for `acme/*`.
fn acme_here(h: &Harness) -> usize {
    holding_for(h, &["acme/app0", "acme/app1", "acme/app2"])
}

#[test]
fn a_quota_counts_the_other_instances_runners_in_every_pool() {
    let mut c = config(vec![pool("linux", LINUX, 6)], 10);
    c.quotas = vec![quota(&["acme/*"], 3)];
    let mut h = Harness::new(c);
    // Elsewhere: one acme runner of this pool, one of a pool this instance has not (quotas
    // count all pools), and others' runners the quota does not count.
    h.feed(elsewhere(&[
        ("linux", "acme/app", 1),
        ("gpu", "acme/ml", 1),
        ("linux", "other/web", 4),
    ]));
    for id in 1..=3 {
        h.queue_job(id, "acme/app", LINUX, 0);
    }
    assert_eq!(launched_for(&h), [1], "3 - 2 elsewhere: one slot left");
    assert_eq!(
        reason(&h, 2),
        (WaitReason::Quota, "quota acme/* 3/3".to_owned())
    );
    // Those runners finish: the next fleet sync says so, and the rest launch.
    h.feed(elsewhere(&[("linux", "other/web", 4)]));
    assert_eq!(launched_for(&h), [1, 2, 3]);
}

#[test]
fn over_hours_the_fleet_never_exceeds_a_quota_and_every_job_runs() {
    // The other instances' acme runners come and go (0 to 4 of a quota of 4); this one has
    // room for 6 and a queue of 12 acme jobs of 3 minutes each.
    let mut c = config(vec![pool("linux", LINUX, 6)], 6);
    c.quotas = vec![quota(&["acme/*"], 4)];
    let mut h = Harness::new(c);
    let others = [4, 3, 1, 0, 2, 4, 0, 1, 3, 0, 0, 0];
    let mut there = others[0];
    h.feed(elsewhere(&[("linux", "acme/app0", there)]));
    for id in 1..=12 {
        h.queue_job(id, &format!("acme/app{}", id % 3), LINUX, 0);
        h.run_for.insert(id, Duration::from_secs(180));
    }
    let mut most_here = 0;
    for (step, wanted) in others.iter().cycle().take(120).enumerate() {
        // Each sync reads the others' runners: theirs end when they will, and new ones take
        // only what was free when they claimed, as the database's check makes them.
        there = if *wanted <= there {
            *wanted
        } else {
            (*wanted).min(4 - acme_here(&h).min(4))
        };
        h.feed(elsewhere(&[("linux", "acme/app0", there)]));
        for _ in 0..6 {
            assert!(
                acme_here(&h) + there <= 4,
                "step {step}: {} here + {there} elsewhere over a quota of 4",
                acme_here(&h)
            );
            most_here = most_here.max(acme_here(&h));
            h.run_for(Duration::from_secs(5));
        }
    }
    assert!(
        (1..=12).all(|id| h.jobs[&id].status == JobStatus::Completed),
        "every job ran in the end"
    );
    assert_eq!(
        most_here, 4,
        "with no one elsewhere this one uses the whole quota"
    );
}

#[test]
fn fair_share_counts_the_other_instances_runners_of_the_pool() {
    // Alone, the older job goes first; with three runners of its repository elsewhere in the
    // pool, the other repository's job does.
    let queue_two = |counts: &[(&str, &str, usize)]| {
        let mut h = Harness::new(fair(config(vec![pool("linux", LINUX, 1)], 10)));
        h.feed(elsewhere(counts));
        h.feed(Input::LaunchesPaused(true));
        h.queue_job(1, "big/monorepo", LINUX, 0);
        h.run_for(Duration::from_secs(1));
        h.queue_job(2, "small/tool", LINUX, 0);
        h
    };
    let unpaused = |mut h: Harness| {
        h.feed(Input::LaunchesPaused(false));
        launched_for(&h)
    };
    assert_eq!(unpaused(queue_two(&[])), [1]);
    let h = queue_two(&[("linux", "big/monorepo", 3)]);
    assert_eq!(
        reason(&h, 1),
        (
            WaitReason::FairShare,
            "fair share: big/monorepo has 3 runners of pool linux, small/tool 0".to_owned()
        )
    );
    assert_eq!(unpaused(h), [2]);
    // Runners of another pool are not this pool's share.
    assert_eq!(unpaused(queue_two(&[("gpu", "big/monorepo", 3)])), [1]);
}

#[test]
fn a_claim_is_refused_when_the_fleet_fills_a_quota_of_its_repository() {
    let policy = Policy::new(&Config {
        quotas: vec![quota(&["acme/*"], 2), quota(&["acme/api", "acme/web"], 1)],
        ..Config::default()
    });
    let fleet = |counts: &[(&str, usize)]| {
        counts
            .iter()
            .map(|(repo, n)| (repo.to_string(), *n))
            .collect()
    };
    assert_eq!(
        policy.refuses_claim("acme/lib", &fleet(&[("acme/web", 1)])),
        None
    );
    assert_eq!(
        policy.refuses_claim("acme/api", &fleet(&[("acme/web", 1)])),
        Some("quota acme/api, acme/web 1/1".to_owned())
    );
    assert_eq!(
        policy.refuses_claim("acme/lib", &fleet(&[("acme/lib", 1), ("acme/x", 1)])),
        Some("quota acme/* 2/2".to_owned())
    );
    assert_eq!(
        policy.refuses_claim("other/web", &fleet(&[("other/web", 99)])),
        None,
        "no quota counts it"
    );
    assert_eq!(
        policy.quota_names_of("acme/api"),
        ["acme/*", "acme/api, acme/web"],
        "the locks, in one order for every instance"
    );
}
