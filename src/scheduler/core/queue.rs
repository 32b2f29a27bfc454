//! The waiting jobs of each pool, in priority order: an index over the `jobs` table,
//! rebuilt at start.
//!
//! A `BTreeSet` ordered by (aged priority, age, id) rather than a binary heap: the planner
//! walks the top of each pool's queue, skipping jobs that already have a runner on the way,
//! without popping anything; inserts and removals stay O(log n). Fair share (DESIGN §13) also
//! needs each pool's jobs grouped by (rule score, repository), oldest first: a second index,
//! so that a long queue of one repository is one group, not thousands of jobs to walk.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::domain::{Job, JobId, JobStatus, queue_rank};

/// Sort key: best first under ascending order.
pub type QueueKey = (Reverse<i128>, i64, JobId);

/// A job waiting for a runner.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: JobId,
    pub pool: String,
    pub repository: String,
    pub labels: Vec<String>,
    pub priority: i64,
    pub queued_at: DateTime<Utc>,
    /// Waiting for an environment approval: GitHub hands it to no runner until approved, so it
    /// is not demand.
    pub needs_approval: bool,
    key: QueueKey,
}

impl QueuedJob {
    pub fn from_job(job: &Job, pool: &str, aging_per_minute: f64) -> Self {
        let mut queued = QueuedJob::new(
            job.id,
            pool,
            &job.repository,
            job.labels.clone(),
            job.priority,
            job.created_at.unwrap_or(job.first_seen_at),
            aging_per_minute,
        );
        queued.needs_approval = job.status == JobStatus::Waiting;
        queued
    }

    /// A job queued at `queued_at` (GitHub's `created_at`) with its rule score `priority`.
    pub fn new(
        id: JobId,
        pool: &str,
        repository: &str,
        labels: Vec<String>,
        priority: i64,
        queued_at: DateTime<Utc>,
        aging_per_minute: f64,
    ) -> Self {
        let ms = queued_at.timestamp_millis();
        QueuedJob {
            id,
            pool: pool.to_owned(),
            repository: repository.to_owned(),
            labels,
            priority,
            queued_at,
            needs_approval: false,
            key: (Reverse(queue_rank(priority, ms, aging_per_minute)), ms, id),
        }
    }

    /// Best first under ascending order.
    pub fn sort_key(&self) -> QueueKey {
        self.key
    }

    /// Priority band for metrics: bounded label values.
    pub fn band(&self) -> &'static str {
        match self.priority {
            p if p >= 50 => "high",
            p if p < 0 => "low",
            _ => "normal",
        }
    }
}

/// A group of fair share: one pool's jobs of one rule score and one repository.
pub type GroupKey = (i64, String);
/// Within a group: oldest first.
pub type GroupEntry = (i64, JobId);

#[derive(Debug, Default)]
pub struct JobQueue {
    by_pool: HashMap<String, BTreeSet<QueueKey>>,
    groups: HashMap<String, HashMap<GroupKey, BTreeSet<GroupEntry>>>,
    /// Per pool: jobs awaiting an environment approval.
    approvals_pending: HashMap<String, usize>,
    jobs: HashMap<JobId, QueuedJob>,
}

impl JobQueue {
    /// Adds or replaces a job.
    pub fn insert(&mut self, job: QueuedJob) {
        self.remove(job.id);
        self.by_pool
            .entry(job.pool.clone())
            .or_default()
            .insert(job.key);
        self.groups
            .entry(job.pool.clone())
            .or_default()
            .entry((job.priority, job.repository.clone()))
            .or_default()
            .insert((job.key.1, job.id));
        if job.needs_approval {
            *self.approvals_pending.entry(job.pool.clone()).or_default() += 1;
        }
        self.jobs.insert(job.id, job);
    }

    pub fn remove(&mut self, id: JobId) -> Option<QueuedJob> {
        let job = self.jobs.remove(&id)?;
        if let Some(set) = self.by_pool.get_mut(&job.pool) {
            set.remove(&job.key);
        }
        if let Some(groups) = self.groups.get_mut(&job.pool) {
            let key = (job.priority, job.repository.clone());
            if let Some(group) = groups.get_mut(&key) {
                group.remove(&(job.key.1, job.id));
                if group.is_empty() {
                    groups.remove(&key);
                }
            }
        }
        if job.needs_approval
            && let Some(n) = self.approvals_pending.get_mut(&job.pool)
        {
            *n -= 1;
        }
        Some(job)
    }

    /// A pool's jobs that want a runner: queued, less those awaiting an approval.
    pub fn pool_demand(&self, pool: &str) -> usize {
        self.pool_len(pool) - self.approvals_pending.get(pool).copied().unwrap_or(0)
    }

    /// A pool's fair-share groups: (rule score, repository) → job entries, oldest first.
    pub fn pool_groups(
        &self,
        pool: &str,
    ) -> impl Iterator<Item = (&GroupKey, &BTreeSet<GroupEntry>)> + '_ {
        self.groups.get(pool).into_iter().flat_map(|g| g.iter())
    }

    pub fn get(&self, id: JobId) -> Option<&QueuedJob> {
        self.jobs.get(&id)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn pool_len(&self, pool: &str) -> usize {
        self.by_pool.get(pool).map_or(0, BTreeSet::len)
    }

    /// A pool's jobs, best first.
    pub fn pool_iter<'a>(&'a self, pool: &str) -> impl Iterator<Item = &'a QueuedJob> + 'a {
        self.by_pool
            .get(pool)
            .into_iter()
            .flat_map(|set| set.iter())
            .map(|key| &self.jobs[&key.2])
    }

    /// Every job, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedJob> + '_ {
        self.jobs.values()
    }

    /// Every job, best first across pools.
    pub fn iter_ordered(&self) -> Vec<&QueuedJob> {
        let mut all: Vec<&QueuedJob> = self.jobs.values().collect();
        all.sort_by_key(|j| j.key);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job(id: i64, priority: i64, minute: i64) -> QueuedJob {
        QueuedJob {
            id,
            pool: "p".into(),
            repository: "o/r".into(),
            labels: vec![],
            priority,
            queued_at: Utc.timestamp_opt(minute * 60, 0).unwrap(),
            needs_approval: false,
            key: (
                Reverse(queue_rank(priority, minute * 60_000, 1.0)),
                minute * 60_000,
                id,
            ),
        }
    }

    #[test]
    fn best_first_with_ties_oldest_first() {
        let mut q = JobQueue::default();
        q.insert(job(1, 0, 10));
        q.insert(job(2, 100, 10));
        q.insert(job(3, 0, 5));
        q.insert(job(4, 50, 10));
        let order: Vec<i64> = q.pool_iter("p").map(|j| j.id).collect();
        assert_eq!(order, [2, 4, 3, 1]);
        q.remove(2);
        assert_eq!(q.pool_iter("p").next().unwrap().id, 4);
        assert_eq!(q.len(), 3);
    }
}
