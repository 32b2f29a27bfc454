//! Job priority: label rules, and the queue rank that adds aging to them.

use crate::config::PriorityRule;

use super::LabelSet;

/// Configured label rules, normalised for matching.
#[derive(Debug, Clone, Default)]
pub struct PriorityRules {
    rules: Vec<(LabelSet, i64)>,
}

impl PriorityRules {
    pub fn new(rules: &[PriorityRule]) -> Self {
        PriorityRules {
            rules: rules
                .iter()
                .map(|r| (LabelSet::new(&r.labels), r.score))
                .collect(),
        }
    }

    /// Sum of the scores of every rule that any of the job's labels triggers
    /// (a rule counts once, however many of its labels the job has).
    pub fn score(&self, job_labels: &LabelSet) -> i64 {
        self.rules
            .iter()
            .filter(|(labels, _)| labels.iter().any(|l| job_labels.contains(l)))
            .map(|(_, score)| *score)
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
