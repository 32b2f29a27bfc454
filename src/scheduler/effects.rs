//! Carrying out the core's effects: store writes and live events in order, GitHub and Docker
//! calls in tasks that report back as inputs, metrics.

use std::future::Future;
use std::sync::Arc;

use super::actor::{Scheduler, runner_event};
use super::core::{Effect, Input};
use super::launcher::{self, LaunchRequest, Teardown, TeardownRequest};
use chrono::Utc;

use super::processor::job_json;
use crate::docker::ContainerRuntime;
use crate::domain::{JobId, JobOutcome, NameOwnership, Runner};
use crate::events::{EventKind, LiveEvent};
use crate::github::{GithubApi, RunnerScope};
use crate::metrics as catalog;
use crate::store::fleet::{Claim, QuotaGate};

impl Scheduler {
    pub(super) async fn carry_out(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::SaveRunner(runner) => {
                    if let Err(error) = self.deps.store.save_runner(&runner).await {
                        tracing::error!(%error, runner = %runner.name, "cannot record runner state");
                    }
                    self.deps.bus.publish(runner_event(&runner));
                }
                Effect::Launch(runner) => self.launch(runner).await,
                Effect::Teardown { runner_id, request } => {
                    self.spawn_side_effect(move |github, docker| async move {
                        Input::TornDown {
                            runner_id,
                            outcome: launcher::teardown(github, docker, request).await,
                        }
                    })
                }
                Effect::ListContainers => self.spawn_side_effect(|_, docker| async move {
                    Input::Containers(docker.list_managed().await.map_err(|e| e.to_string()))
                }),
                Effect::RemoveContainer { container_id, name } => {
                    tracing::info!(container = %name, "removing an orphaned runner container");
                    self.spawn_quiet(|_, docker| async move {
                        if let Err(error) = docker.remove(&container_id).await {
                            tracing::warn!(container = %name, %error, "cannot remove orphaned container");
                        }
                    });
                }
                Effect::ListGithubRunners { scopes, full } => {
                    self.spawn_side_effect(move |github, _| async move {
                        let mut observed = Vec::with_capacity(scopes.len());
                        for scope in scopes {
                            let result =
                                github.list_runners(&scope).await.map_err(|e| e.to_string());
                            observed.push((scope, result));
                        }
                        Input::GithubRunners { full, observed }
                    })
                }
                Effect::RemoveRegistration {
                    scope,
                    github_runner_id,
                    name,
                } => self.remove_orphan_registration(scope, github_runner_id, name),
                Effect::JobWaited { pool, seconds } => {
                    metrics::histogram!(catalog::JOB_WAIT_SECONDS, "pool" => pool).record(seconds)
                }
                Effect::RunnerOnline { pool, seconds } => {
                    metrics::histogram!(catalog::QUEUED_TO_RUNNER_IDLE_SECONDS, "pool" => pool)
                        .record(seconds)
                }
                Effect::LaunchFailed { pool, reason } => {
                    metrics::counter!(catalog::RUNNER_LAUNCH_FAILURES_TOTAL, "pool" => pool, "reason" => reason)
                        .increment(1)
                }
                Effect::RefuseJob {
                    job_id,
                    pool,
                    outcome,
                    detail,
                } => self.refuse_job(job_id, pool, outcome, detail).await,
            }
        }
    }

    /// Records a job's outcome, then says so once: a `job` event and a log line (in a fleet
    /// every instance decides alike, and only the one whose write recorded it speaks).
    async fn refuse_job(
        &mut self,
        job_id: JobId,
        pool: String,
        outcome: JobOutcome,
        detail: String,
    ) {
        let recorded = self
            .deps
            .store
            .record_job_outcome(job_id, outcome, &detail, Utc::now())
            .await;
        let job = match recorded {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(error) => {
                // It is out of this run's queue; the next start decides again.
                tracing::error!(%error, job.id = job_id, "cannot record a refused job's outcome");
                return;
            }
        };
        tracing::warn!(
            job.id = job_id, repository = %job.repository, %pool, outcome = outcome.as_str(),
            "job refused: it will get no runner: {detail}"
        );
        metrics::counter!(catalog::JOBS_REFUSED_TOTAL, "pool" => pool, "outcome" => outcome.as_str())
            .increment(1);
        self.waits.note_job(&job);
        self.deps.bus.publish(LiveEvent {
            kind: EventKind::Job,
            repository: Some(job.repository.clone()),
            data: job_json(&job),
        });
    }

    /// In a fleet, claims the job a runner is launched for: false (and the core told) when
    /// another instance has it, false when a quota of its repository is full across the fleet
    /// (it stays queued here), or when the claim could not be made.
    async fn claim(&mut self, runner: &Runner) -> bool {
        let (Some(member), Some(job_id)) = (self.deps.fleet.as_member(), runner.launched_for)
        else {
            return true; // alone, or a warm runner: nothing to claim
        };
        let gate = self.quota_gate(runner);
        match member
            .store
            .claim_job(job_id, &member.instance, gate.as_ref())
            .await
        {
            Ok(Claim::Claimed) => true,
            Ok(Claim::Elsewhere) => {
                tracing::debug!(job.id = job_id, "fleet: job claimed by another instance");
                let _ = self.inputs.send(Input::ClaimedElsewhere { job_id });
                false
            }
            Ok(Claim::OverQuota(detail)) => {
                // The next fleet sync tells the core what fills the quota; until then the
                // runner given up a second later stands for it.
                tracing::debug!(job.id = job_id, "fleet: not claimed: {detail}");
                false
            }
            Err(error) => {
                tracing::warn!(%error, job.id = job_id, "fleet: cannot claim a job; not launching");
                false
            }
        }
    }

    /// The quotas a claim for `runner` checks across the fleet, decided by the core's policy.
    fn quota_gate(&self, runner: &Runner) -> Option<QuotaGate<'_>> {
        let policy = self.core.policy();
        let repository = self.core.runner_repository(&runner.id)?;
        let quotas = policy.quota_names_of(repository);
        (!quotas.is_empty()).then(|| QuotaGate {
            quotas,
            refusal: Box::new(move |fleet| policy.refuses_claim(repository, fleet)),
        })
    }

    /// A launch that could not be claimed is given up a second later: until then its runner
    /// still covers the job, so an unreachable database is not asked again at once, in a loop.
    fn give_up_launch_later(&self, runner_id: String) {
        let inputs = self.inputs.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let _ = inputs.send(Input::LaunchNotRecorded { runner_id });
        });
    }

    /// Records the new runner durably before anything exists outside, then launches it.
    async fn launch(&mut self, runner: Runner) {
        if !self.claim(&runner).await {
            self.give_up_launch_later(runner.id);
            return;
        }
        let pool = self.core.config().pool(&runner.pool).cloned();
        let recorded = self.deps.store.save_runner(&runner).await;
        let (Some(pool), Ok(())) = (pool, recorded.as_ref()) else {
            if let Err(error) = recorded {
                tracing::error!(%error, pool = %runner.pool, "cannot record a new runner; not launching");
            }
            let _ = self.inputs.send(Input::LaunchNotRecorded {
                runner_id: runner.id,
            });
            return;
        };
        let Some(scope) = launcher::parse_scope(&runner.scope) else {
            return;
        };
        tracing::info!(runner = %runner.name, pool = %pool.name, job.id = ?runner.launched_for, %scope, "launching runner");
        self.deps.bus.publish(runner_event(&runner));
        let config = self.core.config();
        let request = LaunchRequest {
            runner_id: runner.id.clone(),
            name: runner.name,
            labels: runner.labels,
            scope,
            runner_group_id: config.github.runner_group_id,
            pool,
            instance: config.server.instance_id.clone(),
        };
        let runner_id = runner.id;
        let slots = self.launch_slots.clone();
        // A burst of launches registers REGISTRATION_CONCURRENCY and starts
        // LAUNCH_CONCURRENCY containers at a time (launcher::LaunchSlots).
        self.spawn_side_effect(move |github, docker| async move {
            Input::Launched {
                runner_id,
                result: launcher::launch(github, docker, request, slots).await,
            }
        });
    }

    /// Deletes a registration named like ours that no record here owns, unless a live record
    /// under another `server.instance_id` owns it.
    fn remove_orphan_registration(&self, scope: RunnerScope, github_id: i64, name: String) {
        let store = self.deps.store.clone();
        let instance = self.core.config().server.instance_id.clone();
        let ownership = Runner::name_ownership(&name, &self.core.config().runner_name_prefix());
        self.spawn_quiet(move |github, docker| async move {
            let record = match store.runner_by_name(&name).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(runner = %name, %error, "cannot look up a registration's record; next reconcile retries");
                    return;
                }
            };
            if let Some(record) = &record
                && record.instance != instance
                && !record.state.is_terminal()
            {
                return;
            }
            // An old-style name (`runnerhub-…`, before `github.runner_name_prefix`) is ours only
            // if our database recorded it: another deployment's runners look the same.
            if ownership != NameOwnership::Ours && record.is_none() {
                return;
            }
            tracing::info!(runner = %name, %scope, "removing a GitHub runner registration no record owns");
            let request = TeardownRequest {
                scope: Some(scope),
                github_runner_id: Some(github_id),
                container_id: None,
            };
            let outcome = launcher::teardown(github, docker, request).await;
            if outcome != Teardown::Done {
                tracing::warn!(runner = %name, ?outcome, "orphan registration not removed yet; next reconcile retries");
            }
        });
    }

    /// Runs a slow GitHub/Docker call in its own task; its result comes back as an input, so
    /// the scheduler never waits on the outside world.
    fn spawn_side_effect<Work, Done>(&self, work: Work)
    where
        Work: FnOnce(Arc<dyn GithubApi>, Arc<dyn ContainerRuntime>) -> Done + Send + 'static,
        Done: Future<Output = Input> + Send + 'static,
    {
        let inputs = self.inputs.clone();
        self.spawn_quiet(move |github, docker| async move {
            let _ = inputs.send(work(github, docker).await);
        });
    }

    /// Runs a side effect that reports nothing back; it stops at shutdown like the others (what
    /// it leaves half-done is what a crash leaves, reconciled at the next start).
    fn spawn_quiet<Work, Done>(&self, work: Work)
    where
        Work: FnOnce(Arc<dyn GithubApi>, Arc<dyn ContainerRuntime>) -> Done + Send + 'static,
        Done: Future<Output = ()> + Send + 'static,
    {
        let (github, docker, shutdown) = (
            self.deps.github.current(),
            self.deps.docker.clone(),
            self.shutdown.clone(),
        );
        self.tasks.spawn(async move {
            tokio::select! {
                () = work(github, docker) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
