//! Typed views of the payloads runnerhub acts on, turned into domain observations.
//!
//! Only the fields runnerhub uses are declared; serde skips the rest, so GitHub adding
//! fields never breaks decoding.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::{JobAction, JobObservation, JobStatus, RunObservation};

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload does not match the `{event}` schema: {source}")]
    Schema {
        event: &'static str,
        source: serde_json::Error,
    },
    #[error("unknown workflow_job action `{0}`")]
    UnknownAction(String),
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct WorkflowJobEvent {
    action: String,
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: i64,
    run_id: i64,
    #[serde(default = "first_attempt")]
    run_attempt: i64,
    workflow_name: Option<String>,
    name: String,
    #[serde(default)]
    labels: Vec<String>,
    conclusion: Option<String>,
    runner_id: Option<i64>,
    runner_name: Option<String>,
    runner_group_name: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

fn first_attempt() -> i64 {
    1
}

/// Decodes a `workflow_job` delivery. The webhook's `action` decides the transition,
/// never `workflow_job.status` (a `queued` action may carry status `waiting`).
pub fn workflow_job(json: &str) -> Result<JobObservation, PayloadError> {
    let event: WorkflowJobEvent =
        serde_json::from_str(json).map_err(|source| PayloadError::Schema {
            event: "workflow_job",
            source,
        })?;
    let action: JobAction =
        JobStatus::parse(&event.action).ok_or(PayloadError::UnknownAction(event.action.clone()))?;
    let job = event.workflow_job;
    // Empty runner names are GitHub's way of saying "none yet".
    let runner_name = job.runner_name.filter(|n| !n.is_empty());
    Ok(JobObservation {
        action,
        id: job.id,
        run_id: job.run_id,
        run_attempt: job.run_attempt,
        repository: event.repository.full_name,
        workflow_name: job.workflow_name,
        name: job.name,
        labels: job.labels,
        conclusion: job.conclusion,
        runner_id: job.runner_id.filter(|id| *id > 0),
        runner_name,
        runner_group_name: job.runner_group_name.filter(|n| !n.is_empty()),
        created_at: job.created_at,
        started_at: job.started_at,
        completed_at: job.completed_at,
    })
}

#[derive(Deserialize)]
struct WorkflowRunEvent {
    action: String,
    workflow_run: WorkflowRunPayload,
    repository: Repository,
}

#[derive(Deserialize)]
struct WorkflowRunPayload {
    id: i64,
    name: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    event: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    #[serde(default = "first_attempt")]
    run_attempt: i64,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

pub fn workflow_run(json: &str) -> Result<RunObservation, PayloadError> {
    let event: WorkflowRunEvent =
        serde_json::from_str(json).map_err(|source| PayloadError::Schema {
            event: "workflow_run",
            source,
        })?;
    let run = event.workflow_run;
    Ok(RunObservation {
        action: event.action,
        id: run.id,
        repository: event.repository.full_name,
        workflow_name: run.name,
        head_branch: run.head_branch,
        head_sha: run.head_sha,
        event: run.event,
        status: run.status,
        conclusion: run.conclusion,
        run_attempt: run.run_attempt,
        created_at: run.created_at,
        updated_at: run.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let dir = format!("{}/tests/fixtures/github", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(format!("{dir}/webhooks/{name}")).unwrap()
    }

    #[test]
    fn decodes_every_workflow_job_fixture() {
        for (name, action) in [
            ("workflow_job.queued.payload.json", JobStatus::Queued),
            ("workflow_job.waiting.payload.json", JobStatus::Waiting),
            (
                "workflow_job.in_progress.payload.json",
                JobStatus::InProgress,
            ),
            (
                "workflow_job.completed.success.with-organization.payload.json",
                JobStatus::Completed,
            ),
            (
                "workflow_job.completed.failure.with-organization.payload.json",
                JobStatus::Completed,
            ),
            ("workflow_job.selfhosted.queued.json", JobStatus::Queued),
            (
                "workflow_job.selfhosted.in_progress.json",
                JobStatus::InProgress,
            ),
            (
                "workflow_job.selfhosted.completed.json",
                JobStatus::Completed,
            ),
            (
                "workflow_job.selfhosted.completed.cancelled-while-queued.json",
                JobStatus::Completed,
            ),
        ] {
            let obs = workflow_job(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(obs.action, action, "{name}");
            assert!(!obs.repository.is_empty());
        }
    }

    #[test]
    fn selfhosted_lifecycle_fields() {
        let obs = workflow_job(&fixture("workflow_job.selfhosted.in_progress.json")).unwrap();
        assert_eq!(obs.id, 29679449001);
        assert_eq!(obs.labels, ["self-hosted", "linux", "x64", "docker"]);
        assert_eq!(obs.runner_name.as_deref(), Some("dockerrunner-7f3a9c"));
        let cancelled = workflow_job(&fixture(
            "workflow_job.selfhosted.completed.cancelled-while-queued.json",
        ))
        .unwrap();
        assert_eq!(cancelled.conclusion.as_deref(), Some("cancelled"));
        assert_eq!(cancelled.runner_name, None);
    }

    #[test]
    fn decodes_workflow_run_fixtures() {
        for name in [
            "workflow_run.requested.payload.json",
            "workflow_run.in_progress.json",
            "workflow_run.completed.payload.json",
            "workflow_run.completed.with-pull-requests.payload.json",
        ] {
            workflow_run(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn schema_errors_name_the_event() {
        let err = workflow_job(r#"{"action":"queued"}"#).unwrap_err();
        assert!(err.to_string().contains("workflow_job"), "{err}");
        let err = workflow_job(
            r#"{"action":"exploded","workflow_job":{"id":1,"run_id":1,"name":"x"},"repository":{"full_name":"o/r"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, PayloadError::UnknownAction(_)));
    }
}
