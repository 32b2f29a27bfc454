//! Label sets and the rule that decides which pool serves a job.
//!
//! GitHub matches labels case-insensitively: a runner can take a job when the
//! runner's labels contain every one of the job's `runs-on` labels.

use std::collections::BTreeSet;

/// Labels a job may carry to be scheduled. GitHub's own limits are far lower in practice
/// (`runs-on` rarely names more than a handful); the bound keeps one signed delivery from
/// making every job listing, snapshot and WebSocket message huge.
pub const MAX_JOB_LABELS: usize = 100;
/// Bytes (UTF-8) one label may have to be scheduled.
pub const MAX_LABEL_BYTES: usize = 256;

/// Why a job's labels are refused for scheduling, or `Ok` when they are within
/// [`MAX_JOB_LABELS`] and [`MAX_LABEL_BYTES`].
pub fn check_job_labels<S: AsRef<str>>(labels: &[S]) -> Result<(), String> {
    if labels.len() > MAX_JOB_LABELS {
        return Err(format!(
            "the job has {} labels; at most {MAX_JOB_LABELS} are scheduled",
            labels.len()
        ));
    }
    if let Some((index, long)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| l.as_ref().len() > MAX_LABEL_BYTES)
    {
        return Err(format!(
            "label {index} is {} bytes long; at most {MAX_LABEL_BYTES} are scheduled",
            long.as_ref().len()
        ));
    }
    Ok(())
}

/// A set of labels, normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSet(BTreeSet<String>);

impl LabelSet {
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        LabelSet(
            labels
                .into_iter()
                .map(|l| l.as_ref().trim().to_lowercase())
                .filter(|l| !l.is_empty())
                .collect(),
        )
    }

    /// True when every label of `self` is in `other`.
    pub fn is_subset_of(&self, other: &LabelSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn contains(&self, label: &str) -> bool {
        self.0.contains(&label.to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// The pool that serves a job with `job_labels`, given `(name, labels)` of the pools in
/// config order: among pools whose labels contain all the job's labels, the one with the
/// smallest label set, then the first in config order. A job with no labels is served by
/// no pool (we never guess).
pub fn select_pool<'a>(
    job_labels: &LabelSet,
    pools: impl IntoIterator<Item = (&'a str, &'a LabelSet)>,
) -> Option<&'a str> {
    if job_labels.is_empty() {
        return None;
    }
    pools
        .into_iter()
        .filter(|(_, labels)| job_labels.is_subset_of(labels))
        // min_by_key keeps the first of equal keys: config order breaks ties.
        .min_by_key(|(_, labels)| labels.len())
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(l: &[&str]) -> LabelSet {
        LabelSet::new(l)
    }

    #[test]
    fn label_bounds_name_what_is_over() {
        let many: Vec<String> = (0..=MAX_JOB_LABELS).map(|i| format!("l{i}")).collect();
        assert!(check_job_labels(&many[..MAX_JOB_LABELS]).is_ok());
        assert!(check_job_labels(&many).unwrap_err().contains("101 labels"));
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        assert!(check_job_labels(&["x".repeat(MAX_LABEL_BYTES)]).is_ok());
        let err = check_job_labels(&["linux", long.as_str()]).unwrap_err();
        assert!(err.contains("label 1 is 257 bytes"), "{err}");
    }

    #[test]
    fn matching_is_case_insensitive_subset() {
        let pool = set(&["self-hosted", "Linux", "X64"]);
        assert!(set(&["SELF-HOSTED", "linux"]).is_subset_of(&pool));
        assert!(!set(&["self-hosted", "gpu"]).is_subset_of(&pool));
    }

    #[test]
    fn smallest_matching_pool_wins_then_config_order() {
        let big = set(&["self-hosted", "linux", "x64", "docker"]);
        let small = set(&["self-hosted", "linux", "x64"]);
        let same = set(&["self-hosted", "linux", "arm64"]);
        let pools = [("big", &big), ("small", &small), ("same", &same)];
        assert_eq!(
            select_pool(&set(&["self-hosted", "linux"]), pools),
            Some("small")
        );
        assert_eq!(select_pool(&set(&["docker"]), pools), Some("big"));
        let pools = [("a", &small), ("b", &small)];
        assert_eq!(select_pool(&set(&["linux"]), pools), Some("a"));
    }

    #[test]
    fn github_hosted_and_unlabelled_jobs_have_no_pool() {
        let pool = set(&["self-hosted", "linux"]);
        assert_eq!(select_pool(&set(&["ubuntu-latest"]), [("p", &pool)]), None);
        assert_eq!(select_pool(&set(&[]), [("p", &pool)]), None);
    }
}
