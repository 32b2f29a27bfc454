//! `GET /api/jobs`, `GET /api/jobs/{id}`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::domain::JobStatus;
use crate::domain::{Job, JobId};
use crate::scheduler::handle::WaitInfo;
use crate::scheduler::job_json_with_wait;
use crate::store::JobFilter;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    status: Option<String>,
    repository: Option<String>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = q.status.as_deref().map(job_statuses).transpose()?;
    let page = state
        .store
        .list_jobs(&JobFilter {
            status: status.unwrap_or_default(),
            repository: q.repository,
            limit: q.limit,
            offset: q.offset,
        })
        .await?;
    let waits = wait_reasons(&state, &page.items).await;
    let jobs: Vec<_> = page
        .items
        .iter()
        .map(|job| job_json_with_wait(job, waits.get(&job.id)))
        .collect();
    Ok(ok(
        json!({"jobs": jobs, "total": page.total, "limit": page.limit, "offset": page.offset}),
    ))
}

/// The statuses a `status=` filter means. `pending` is the original RunnerHub's name for the
/// job queue (its troubleshooting section lists it with `?status=pending`): the jobs not started
/// yet, `queued` or `waiting` (for an environment approval), which is what a runner is wanted for.
fn job_statuses(s: &str) -> Result<Vec<JobStatus>, ApiError> {
    if s == "pending" {
        return Ok(vec![JobStatus::Queued, JobStatus::Waiting]);
    }
    JobStatus::parse(s)
        .map(|status| vec![status])
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status `{s}`: use pending (queued or waiting), queued, waiting, \
             in_progress or completed"
            ))
        })
}

async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not a job id")))?;
    match state.store.job(id).await? {
        Some(job) => {
            let waits = wait_reasons(&state, std::slice::from_ref(&job)).await;
            Ok(ok(job_json_with_wait(&job, waits.get(&job.id))))
        }
        None => Err(ApiError::NotFound(format!("job {id} is not known"))),
    }
}

/// Why the pending ones of `jobs` wait (DESIGN §13), from the scheduler.
pub async fn wait_reasons(state: &AppState, jobs: &[Job]) -> HashMap<JobId, WaitInfo> {
    let pending: Vec<JobId> = jobs
        .iter()
        .filter(|j| j.status.is_pending())
        .map(|j| j.id)
        .collect();
    if pending.is_empty() {
        return HashMap::new();
    }
    state.scheduler.wait_reasons(pending).await
}
