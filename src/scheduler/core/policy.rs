//! Scheduling policy beyond priority (DESIGN §13): quotas per set of repositories, and which
//! repository each runner counts for.
//!
//! Quotas and fair share count a runner for the job it actually runs (`job_id`), else for the
//! job it was launched for: GitHub may hand a runner any matching job, and a warm runner
//! counts for no repository until it takes one.

use std::collections::HashMap;

use crate::config::{Config, FairShare};
use crate::domain::{Glob, Runner, RunnerId};

/// One `[[quotas]]` entry, compiled.
#[derive(Debug, Clone)]
struct Quota {
    globs: Vec<Glob>,
    max_runners: usize,
    /// The globs as written, for wait details (`quota acme/* 4/4`).
    name: String,
}

/// The configured quotas and fair-share mode.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub fair_share: bool,
    quotas: Vec<Quota>,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Policy {
            fair_share: config.scheduling.fair_share == FairShare::Repository,
            quotas: config
                .quotas
                .iter()
                .map(|q| Quota {
                    globs: q
                        .repositories
                        .iter()
                        .map(|p| Glob::repository(p).unwrap_or_else(|_| Glob::never()))
                        .collect(),
                    max_runners: q.max_runners as usize,
                    name: q.repositories.join(", "),
                })
                .collect(),
        }
    }

    pub fn has_quotas(&self) -> bool {
        !self.quotas.is_empty()
    }

    /// Whether decisions count runners by repository, so that a fleet's instances must learn
    /// each other's ([`RunnersElsewhere`]).
    pub fn counts_repositories(&self) -> bool {
        self.has_quotas() || self.fair_share
    }

    /// Indices of the quotas that count `repository`.
    pub fn quotas_of(&self, repository: &str) -> Vec<usize> {
        self.quotas
            .iter()
            .enumerate()
            .filter(|(_, q)| q.globs.iter().any(|g| g.matches(repository)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Runners each quota counts now: those holding a slot, by the repository they run for,
    /// this instance's and, in a fleet, the other instances' ([`RunnersElsewhere`]).
    pub fn usage(
        &self,
        runners: &HashMap<RunnerId, Runner>,
        repos: &HashMap<RunnerId, String>,
        elsewhere: &RunnersElsewhere,
    ) -> QuotaUsage {
        if !self.has_quotas() {
            return self.count(std::iter::empty());
        }
        let here = runners
            .values()
            .filter(|r| r.state.holds_slot())
            .filter_map(|r| repos.get(&r.id))
            .map(|repo| (repo.as_str(), 1));
        let there = elsewhere.0.iter().map(|((_, repo), n)| (repo.as_str(), *n));
        self.count(here.chain(there))
    }

    /// Each quota's use, from runners counted by repository.
    fn count<'a>(&self, counted: impl Iterator<Item = (&'a str, usize)>) -> QuotaUsage {
        let mut used = vec![0; self.quotas.len()];
        for (repo, n) in counted {
            for i in self.quotas_of(repo) {
                used[i] += n;
            }
        }
        QuotaUsage {
            used,
            max: self.quotas.iter().map(|q| q.max_runners).collect(),
        }
    }

    /// The names of the quotas that count `repository`, sorted: in a fleet a claim holds each
    /// one's database lock, always taken in this order.
    pub fn quota_names_of(&self, repository: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .quotas_of(repository)
            .into_iter()
            .map(|i| self.quotas[i].name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The decision a fleet's claim makes under the quotas' locks: `quota acme/* 4/4` when a
    /// quota that counts `repository` has no room for one more runner, given every runner of
    /// the fleet by the repository it counts for (the claimed job's own claim left out);
    /// `None` when the job may have one.
    pub fn refuses_claim(
        &self,
        repository: &str,
        fleet: &HashMap<String, usize>,
    ) -> Option<String> {
        let indices = self.quotas_of(repository);
        if indices.is_empty() {
            return None;
        }
        let usage = self.count(fleet.iter().map(|(repo, n)| (repo.as_str(), *n)));
        self.full_quota_detail(&usage, &indices)
    }

    /// `quota acme/* 4/4` for the first full quota among `indices`.
    pub fn full_quota_detail(&self, usage: &QuotaUsage, indices: &[usize]) -> Option<String> {
        indices.iter().find(|i| !usage.has_room(**i)).map(|i| {
            format!(
                "quota {} {}/{}",
                self.quotas[*i].name, usage.used[*i], usage.max[*i]
            )
        })
    }
}

/// Runners counted against each quota, and each quota's limit.
#[derive(Debug, Clone, Default)]
pub struct QuotaUsage {
    used: Vec<usize>,
    max: Vec<usize>,
}

impl QuotaUsage {
    fn has_room(&self, i: usize) -> bool {
        self.used[i] < self.max[i]
    }

    /// Whether every one of `indices` has room for one more runner.
    pub fn all_have_room(&self, indices: &[usize]) -> bool {
        indices.iter().all(|i| self.has_room(*i))
    }

    /// Counts one more runner against each of `indices`.
    pub fn take(&mut self, indices: &[usize]) {
        for i in indices {
            self.used[*i] += 1;
        }
    }
}

/// The live runners of the fleet's other instances, by (pool, repository counted for), with
/// their claims on jobs that have no runner yet: in a fleet, quotas and fair share count these
/// with this instance's own. Read from the database at each fleet sync; empty alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnersElsewhere(HashMap<(String, String), usize>);

impl RunnersElsewhere {
    pub fn new(counts: impl IntoIterator<Item = (String, String, usize)>) -> Self {
        let mut map = HashMap::new();
        for (pool, repository, n) in counts {
            *map.entry((pool, repository)).or_default() += n;
        }
        RunnersElsewhere(map)
    }
}

/// Runners of `pool` holding a slot, by the repository they count for: this instance's and
/// the other instances' of a pool of the same name.
pub fn pool_runners_by_repo<'a>(
    pool: &str,
    runners: &'a HashMap<RunnerId, Runner>,
    repos: &'a HashMap<RunnerId, String>,
    elsewhere: &'a RunnersElsewhere,
) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for runner in runners
        .values()
        .filter(|r| r.pool == pool && r.state.holds_slot())
    {
        if let Some(repo) = repos.get(&runner.id) {
            *counts.entry(repo.as_str()).or_default() += 1;
        }
    }
    for ((_, repo), n) in elsewhere.0.iter().filter(|((p, _), _)| p == pool) {
        *counts.entry(repo.as_str()).or_default() += n;
    }
    counts
}

impl super::Core {
    /// After a restart: each runner counts for the repository of the job it runs, else of the
    /// job it was launched for, else (repository registration) of its registration scope.
    pub(super) fn restore_runner_repos(&mut self, jobs: &[crate::domain::Job]) {
        let repo_of: HashMap<i64, &str> =
            jobs.iter().map(|j| (j.id, j.repository.as_str())).collect();
        for runner in self.runners.values() {
            let Some(job) = runner.job_id.or(runner.launched_for) else {
                continue; // a warm runner that has not taken a job counts for no one
            };
            let from_job = repo_of.get(&job).copied();
            let from_scope = runner.scope.strip_prefix("repos/");
            if let Some(repo) = from_job.or(from_scope) {
                self.runner_repos.insert(runner.id.clone(), repo.to_owned());
            }
        }
    }
}
