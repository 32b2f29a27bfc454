//! `/_sim/`: the control API (JSON, no auth: the simulator listens on loopback) for the CLI and
//! other processes, and the runner protocol described in [`super::jit`].
//!
//! - `POST /_sim/jobs` a [`JobSpec`] or `{"jobs": [JobSpec...]}` → 201 `{"jobs": [{run_id, job_id}]}`
//! - `GET /_sim/jobs`, `GET /_sim/jobs/{id}`, `POST /_sim/jobs/{id}/cancel`
//! - `GET /_sim/runners`, `GET /_sim/runs`
//! - `POST /_sim/push` `{"repository", "branch"}`, `POST /_sim/pull_request` (same body)
//! - `GET /_sim/hooks`: the installed hooks
//! - `GET /_sim/deliveries`, `POST /_sim/deliveries/{id}/redeliver`
//! - `GET|PUT /_sim/faults` ([`Faults`]), `PUT /_sim/rate-limit` `{"limit", "used"}`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::{FaultState, Faults};
use super::state::{JobSpec, JobStatus, RunnerStatus, StateError};
use super::{Shared, webhook};

/// Longest a runner's job poll may wait.
const MAX_POLL_WAIT_SECS: u64 = 60;

type S = State<Arc<Shared>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"message": message.into()}))).into_response()
}

fn state_error(e: StateError) -> Response {
    let status = match e {
        StateError::NotFound => StatusCode::NOT_FOUND,
        StateError::NameTaken(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e.to_string())
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/jobs", post(enqueue).get(list_jobs))
        .route("/_sim/jobs/{id}", get(get_job))
        .route("/_sim/jobs/{id}/cancel", post(cancel_job))
        .route("/_sim/runners", get(|State(s): S| async move { Json(json!(s.state().runners.values().collect::<Vec<_>>())) }))
        .route("/_sim/runs", get(|State(s): S| async move { Json(json!(s.state().runs.values().collect::<Vec<_>>())) }))
        .route("/_sim/push", post(push))
        .route("/_sim/pull_request", post(pull_request))
        .route("/_sim/hooks", get(|State(s): S| async move { Json(json!(s.state().hooks.hooks.values().collect::<Vec<_>>())) }))
        .route("/_sim/deliveries", get(|State(s): S| async move { Json(json!(s.state().deliveries)) }))
        .route("/_sim/deliveries/{id}/redeliver", post(redeliver))
        .route("/_sim/faults", get(|State(s): S| async move { Json(json!(s.faults().faults)) }).put(set_faults))
        .route("/_sim/rate-limit", put(set_rate_limit))
        .route("/_sim/runner/connect", post(runner_connect))
        .route("/_sim/runner/job", get(runner_poll))
        .route("/_sim/runner/job/{id}/complete", post(runner_complete))
        .with_state(shared)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EnqueueBody {
    Many { jobs: Vec<JobSpec> },
    One(JobSpec),
}

async fn enqueue(
    State(shared): S,
    body: Result<Json<EnqueueBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let specs = match body {
        Ok(Json(EnqueueBody::Many { jobs })) => jobs,
        Ok(Json(EnqueueBody::One(spec))) => vec![spec],
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()),
    };
    let mut created = Vec::new();
    for spec in specs {
        match shared.enqueue_job(spec) {
            Ok(job) => created.push(job),
            Err(e) => return state_error(e),
        }
    }
    (StatusCode::CREATED, Json(json!({"jobs": created}))).into_response()
}

async fn list_jobs(State(shared): S) -> Json<Value> {
    Json(json!(shared.state().jobs.values().collect::<Vec<_>>()))
}

async fn get_job(State(shared): S, Path(id): Path<u64>) -> Response {
    match shared.state().jobs.get(&id) {
        Some(job) => Json(json!(job)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such job"),
    }
}

async fn cancel_job(State(shared): S, Path(id): Path<u64>) -> Response {
    let out = shared.state().cancel_job(id);
    match out {
        Ok(out) => {
            shared.emit(out);
            Json(json!({"cancelled": id})).into_response()
        }
        Err(e) => state_error(e),
    }
}

#[derive(Deserialize)]
struct PushBody {
    repository: String,
    #[serde(default = "default_branch")]
    branch: String,
}

fn default_branch() -> String {
    "main".into()
}

async fn push(State(shared): S, Json(body): Json<PushBody>) -> Response {
    let d = shared.state().push_delivery(&body.repository, &body.branch);
    shared.emit(vec![d]);
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

async fn pull_request(State(shared): S, Json(body): Json<PushBody>) -> Response {
    let d = shared
        .state()
        .pull_request_delivery(&body.repository, &body.branch);
    shared.emit(vec![d]);
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

async fn redeliver(State(shared): S, Path(id): Path<u64>) -> Response {
    match webhook::redeliver(&shared, id) {
        Some(()) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such delivery"),
    }
}

async fn set_faults(State(shared): S, Json(faults): Json<Faults>) -> Json<Value> {
    *shared.faults() = FaultState::new(faults.clone());
    Json(json!(faults))
}

#[derive(Deserialize)]
struct RateLimitBody {
    limit: u32,
    #[serde(default)]
    used: u32,
}

async fn set_rate_limit(State(shared): S, Json(body): Json<RateLimitBody>) -> StatusCode {
    let mut rate = shared.rate.lock().unwrap_or_else(|e| e.into_inner());
    rate.limit = body.limit;
    rate.used = body.used;
    StatusCode::NO_CONTENT
}

/// The runner a protocol call comes from, by its credential.
fn runner_of(shared: &Shared, headers: &HeaderMap) -> Option<u64> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    shared
        .state()
        .runners
        .values()
        .find(|r| r.credential == token)
        .map(|r| r.id)
}

async fn runner_connect(State(shared): S, headers: HeaderMap) -> Response {
    let Some(id) = runner_of(&shared, &headers) else {
        return error(
            StatusCode::NOT_FOUND,
            "runner not registered (removed, or bad credential)",
        );
    };
    let out = shared.state().connect_runner(id);
    match out {
        Ok(out) => {
            shared.emit(out);
            let name = shared
                .state()
                .runners
                .get(&id)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            tracing::info!(runner.id = id, runner.name = %name, "simulated runner connected");
            Json(json!({"runner_id": id, "name": name})).into_response()
        }
        Err(e) => state_error(e),
    }
}

/// Long-poll for the job assigned to this runner.
async fn runner_poll(
    State(shared): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let wait = q
        .get("wait_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .min(MAX_POLL_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let Some(runner_id) = runner_of(&shared, &headers) else {
        return error(
            StatusCode::NOT_FOUND,
            "runner not registered (removed, or bad credential)",
        );
    };
    loop {
        // Register for the wake-up before looking, so an assignment in between is not missed.
        let notified = shared.runner_wakeup.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let state = shared.state();
            let Some(runner) = state.runners.get(&runner_id) else {
                return error(StatusCode::NOT_FOUND, "runner was removed");
            };
            if runner.status == RunnerStatus::Registered {
                return error(StatusCode::CONFLICT, "runner has not connected");
            }
            if let Some(job) = runner
                .job_id
                .and_then(|id| state.jobs.get(&id))
                .filter(|j| j.status == JobStatus::InProgress)
            {
                return Json(json!({
                    "job_id": job.id, "run_id": job.run_id, "repository": job.spec.repository,
                    "labels": job.spec.labels, "workflow_name": job.spec.workflow_name,
                    "job_name": job.spec.job_name, "duration_ms": job.spec.duration.as_millis() as u64,
                    "conclusion": job.spec.conclusion,
                }))
                .into_response();
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
            _ = shared.cancel.cancelled() => return error(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down"),
        }
    }
}

#[derive(Deserialize)]
struct CompleteBody {
    conclusion: String,
}

async fn runner_complete(
    State(shared): S,
    headers: HeaderMap,
    Path(job_id): Path<u64>,
    Json(body): Json<CompleteBody>,
) -> Response {
    let Some(runner_id) = runner_of(&shared, &headers) else {
        return error(StatusCode::NOT_FOUND, "runner was removed");
    };
    let out = {
        let mut state = shared.state();
        if state.runners.get(&runner_id).and_then(|r| r.job_id) != Some(job_id) {
            return error(StatusCode::CONFLICT, "job is not assigned to this runner");
        }
        state.complete_job(job_id, &body.conclusion)
    };
    match out {
        Ok(out) => {
            shared.emit(out);
            tracing::info!(runner.id = runner_id, job.id = job_id, conclusion = %body.conclusion, "simulated job completed");
            Json(json!({"job_id": job_id, "conclusion": body.conclusion})).into_response()
        }
        Err(e) => state_error(e),
    }
}
