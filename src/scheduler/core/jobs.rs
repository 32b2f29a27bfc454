//! Keeping the queue and the runners in step with what deliveries say about jobs.

use chrono::{DateTime, Utc};

use super::queue::QueuedJob;
use super::{Core, Effect};
use crate::domain::{Job, JobOutcome, JobStatus, RunnerId, RunnerState};

impl Core {
    /// A job is queued while it wants a runner (pending, not refused) and a configured pool
    /// serves it, unless it can never get one ([`super::refusals`]); `in_progress` makes the
    /// runner it names busy, `completed` finishes it.
    pub(super) fn on_job(&mut self, job: &Job, now: DateTime<Utc>) {
        match (job.status, &job.pool) {
            (_, Some(pool)) if job.wants_runner() && self.config.pool(pool).is_some() => {
                if self.job_scope(&job.repository).is_none() {
                    let detail = format!(
                        "repository `{}` is not owner/name: there is no scope a runner could \
                         register at",
                        job.repository
                    );
                    self.refuse(job.id, pool, JobOutcome::UnusableRepository, detail);
                    return;
                }
                let aging = self.config.priority.aging_per_minute;
                self.queue.insert(QueuedJob::from_job(job, pool, aging));
            }
            (JobStatus::InProgress, _) => {
                let queued = self.queue.remove(job.id);
                let Some(id) = self.runner_named(job.runner_name.as_deref()) else {
                    return;
                };
                self.runner_repos.insert(id.clone(), job.repository.clone());
                let runner = self.runners.get_mut(&id).expect("found by name");
                let linked = runner.job_id.replace(job.id) != Some(job.id);
                // A poll may have seen it busy first: the link to its job is news all the same.
                if runner.advance(RunnerState::Busy, now) || linked {
                    let pool = runner.pool.clone();
                    self.backoff.online(&pool);
                    self.mark(&id);
                }
                if let (Some(queued), Some(seconds)) = (queued, job.wait_seconds()) {
                    self.effects.push(Effect::JobWaited {
                        pool: queued.pool,
                        seconds,
                    });
                }
            }
            (JobStatus::Completed, _) => {
                self.queue.remove(job.id);
                if let Some(id) = self.runner_named(job.runner_name.as_deref()) {
                    let runner = self.runners.get_mut(&id).expect("found by name");
                    if *runner.job_id.get_or_insert(job.id) == job.id {
                        self.runner_repos.insert(id.clone(), job.repository.clone());
                    }
                    let runner = self.runners.get_mut(&id).expect("found by name");
                    if runner.advance(RunnerState::Finished, now) {
                        self.mark(&id);
                    }
                }
            }
            _ => {
                self.queue.remove(job.id);
            }
        }
    }

    pub(super) fn runner_named(&self, name: Option<&str>) -> Option<RunnerId> {
        let name = name?;
        self.runners
            .values()
            .find(|r| r.name == name)
            .map(|r| r.id.clone())
    }
}
