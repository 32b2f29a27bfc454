//! The replay summary; its JSON keys are fixed by DESIGN §11.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sim::{RunnerLife, SimOutcome};
use super::workload::{Fate, Workload};

/// Queue waits (queued → started) over served jobs, nearest-rank percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WaitSeconds {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Jobs a configured pool serves that have a recorded run time.
    pub jobs: u64,
    /// Of `jobs`, those that started.
    pub served: u64,
    pub unserved: u64,
    pub wait_seconds: WaitSeconds,
    /// Sum over runners of launch → removal (boot + idle + busy).
    pub runner_minutes: f64,
    /// The most runners existing at once.
    pub peak_runners: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub overall: Summary,
    /// Jobs with no `completed` delivery: not simulated.
    pub unfinished: u64,
    /// Jobs cancelled while queued (they leave the queue at their recorded time).
    pub cancelled: u64,
    pub pools: BTreeMap<String, Summary>,
    /// Waits of the repositories with the most served jobs (at most
    /// [`REPORTED_REPOSITORIES`]), for the text report: what fair share and quotas change.
    #[serde(skip)]
    pub repositories: Vec<RepositoryWaits>,
}

/// Repositories the text report lists at most.
pub const REPORTED_REPOSITORIES: usize = 10;

/// One repository's served jobs and their waits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepositoryWaits {
    pub repository: String,
    pub served: u64,
    pub wait_seconds: WaitSeconds,
}

pub fn summarise(workload: &Workload, outcome: &SimOutcome, pool_names: &[String]) -> Report {
    let mut waits: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut pools: BTreeMap<String, Summary> = pool_names
        .iter()
        .map(|name| (name.clone(), Summary::default()))
        .collect();
    let mut overall = Summary::default();
    let mut all_waits = Vec::new();
    let mut cancelled = 0;
    let repository_of: std::collections::HashMap<i64, &str> = workload
        .jobs
        .iter()
        .map(|j| (j.id, j.repository.as_str()))
        .collect();
    let mut by_repository: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for job in &workload.jobs {
        if matches!(job.fate, Fate::Runs { .. }) {
            overall.jobs += 1;
            pools.entry(job.pool.clone()).or_default().jobs += 1;
        }
    }
    for result in &outcome.jobs {
        if result.cancelled {
            cancelled += 1;
            continue;
        }
        if let Some(wait_ms) = result.wait_ms {
            let seconds = wait_ms as f64 / 1000.0;
            overall.served += 1;
            all_waits.push(seconds);
            pools.entry(result.pool.clone()).or_default().served += 1;
            waits.entry(result.pool.as_str()).or_default().push(seconds);
            if let Some(repository) = repository_of.get(&result.id) {
                by_repository.entry(repository).or_default().push(seconds);
            }
        }
    }
    overall.unserved = overall.jobs - overall.served;
    overall.wait_seconds = wait_percentiles(&mut all_waits);
    overall.runner_minutes = runner_minutes(outcome.runners.iter());
    overall.peak_runners = peak(outcome.runners.iter());
    for (name, summary) in pools.iter_mut() {
        summary.unserved = summary.jobs - summary.served;
        if let Some(w) = waits.get_mut(name.as_str()) {
            summary.wait_seconds = wait_percentiles(w);
        }
        let lives = || outcome.runners.iter().filter(|l| &l.pool == name);
        summary.runner_minutes = runner_minutes(lives());
        summary.peak_runners = peak(lives());
    }
    let mut repositories: Vec<RepositoryWaits> = by_repository
        .into_iter()
        .map(|(repository, mut w)| RepositoryWaits {
            repository: repository.to_owned(),
            served: w.len() as u64,
            wait_seconds: wait_percentiles(&mut w),
        })
        .collect();
    repositories.sort_by(|a, b| {
        b.served
            .cmp(&a.served)
            .then(a.repository.cmp(&b.repository))
    });
    repositories.truncate(REPORTED_REPOSITORIES);
    Report {
        overall,
        unfinished: workload.counts.unfinished,
        cancelled,
        pools,
        repositories,
    }
}

/// Nearest rank: the smallest value with at least p % of the values at or below it.
pub fn nearest_rank(sorted: &[f64], percent: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn wait_percentiles(values: &mut [f64]) -> WaitSeconds {
    values.sort_by(f64::total_cmp);
    WaitSeconds {
        p50: nearest_rank(values, 50.0),
        p95: nearest_rank(values, 95.0),
        p99: nearest_rank(values, 99.0),
        max: values.last().copied().unwrap_or(0.0),
    }
}

fn runner_minutes<'a>(lives: impl Iterator<Item = &'a RunnerLife>) -> f64 {
    let ms: i64 = lives.map(|l| l.removed_ms - l.launched_ms).sum();
    ms as f64 / 60_000.0
}

/// Sweep of launches and removals; a removal at the same instant as a launch comes first.
fn peak<'a>(lives: impl Iterator<Item = &'a RunnerLife>) -> u64 {
    let mut changes: Vec<(i64, i64)> = lives
        .flat_map(|l| [(l.launched_ms, 1), (l.removed_ms, -1)])
        .collect();
    changes.sort_unstable();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, delta) in changes {
        now += delta;
        most = most.max(now);
    }
    most as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50.0), 5.0);
        assert_eq!(nearest_rank(&v, 95.0), 10.0);
        assert_eq!(nearest_rank(&v, 10.0), 1.0);
        assert_eq!(nearest_rank(&[], 50.0), 0.0);
    }

    #[test]
    fn peak_counts_a_handover_at_one_instant_once() {
        let life = |a, b| RunnerLife {
            pool: "p".into(),
            launched_ms: a,
            removed_ms: b,
        };
        let lives = [life(0, 10), life(10, 20), life(5, 15)];
        assert_eq!(peak(lives.iter()), 2);
    }
}
