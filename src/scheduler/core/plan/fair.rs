//! Fair share between repositories (DESIGN §13): the order in which one pool's free slots go
//! to its waiting jobs.
//!
//! Take the best waiting job by aged priority (aging included, so nothing starves) and its
//! rule score; among the waiting jobs with that rule score, the repository with the fewest
//! runners of the pool goes first, then the oldest job. Each pick counts as a runner of its
//! repository for the next one, so repositories take turns.
//!
//! The queue keeps each pool's jobs grouped by (rule score, repository), oldest first, so one
//! pick costs one look at each group's oldest job, however long a repository's queue is.

use std::collections::HashMap;
use std::collections::btree_set;

use super::super::policy::QuotaUsage;
use super::super::queue::{GroupEntry, JobQueue, QueuedJob};

/// One (rule score, repository) group of a pool, at its oldest job not yet picked.
struct Group<'q> {
    priority: i64,
    repository: &'q str,
    rest: btree_set::Iter<'q, GroupEntry>,
    head: Option<&'q QueuedJob>,
    quotas: Vec<usize>,
}

impl<'q> Group<'q> {
    fn advance(&mut self, queue: &'q JobQueue, eligible: &dyn Fn(&QueuedJob) -> bool) {
        self.head = self
            .rest
            .by_ref()
            .filter_map(|(_, id)| queue.get(*id))
            .find(|j| eligible(j));
    }
}

/// Up to `limit` jobs of `pool` in fair order. `runners` counts the pool's runners by the
/// repository they run for; `eligible` filters jobs (not covered, not awaiting approval),
/// `launchable` and the quotas filter whole repositories.
#[allow(clippy::too_many_arguments)]
pub(super) fn fair_order<'q>(
    queue: &'q JobQueue,
    pool: &str,
    runners: HashMap<&str, usize>,
    eligible: &dyn Fn(&QueuedJob) -> bool,
    launchable: &dyn Fn(&QueuedJob) -> bool,
    quotas_of: &dyn Fn(&QueuedJob) -> Vec<usize>,
    mut quota: QuotaUsage,
    limit: usize,
) -> Vec<&'q QueuedJob> {
    if limit == 0 {
        return Vec::new();
    }
    let mut runners: HashMap<String, usize> = runners
        .into_iter()
        .map(|(repo, n)| (repo.to_owned(), n))
        .collect();
    let mut groups: Vec<Group<'q>> = Vec::new();
    for ((priority, repository), entries) in queue.pool_groups(pool) {
        let mut group = Group {
            priority: *priority,
            repository,
            rest: entries.iter(),
            head: None,
            quotas: Vec::new(),
        };
        group.advance(queue, eligible);
        if let Some(head) = group.head.filter(|h| launchable(h)) {
            group.quotas = quotas_of(head);
            groups.push(group);
        }
    }
    let mut picked = Vec::new();
    while picked.len() < limit {
        groups.retain(|g| g.head.is_some() && quota.all_have_room(&g.quotas));
        let Some(tier) = groups
            .iter()
            .min_by_key(|g| g.head.map(QueuedJob::sort_key))
            .map(|g| g.priority)
        else {
            break;
        };
        let chosen = groups
            .iter_mut()
            .filter(|g| g.priority == tier)
            .min_by_key(|g| {
                let n = runners.get(g.repository).copied().unwrap_or(0);
                (n, g.head.map(QueuedJob::sort_key))
            })
            .expect("the best group is in its own tier");
        let job = chosen.head.expect("groups without a head were dropped");
        picked.push(job);
        *runners.entry(chosen.repository.to_owned()).or_default() += 1;
        quota.take(&chosen.quotas);
        chosen.advance(queue, eligible);
    }
    picked
}
