//! The simulation driven through hours of virtual time; each test runs in milliseconds.

use std::time::Duration;

use super::*;
use crate::config::PoolConfig;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;

fn pool(name: &str, labels: &[&str], max: u32) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        max_runners: max,
        min_idle: 0,
        idle_timeout: Duration::from_secs(10 * 60),
        bootstrap_timeout: Duration::from_secs(10 * 60),
        ..PoolConfig::default()
    }
}

fn settings(pools: Vec<PoolConfig>, host: u32) -> SimSettings {
    let mut config = Config {
        pools,
        ..Config::default()
    };
    config.limits.max_runners = host;
    config.priority.aging_per_minute = 1.0;
    SimSettings {
        config,
        boot_ms: 10 * SECOND,
    }
}

fn job(id: i64, pool: &str, labels: &[&str], priority: i64, at: i64, run: i64) -> ReplayJob {
    ReplayJob {
        id,
        repository: "acme/app".into(),
        labels: LabelSet::new(labels),
        raw_labels: labels.iter().map(|l| l.to_string()).collect(),
        pool: pool.into(),
        priority,
        created_ms: at,
        fate: Fate::Runs { run_ms: run },
        live_wait_seconds: None,
    }
}

fn waits(outcome: &SimOutcome) -> Vec<(i64, Option<i64>)> {
    let mut w: Vec<_> = outcome.jobs.iter().map(|j| (j.id, j.wait_ms)).collect();
    w.sort();
    w
}

const LINUX: &[&str] = &["self-hosted", "linux"];

#[test]
fn a_full_pool_makes_the_third_job_wait_for_a_slot_and_a_boot() {
    let s = settings(vec![pool("linux", LINUX, 2)], 10);
    let jobs: Vec<_> = (1..=3)
        .map(|id| job(id, "linux", LINUX, 0, 0, MINUTE))
        .collect();
    let outcome = simulate(&s, &jobs);
    // Two runners boot (10 s) and run a minute; the third launches when one is removed.
    assert_eq!(
        waits(&outcome),
        [
            (1, Some(10 * SECOND)),
            (2, Some(10 * SECOND)),
            (3, Some(80 * SECOND))
        ]
    );
    assert_eq!(outcome.runners.len(), 3);
    assert_eq!(outcome.end_ms, 140 * SECOND, "ends when the last job ended");
}

#[test]
fn the_host_limit_holds_across_pools() {
    let gpu: &[&str] = &["self-hosted", "gpu"];
    let s = settings(vec![pool("linux", LINUX, 5), pool("gpu", gpu, 5)], 1);
    let jobs = vec![
        job(1, "linux", LINUX, 0, 0, MINUTE),
        job(2, "gpu", gpu, 0, SECOND, MINUTE),
    ];
    let outcome = simulate(&s, &jobs);
    assert_eq!(
        waits(&outcome),
        [(1, Some(10 * SECOND)), (2, Some(79 * SECOND))]
    );
    let report = |lives: &[RunnerLife]| {
        let mut spans: Vec<(i64, i64)> = lives
            .iter()
            .map(|l| (l.launched_ms, l.removed_ms))
            .collect();
        spans.sort();
        spans
    };
    let spans = report(&outcome.runners);
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "never two at once: {spans:?}"
    );
}

#[test]
fn the_best_job_gets_the_next_free_slot() {
    let deploy: &[&str] = &["self-hosted", "deploy"];
    let s = settings(
        vec![pool("linux", &["self-hosted", "linux", "deploy"], 1)],
        10,
    );
    let jobs = vec![
        job(1, "linux", LINUX, 0, 0, 100 * SECOND),
        job(2, "linux", LINUX, 0, 10 * SECOND, MINUTE),
        job(3, "linux", deploy, 100, 20 * SECOND, MINUTE),
    ];
    let outcome = simulate(&s, &jobs);
    let w = waits(&outcome);
    // Job 1 ends at 110 s; the deploy job (+100) is launched for and starts at 120 s; job 2
    // waits for the next slot.
    assert_eq!(w[2], (3, Some(100 * SECOND)));
    assert_eq!(w[1], (2, Some(180 * SECOND)));
}

fn aging_scenario(aging_per_minute: f64) -> HashMap<i64, i64> {
    let deploy: &[&str] = &["self-hosted", "deploy"];
    let mut s = settings(
        vec![pool("linux", &["self-hosted", "linux", "deploy"], 1)],
        10,
    );
    s.config.priority.aging_per_minute = aging_per_minute;
    // A blocker holds the one slot for three hours; job 1 (+0) waits from the start, twenty
    // +100 jobs from the second hour on.
    let mut jobs = vec![
        job(100, "linux", LINUX, 0, 0, 3 * 60 * MINUTE),
        job(1, "linux", LINUX, 0, SECOND, MINUTE),
    ];
    for n in 0..20 {
        jobs.push(job(
            10 + n,
            "linux",
            deploy,
            100,
            2 * 60 * MINUTE + n * SECOND,
            MINUTE,
        ));
    }
    let outcome = simulate(&s, &jobs);
    assert_eq!(outcome.jobs.len(), 22, "every job ran");
    outcome
        .jobs
        .iter()
        .map(|j| {
            let created = jobs.iter().find(|x| x.id == j.id).unwrap().created_ms;
            (j.id, created + j.wait_ms.unwrap())
        })
        .collect()
}

#[test]
fn aging_lets_an_old_job_overtake_newer_better_ones() {
    // After 3 h, job 1 has 180 points of aging; the +100 jobs at most 100 + 60.
    let started = aging_scenario(1.0);
    assert!(started[&1] < started[&10], "{started:?}");
    // Without aging, all twenty +100 jobs go first.
    let started = aging_scenario(0.0);
    assert!((10..30).all(|id| started[&id] < started[&1]), "{started:?}");
}

#[test]
fn a_warm_pool_serves_at_once_and_is_refilled_through_hours_of_idle_timeouts() {
    let mut linux = pool("linux", LINUX, 3);
    linux.min_idle = 1;
    linux.repository = Some("acme/app".into());
    let s = settings(vec![linux], 10);
    let three_hours = 3 * 60 * MINUTE;
    let jobs = vec![
        job(1, "linux", LINUX, 0, 0, MINUTE),
        job(2, "linux", LINUX, 0, three_hours, MINUTE),
    ];
    let outcome = simulate(&s, &jobs);
    let w = waits(&outcome);
    assert!(
        w[1].1.unwrap() < 10 * SECOND,
        "job 2 had a warm runner ready: {w:?}"
    );
    // A warm runner lives 10 s boot + 10 min idle, then is replaced: ~18 over three hours.
    let runners = outcome.runners.len();
    assert!((15..=25).contains(&runners), "{runners} runners");
    assert!(
        outcome
            .runners
            .iter()
            .all(|l| l.removed_ms - l.launched_ms <= 10 * MINUTE + 10 * SECOND + MINUTE)
    );
}

#[test]
fn an_idle_runner_is_removed_after_its_idle_timeout() {
    let mut linux = pool("linux", LINUX, 2);
    linux.idle_timeout = Duration::from_secs(5 * 60);
    let s = settings(vec![linux], 10);
    // Job 2 is cancelled before its runner boots: that runner idles out after 5 minutes.
    let mut cancelled = job(2, "linux", LINUX, 0, 0, 0);
    cancelled.fate = Fate::CancelledWhileQueued { at_ms: 5 * SECOND };
    let jobs = vec![job(1, "linux", LINUX, 0, 0, 60 * MINUTE), cancelled];
    let outcome = simulate(&s, &jobs);
    let mut lives: Vec<i64> = outcome
        .runners
        .iter()
        .map(|l| l.removed_ms - l.launched_ms)
        .collect();
    lives.sort();
    assert_eq!(lives, [10 * SECOND + 5 * MINUTE, 10 * SECOND + 60 * MINUTE]);
    assert!(
        outcome
            .jobs
            .iter()
            .any(|j| j.id == 2 && j.cancelled && j.wait_ms.is_none())
    );
}

#[test]
fn a_runner_takes_the_oldest_job_its_labels_cover() {
    let gpu: &[&str] = &["self-hosted", "linux", "gpu"];
    let s = settings(vec![pool("mixed", &["self-hosted", "linux", "gpu"], 1)], 10);
    let jobs = vec![
        job(1, "mixed", gpu, 100, 0, MINUTE),
        job(2, "mixed", LINUX, 0, SECOND, MINUTE),
    ];
    let outcome = simulate(&s, &jobs);
    assert_eq!(
        waits(&outcome),
        [(1, Some(10 * SECOND)), (2, Some(79 * SECOND))]
    );
}

#[test]
fn timeline_samples_queue_and_runners() {
    let s = settings(vec![pool("linux", LINUX, 1)], 10);
    let jobs = vec![
        job(1, "linux", LINUX, 0, 0, MINUTE),
        job(2, "linux", LINUX, 0, 0, MINUTE),
    ];
    let outcome = simulate(&s, &jobs);
    let busy_max = outcome.timeline.iter().map(|(_, p)| p[0].busy).max();
    let queued_max = outcome.timeline.iter().map(|(_, p)| p[0].queued).max();
    assert_eq!((busy_max, queued_max), (Some(1), Some(2)));
}

#[test]
fn replay_runner_names_are_unique() {
    let mut ids = Counter(0);
    let names: std::collections::HashSet<String> = (0..200_000)
        .map(|_| Runner::name_for("runnerhub", "linux", &ids.next_runner_id()))
        .collect();
    assert_eq!(names.len(), 200_000);
}

#[test]
fn a_replay_repeats_exactly() {
    let s = settings(vec![pool("linux", LINUX, 3)], 10);
    let jobs: Vec<_> = (1..=300)
        .map(|id| {
            job(
                id,
                "linux",
                LINUX,
                id % 3 * 50,
                id * 7 * SECOND,
                (id % 5 + 1) * MINUTE,
            )
        })
        .collect();
    let first = simulate(&s, &jobs);
    let second = simulate(&s, &jobs);
    assert_eq!(waits(&first), waits(&second));
    let peak = first
        .timeline
        .iter()
        .map(|(_, p)| p[0].starting + p[0].idle + p[0].busy)
        .max();
    assert!(
        peak <= Some(3),
        "never more runners than the pool allows: {peak:?}"
    );
}

#[test]
fn the_configurations_fair_share_and_quotas_apply() {
    // Ten 10-minute jobs of one repository fill a pool of two; a lone job of another
    // repository arrives a minute later.
    let lone_wait = |policy: fn(&mut Config)| {
        let mut s = settings(vec![pool("linux", LINUX, 2)], 10);
        policy(&mut s.config);
        let mut jobs: Vec<ReplayJob> = (1..=10)
            .map(|id| ReplayJob {
                repository: "big/monorepo".into(),
                ..job(id, "linux", LINUX, 0, 0, 10 * MINUTE)
            })
            .collect();
        jobs.push(ReplayJob {
            repository: "small/tool".into(),
            ..job(100, "linux", LINUX, 0, MINUTE, MINUTE)
        });
        let outcome = simulate(&s, &jobs);
        let (_, wait) = waits(&outcome)
            .into_iter()
            .find(|(id, _)| *id == 100)
            .unwrap();
        wait.unwrap()
    };
    let plain = lone_wait(|_| {});
    assert!(plain > 49 * MINUTE, "behind the whole queue: {plain} ms");
    let fair = lone_wait(|c| c.scheduling.fair_share = crate::config::FairShare::Repository);
    assert!(fair < 11 * MINUTE, "at the second free slot: {fair} ms");
    let quota = lone_wait(|c| {
        c.quotas = vec![crate::config::QuotaConfig {
            repositories: vec!["big/*".into()],
            max_runners: 1,
        }]
    });
    assert_eq!(
        quota,
        10 * SECOND,
        "a slot the quota leaves free, then a boot"
    );
}
