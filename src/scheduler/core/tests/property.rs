//! Random interleavings of deliveries, outcomes, faults, restarts and time: limits are never
//! exceeded, no runner is launched that demand did not ask for, no job gets two runners, and
//! once the faults stop every queued job gets a runner and runs.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use super::harness::{Harness, config, pool};
use crate::domain::{JobStatus, RunnerState};
use crate::scheduler::core::{Core, Input};

const LINUX: &[&str] = &["self-hosted", "linux"];
const GPU: &[&str] = &["self-hosted", "gpu"];
const REPOS: [&str; 3] = ["acme/a", "acme/b", "acme/c"];

#[derive(Debug, Clone)]
enum Op {
    Queue {
        repo: usize,
        gpu: bool,
        priority: i64,
    },
    Complete {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Crash {
        pick: usize,
    },
    Drain {
        pick: usize,
    },
    Faults {
        image_missing: bool,
        refuse_a: bool,
        never_online: bool,
    },
    Advance {
        seconds: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, any::<bool>(), 0..3i64).prop_map(|(repo, gpu, p)| Op::Queue { repo, gpu, priority: p * 50 }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Crash { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Drain { pick }),
        1 => (prop::bool::weighted(0.2), prop::bool::weighted(0.3), prop::bool::weighted(0.1))
            .prop_map(|(image_missing, refuse_a, never_online)| Op::Faults { image_missing, refuse_a, never_online }),
        4 => (0..200u64).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Restart),
    ]
}

fn pick<T: Clone>(items: &[T], n: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[n % items.len()].clone())
}

/// Every launch is for a queued job that no runner on the way already covers (the pools have
/// no warm runners, so demand is all there is).
fn check_launch(core: &Core, runner: &crate::domain::Runner, violations: &RefCell<Vec<String>>) {
    let Some(job) = runner.launched_for else {
        violations
            .borrow_mut()
            .push(format!("warm launch {} with min_idle 0", runner.name));
        return;
    };
    if core.queue().get(job).is_none() {
        violations
            .borrow_mut()
            .push(format!("launch for job {job}, which is not queued"));
    }
    let covering = core
        .runners()
        .values()
        .filter(|r| r.id != runner.id && r.launched_for == Some(job))
        .filter(|r| r.state.is_supply() && !r.draining)
        .count();
    if covering > 0 {
        violations
            .borrow_mut()
            .push(format!("second runner on the way for job {job}"));
    }
}

/// The quota of the policy runs: acme/a and acme/b share one runner.
const QUOTA_REPOS: [&str; 2] = ["acme/a", "acme/b"];
const QUOTA_MAX: usize = 1;

fn check_limits(h: &Harness, policy: bool) -> Result<(), TestCaseError> {
    let held = |pool: &str| {
        h.core
            .runners()
            .values()
            .filter(|r| r.pool == pool && r.state.holds_slot())
            .count()
    };
    prop_assert!(held("linux") <= 2, "linux holds {}", held("linux"));
    prop_assert!(held("gpu") <= 1, "gpu holds {}", held("gpu"));
    prop_assert!(held("linux") + held("gpu") <= 3, "host limit");
    if policy {
        // Repository registration: a runner only runs jobs of the repository it registered
        // with, so its scope says which repository it counts for.
        let quota_held = h
            .core
            .runners()
            .values()
            .filter(|r| r.state.holds_slot())
            .filter(|r| QUOTA_REPOS.iter().any(|q| r.scope == format!("repos/{q}")))
            .count();
        prop_assert!(
            quota_held <= QUOTA_MAX,
            "quota exceeded: {quota_held} runners"
        );
    }
    // No job is run by two runners.
    let mut running = HashSet::new();
    for o in h.outside.values() {
        if let Some(job) = o.busy_with {
            prop_assert!(running.insert(job), "job {job} on two runners");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_demand_rules_and_every_job_is_served_in_the_end(
        ops in prop::collection::vec(op(), 1..80),
        policy in any::<bool>(),
    ) {
        let mut c = config(vec![pool("linux", LINUX, 2), pool("gpu", GPU, 1)], 3);
        if policy {
            // Fair share and a quota: limits and liveness hold all the same.
            c.scheduling.fair_share = crate::config::FairShare::Repository;
            c.quotas = vec![crate::config::QuotaConfig {
                repositories: QUOTA_REPOS.iter().map(|r| r.to_string()).collect(),
                max_runners: QUOTA_MAX as u32,
            }];
        }
        let mut h = Harness::new(c);
        let violations = Rc::new(RefCell::new(Vec::new()));
        let seen = violations.clone();
        h.on_launch = Some(Box::new(move |core, runner| check_launch(core, runner, &seen)));
        let mut next_job = 1;
        for op in ops {
            match op {
                Op::Queue { repo, gpu, priority } => {
                    h.queue_job(next_job, REPOS[repo], if gpu { GPU } else { LINUX }, priority);
                    next_job += 1;
                }
                Op::Complete { pick: n } => {
                    let running: Vec<i64> = h.jobs.values().filter(|j| j.status == JobStatus::InProgress).map(|j| j.id).collect();
                    if let Some(id) = pick(&running, n) { h.complete(id) }
                }
                Op::Cancel { pick: n } => {
                    let queued: Vec<i64> = h.jobs.values().filter(|j| j.status == JobStatus::Queued).map(|j| j.id).collect();
                    if let Some(id) = pick(&queued, n) { h.complete(id) }
                }
                Op::Crash { pick: n } => {
                    let up: Vec<String> = h.outside.iter().filter(|(_, o)| o.container == Some(true)).map(|(id, _)| id.clone()).collect();
                    if let Some(id) = pick(&up, n) { h.crash(&id) }
                }
                Op::Drain { pick: n } => {
                    let live: Vec<String> = h.core.runners().keys().cloned().collect();
                    if let Some(runner_id) = pick(&live, n) { h.feed(Input::Drain { runner_id }) }
                }
                Op::Faults { image_missing, refuse_a, never_online } => {
                    h.image_missing = image_missing;
                    h.refused_scopes.clear();
                    if refuse_a { h.refused_scopes.insert("repos/acme/a".into()); }
                    h.boot = (!never_online).then_some(Duration::from_secs(10));
                }
                Op::Advance { seconds } => h.run_for(Duration::from_secs(seconds)),
                Op::Restart => h.restart(),
            }
            check_limits(&h, policy)?;
            prop_assert!(violations.borrow().is_empty(), "{:?}", violations.borrow());
        }
        // The faults stop; running jobs end; every job runs for 30 s once it has a runner.
        h.image_missing = false;
        h.refused_scopes.clear();
        h.boot = Some(Duration::from_secs(10));
        let ids: Vec<i64> = h.jobs.keys().copied().collect();
        for id in ids {
            h.run_for.insert(id, Duration::from_secs(30));
        }
        let running: Vec<i64> = h.jobs.values().filter(|j| j.status == JobStatus::InProgress).map(|j| j.id).collect();
        for id in running { h.complete(id) }
        h.run_for(Duration::from_secs(4 * 3600));
        check_limits(&h, policy)?;
        prop_assert!(violations.borrow().is_empty(), "{:?}", violations.borrow());
        let waiting: Vec<i64> = h.jobs.values().filter(|j| j.status != JobStatus::Completed).map(|j| j.id).collect();
        prop_assert!(waiting.is_empty(), "jobs never served: {waiting:?}");
        prop_assert!(h.core.queue().is_empty());
        // Nothing left behind: no container and no registration without a live runner.
        let live: HashSet<&String> = h.core.runners().keys().collect();
        for (id, o) in &h.outside {
            if o.container.is_some() || o.registered {
                prop_assert!(live.contains(id), "runner {id} left behind: {o:?}");
            }
        }
        prop_assert!(h.core.runners().values().all(|r| r.state != RunnerState::Busy));
    }
}
