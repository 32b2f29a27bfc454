//! Job priority: rules by labels, repository and workflow, and the queue rank that adds aging
//! to them.

use crate::config::PriorityRule;

use super::LabelSet;
use super::glob::{Glob, any_matches};

/// One rule, normalised for matching; an empty list matches anything.
#[derive(Debug, Clone)]
struct Rule {
    labels: LabelSet,
    repositories: Vec<Glob>,
    workflows: Vec<Glob>,
    score: i64,
}

/// Configured rules, normalised for matching.
#[derive(Debug, Clone, Default)]
pub struct PriorityRules {
    rules: Vec<Rule>,
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct JobTraits<'a> {
    pub labels: &'a LabelSet,
    pub repository: &'a str,
    pub workflow: Option<&'a str>,
}

impl PriorityRules {
    /// Rules from a validated configuration (a glob the validation would refuse matches
    /// nothing).
    pub fn new(rules: &[PriorityRule]) -> Self {
        let globs = |list: &Option<Vec<String>>, parse: fn(&str) -> Result<Glob, String>| {
            list.iter()
                .flatten()
                .map(|p| parse(p).unwrap_or_else(|_| Glob::never()))
                .collect()
        };
        PriorityRules {
            rules: rules
                .iter()
                .map(|r| Rule {
                    labels: LabelSet::new(&r.labels),
                    repositories: globs(&r.repositories, Glob::repository),
                    workflows: globs(&r.workflows, Glob::workflow),
                    score: r.score,
                })
                .collect(),
        }
    }

    /// Sum of the scores of every rule that any of the job's labels triggers
    /// (a rule counts once, however many of its labels the job has), for any repository and
    /// workflow.
    pub fn score(&self, job_labels: &LabelSet) -> i64 {
        self.score_job(JobTraits {
            labels: job_labels,
            repository: "",
            workflow: None,
        })
    }

    /// Sum of the scores of every rule that applies to the job: each list a rule sets must
    /// match (any of its labels, any repository glob, any workflow glob).
    pub fn score_job(&self, job: JobTraits<'_>) -> i64 {
        self.rules
            .iter()
            .filter(|r| r.labels.is_empty() || r.labels.iter().any(|l| job.labels.contains(l)))
            .filter(|r| r.repositories.is_empty() || any_matches(&r.repositories, job.repository))
            .filter(|r| {
                r.workflows.is_empty() || job.workflow.is_some_and(|w| any_matches(&r.workflows, w))
            })
            .map(|r| r.score)
            .sum()
    }
}

/// A time-invariant sort key for "priority + aging, ties oldest first".
///
/// The effective priority at time `now` is `base + aging * (now - queued_at)`. Comparing two
/// jobs at the same `now`, the `aging * now` term cancels, so ordering by
/// `base - aging * queued_at` gives the aged order at every instant without ever re-sorting.
/// Units: points scaled by 60 000 000 so a millisecond of queue time is exact for aging rates
/// down to 0.001 points per minute. Higher rank runs first.
pub fn queue_rank(base: i64, queued_at_ms: i64, aging_per_minute: f64) -> i128 {
    let aging_milli = (aging_per_minute * 1000.0).round() as i128;
    i128::from(base) * 60_000_000 - aging_milli * i128::from(queued_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PriorityConfig;

    fn defaults() -> PriorityRules {
        let c = PriorityConfig::default();
        PriorityRules::new(&c.rules)
    }

    #[test]
    fn default_rules_are_the_original_runnerhub_scores() {
        let r = defaults();
        assert_eq!(r.score(&LabelSet::new(["self-hosted", "Production"])), 100);
        assert_eq!(r.score(&LabelSet::new(["deploy", "production"])), 100);
        assert_eq!(r.score(&LabelSet::new(["urgent", "deploy"])), 150);
        assert_eq!(r.score(&LabelSet::new(["ubuntu-latest"])), 10);
        assert_eq!(r.score(&LabelSet::new(["xl", "linux"])), -10);
        assert_eq!(r.score(&LabelSet::new(["linux"])), 0);
    }

    #[test]
    fn rules_by_repository_and_workflow_apply_only_there() {
        let rule = |labels: &[&str], repos: Option<&[&str]>, workflows: Option<&[&str]>, score| {
            let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
            PriorityRule {
                labels: list(labels),
                repositories: repos.map(list),
                workflows: workflows.map(list),
                score,
            }
        };
        let rules = PriorityRules::new(&[
            rule(&["deploy"], Some(&["acme/prod-*"]), Some(&["release"]), 100),
            rule(&[], Some(&["acme/*"]), None, 5),
            rule(&[], None, Some(&["nightly*"]), -20),
        ]);
        let labels = LabelSet::new(["self-hosted", "deploy"]);
        let job = |repository, workflow| JobTraits {
            labels: &labels,
            repository,
            workflow,
        };
        assert_eq!(rules.score_job(job("acme/prod-api", Some("Release"))), 105);
        assert_eq!(rules.score_job(job("acme/prod-api", Some("ci"))), 5);
        assert_eq!(rules.score_job(job("acme/prod-api", None)), 5);
        assert_eq!(rules.score_job(job("other/prod-api", Some("release"))), 0);
        assert_eq!(rules.score_job(job("other/x", Some("nightly build"))), -20);
        let plain = LabelSet::new(["self-hosted"]);
        assert_eq!(
            rules.score_job(JobTraits {
                labels: &plain,
                repository: "acme/prod-api",
                workflow: Some("release"),
            }),
            5,
            "the labels still have to match"
        );
    }

    #[test]
    fn aging_lets_an_old_low_job_overtake_a_new_high_one() {
        let minute = 60_000;
        let old_low = queue_rank(-10, 0, 1.0);
        let new_high = queue_rank(100, 5 * minute, 1.0);
        assert!(
            new_high > old_low,
            "after 5 minutes the +100 job still wins"
        );
        let much_later_high = queue_rank(100, 200 * minute, 1.0);
        assert!(
            old_low > much_later_high,
            "after 200 minutes the old job wins"
        );
    }

    #[test]
    fn ties_go_to_the_older_job() {
        assert!(queue_rank(10, 1_000, 1.0) > queue_rank(10, 2_000, 1.0));
        assert!(queue_rank(10, 1_000, 0.0) == queue_rank(10, 2_000, 0.0));
    }
}
