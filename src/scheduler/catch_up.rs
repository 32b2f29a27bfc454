//! Catching up on deliveries that never arrived.
//!
//! GitHub does not retry a failed delivery: whatever it sent while the daemon was down, or
//! lost on the way, is gone unless someone asks. So every `github.catch_up_interval` (and once
//! shortly after start) this asks GitHub for the queued, waiting and running jobs of the
//! repositories runnerhub has seen jobs from, and for each job whose state GitHub has ahead of
//! runnerhub's (unknown, queued → in progress, → completed) writes the delivery that went
//! missing into the durable log, as GitHub would have sent it. The processor then handles it
//! like any other: same state machine, same runners, same audit trail. Their GUIDs say where
//! they came from (`catch-up:<job>:<status>`), which also makes each one happen once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::{Job, JobStatus};
use crate::github::{GithubApi, GithubError, RunnerScope, SharedGithub};
use crate::store::{JobFilter, Store};
use crate::webhook::intake::{NewDelivery, Settled};
use crate::webhook::payload_codec::Payload;

/// The first pass after start: soon, but after the scheduler has restored its state.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(5);
/// Repositories with a job updated this recently are looked at: GitHub keeps deliveries for
/// redelivery 3 days, and a job older than this is past saving by a runner anyway.
const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::days(3);
/// Bounds on the API calls of one pass (GitHub's rate limit is 5,000 an hour for a token).
const MAX_REPOSITORIES: u32 = 50;
/// Open jobs of one repository asked about one by one when GitHub no longer lists them.
const MAX_LOOKUPS_PER_REPOSITORY: u32 = 20;

/// Runs passes until `shutdown`. Not started without pools: no credentials are required then.
pub async fn run(
    store: Arc<dyn Store>,
    github: Arc<SharedGithub>,
    wake: Arc<Notify>,
    config: watch::Receiver<Arc<Config>>,
    fleet: crate::fleet::Fleet,
    shutdown: CancellationToken,
) {
    let mut next = tokio::time::Instant::now() + FIRST_PASS_AFTER;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let interval = config.borrow().github.catch_up_interval;
        if interval.is_zero() {
            next = tokio::time::Instant::now() + Duration::from_secs(60); // off; look again later
            continue;
        }
        if !fleet.is_leader() {
            // In a fleet the leader catches up for all; look again when this one may lead.
            next = tokio::time::Instant::now() + Duration::from_secs(5);
            continue;
        }
        // Cutting a pass short leaves nothing half-written: each repository's findings are
        // one transaction.
        // The client in force now: a reload swaps it for the next pass.
        let client = github.current();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = catch_up(store.as_ref(), client.as_ref(), &wake) => result,
        };
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!(crate::metrics::CATCH_UP_PASSES_TOTAL, "result" => outcome).increment(1);
        match result {
            Ok(0) => tracing::debug!("catch-up: nothing missed"),
            Ok(made_up) => tracing::warn!(
                made_up,
                "catch-up: recorded job changes whose deliveries never arrived"
            ),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "catch-up pass failed"),
        }
        next = tokio::time::Instant::now() + interval;
    }
}

/// One pass; returns how many missed deliveries it recorded. Each repository's findings are
/// written (and the processor woken) as soon as they are known.
pub async fn catch_up(
    store: &dyn Store,
    github: &dyn GithubApi,
    wake: &Notify,
) -> anyhow::Result<usize> {
    let since = Utc::now() - LOOKBACK;
    let mut recorded = 0;
    for repository in store
        .job_repositories_since(since, MAX_REPOSITORIES)
        .await?
    {
        let Some(scope) = RunnerScope::repository(&repository) else {
            continue;
        };
        let missed = match missed_in(store, github, &repository, &scope).await {
            Ok(missed) => missed,
            // The rest of the pass would fail the same way, and spend calls the scheduler
            // needs for registering runners.
            Err(error) if stops_the_pass(&error) => {
                return Err(anyhow::Error::new(error).context("catch-up pass stopped"));
            }
            // One repository's failure (gone, no access) must not stop the rest.
            Err(error) => {
                tracing::warn!(
                    %repository,
                    %error,
                    "catch-up: cannot compare this repository's jobs with GitHub"
                );
                continue;
            }
        };
        if missed.is_empty() {
            continue;
        }
        let outcomes = store.insert_deliveries(&missed).await?;
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, crate::store::InsertOutcome::Stored { .. }))
            .count();
        metrics::counter!(crate::metrics::CATCH_UP_DELIVERIES_TOTAL).increment(stored as u64);
        recorded += stored;
        wake.notify_one();
    }
    Ok(recorded)
}

/// Errors after which the rest of a pass would fail the same way (and spend API calls the
/// scheduler needs for registering runners).
fn stops_the_pass(error: &CatchUpError) -> bool {
    matches!(
        error,
        CatchUpError::Github(GithubError::RateLimited { .. } | GithubError::Unauthorized(_))
    )
}

#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The deliveries of one repository that GitHub's answers show were missed.
async fn missed_in(
    store: &dyn Store,
    github: &dyn GithubApi,
    repository: &str,
    scope: &RunnerScope,
) -> Result<Vec<NewDelivery>, CatchUpError> {
    let active = github.active_jobs(scope).await?;
    let ids: Vec<i64> = active.iter().filter_map(job_id).collect();
    let known: HashMap<i64, JobStatus> = store
        .jobs_by_id(&ids)
        .await?
        .into_iter()
        .map(|j| (j.id, j.status))
        .collect();
    let mut missed: Vec<NewDelivery> = active
        .iter()
        .filter_map(|job| missed_delivery(repository, job, known.get(&job_id(job)?).copied()))
        .collect();

    // Jobs runnerhub still has open that GitHub no longer lists as active: they finished (or
    // their run was cancelled) and the `completed` delivery was lost.
    let listed: HashSet<i64> = ids.into_iter().collect();
    for job in unlisted_open_jobs(store, repository, &listed).await? {
        match github.job(scope, job.id).await {
            Ok(Some(at_github)) => {
                missed.extend(missed_delivery(repository, &at_github, Some(job.status)));
            }
            Ok(None) => {
                // Its run was deleted: GitHub will never complete it, so it is closed here
                // (else it stays queued, or its runner busy, for good).
                tracing::warn!(%repository, job = job.id, "catch-up: job gone at GitHub (404); closing it");
                missed.extend(gone_delivery(repository, &job));
            }
            Err(error) => {
                let error = CatchUpError::from(error);
                if stops_the_pass(&error) {
                    return Err(error);
                }
                // What was found so far still counts.
                tracing::warn!(%repository, job = job.id, %error, "catch-up: cannot look up a job");
            }
        }
    }
    Ok(missed)
}

/// Running, then queued and waiting jobs of the repository that GitHub's list of active jobs
/// left out, up to the lookup bound. Running ones first: a lost `completed` leaves a job (and
/// its runner's record) open for good, a lost `queued` only delays it.
async fn unlisted_open_jobs(
    store: &dyn Store,
    repository: &str,
    listed: &HashSet<i64>,
) -> Result<Vec<Job>, CatchUpError> {
    let fetch = MAX_LOOKUPS_PER_REPOSITORY.saturating_add(listed.len() as u32);
    let running = store
        .list_jobs(&JobFilter {
            status: vec![JobStatus::InProgress],
            repository: Some(repository.to_owned()),
            limit: fetch,
            offset: 0,
        })
        .await?
        .items;
    let pending = store.pending_jobs(Some(repository), fetch).await?;
    Ok(running
        .into_iter()
        .chain(pending)
        .filter(|job| !listed.contains(&job.id))
        .take(MAX_LOOKUPS_PER_REPOSITORY as usize)
        .collect())
}

fn job_id(job: &Value) -> Option<i64> {
    job.get("id")?.as_i64()
}

/// GitHub's REST status as the webhook action that reports it. `requested` and `pending`
/// come before `queued` in GitHub's own lifecycle: nothing for runnerhub to do yet.
fn status_of(job: &Value) -> Option<JobStatus> {
    JobStatus::parse(job.get("status")?.as_str()?)
}

/// The `workflow_job` delivery that would have told runnerhub what GitHub knows of `job`,
/// when GitHub is ahead of `ours`.
fn missed_delivery(repository: &str, job: &Value, ours: Option<JobStatus>) -> Option<NewDelivery> {
    let id = job_id(job)?;
    let status = status_of(job)?;
    if ours.is_some_and(|ours| !status.is_ahead_of(ours)) {
        return None;
    }
    let payload = json!({
        "action": status.as_str(),
        "workflow_job": job,
        "repository": {"full_name": repository},
    });
    // The same label bounds as a webhook's: GitHub's API could hand back what no delivery
    // would be scheduled with, and the job is then recorded but never scheduled.
    let labels: Vec<&str> = job
        .get("labels")
        .and_then(Value::as_array)
        .map(|labels| labels.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let settled = crate::domain::check_job_labels(&labels)
        .err()
        .map(|why| Settled::Ignored(format!("refused for scheduling: {why}")));
    Some(NewDelivery {
        delivery_id: format!("catch-up:{id}:{}", status.as_str()),
        event: "workflow_job".into(),
        action: Some(status.as_str().into()),
        repository: Some(repository.to_owned()),
        payload: Payload::compress(&payload.to_string()),
        // Not a webhook, but as trustworthy: runnerhub asked GitHub's API itself.
        signature_valid: true,
        received_at: Utc::now(),
        settled,
    })
}

/// The `completed` delivery that closes a job GitHub no longer knows (404): no conclusion,
/// completed now, keyed so that it is made once.
/// Whether a delivery is one [`gone_delivery`] made up: the processor gives its job the
/// `not_found` outcome.
pub fn is_gone_delivery(delivery_id: &str) -> bool {
    delivery_id.starts_with("catch-up:") && delivery_id.ends_with(":gone")
}

fn gone_delivery(repository: &str, job: &Job) -> Option<NewDelivery> {
    let rest = json!({
        "id": job.id, "run_id": job.run_id, "run_attempt": job.run_attempt,
        "name": job.name, "workflow_name": job.workflow_name, "labels": job.labels,
        "status": "completed", "conclusion": null, "created_at": job.created_at,
        "started_at": job.started_at, "completed_at": Utc::now(),
        "runner_name": job.runner_name,
    });
    let mut delivery = missed_delivery(repository, &rest, Some(job.status))?;
    delivery.delivery_id = format!("catch-up:{}:gone", job.id);
    Some(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest_job(id: i64, status: &str) -> Value {
        json!({"id": id, "run_id": 9, "name": "build", "status": status, "labels": ["self-hosted"]})
    }

    #[test]
    fn only_jobs_github_has_ahead_are_made_up() {
        let queued = rest_job(1, "queued");
        assert!(
            missed_delivery("o/r", &queued, None).is_some(),
            "unknown job"
        );
        assert!(missed_delivery("o/r", &queued, Some(JobStatus::Queued)).is_none());
        assert!(missed_delivery("o/r", &queued, Some(JobStatus::InProgress)).is_none());
        let done = rest_job(1, "completed");
        let made = missed_delivery("o/r", &done, Some(JobStatus::InProgress)).unwrap();
        assert_eq!(made.delivery_id, "catch-up:1:completed");
        assert_eq!(made.action.as_deref(), Some("completed"));
        assert!(missed_delivery("o/r", &rest_job(1, "requested"), None).is_none());
    }

    #[test]
    fn a_job_over_the_label_bounds_is_recorded_but_refused_for_scheduling() {
        let mut job = rest_job(2, "queued");
        let long = "x".repeat(crate::domain::MAX_LABEL_BYTES + 1);
        job["labels"] = json!(["self-hosted", long]);
        let made = missed_delivery("o/r", &job, None).unwrap();
        match made.settled {
            Some(Settled::Ignored(why)) => {
                assert!(
                    why.starts_with("refused for scheduling: label 1 is 257 bytes"),
                    "{why}"
                )
            }
            other => panic!("expected refused, got {other:?}"),
        }
        job["labels"] = json!(vec!["l"; crate::domain::MAX_JOB_LABELS + 1]);
        assert!(
            missed_delivery("o/r", &job, None)
                .unwrap()
                .settled
                .is_some()
        );
        assert!(
            missed_delivery("o/r", &rest_job(3, "queued"), None)
                .unwrap()
                .settled
                .is_none()
        );
    }

    #[test]
    fn a_job_gone_at_github_is_closed_by_a_made_up_completed_delivery() {
        let now = Utc::now();
        let job = Job {
            id: 5,
            run_id: 9,
            run_attempt: 1,
            repository: "o/r".into(),
            workflow_name: Some("ci".into()),
            name: "build".into(),
            labels: vec!["self-hosted".into()],
            priority: 0,
            pool: Some("linux".into()),
            status: JobStatus::Queued,
            conclusion: None,
            runner_id: None,
            runner_name: None,
            runner_group_name: None,
            created_at: Some(now),
            started_at: None,
            completed_at: None,
            first_seen_at: now,
            updated_at: now,
            outcome: None,
            outcome_detail: None,
        };
        let made = gone_delivery("o/r", &job).unwrap();
        assert_eq!(made.delivery_id, "catch-up:5:gone");
        assert!(is_gone_delivery(&made.delivery_id));
        assert!(!is_gone_delivery("catch-up:5:completed"));
        let observed =
            crate::webhook::payload::workflow_job(&made.payload.text().unwrap()).unwrap();
        assert_eq!((observed.id, observed.action), (5, JobStatus::Completed));
        assert_eq!(observed.conclusion, None);
        assert_eq!(observed.labels, ["self-hosted"]);
    }

    #[test]
    fn a_made_up_delivery_reads_like_githubs() {
        let made = missed_delivery("o/r", &rest_job(7, "in_progress"), None).unwrap();
        let text = made.payload.text().unwrap();
        let observed = crate::webhook::payload::workflow_job(&text).unwrap();
        assert_eq!(observed.id, 7);
        assert_eq!(observed.action, JobStatus::InProgress);
        assert_eq!(observed.repository, "o/r");
    }
}
