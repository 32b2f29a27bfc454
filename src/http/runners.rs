//! `GET /api/runners`, `GET /api/runners/pool/status`, `DELETE /api/runners/{id}`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::domain::RunnerState;
use crate::scheduler::RemoveError;
use crate::store::RunnerFilter;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/runners", get(list_runners))
        .route("/api/runners/pool/status", get(pool_status))
        .route("/api/runners/{id}", delete(remove_runner))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnersQuery {
    state: Option<String>,
    pool: Option<String>,
    /// Include removed runners (history).
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

async fn list_runners(
    State(state): State<AppState>,
    query: Result<Query<RunnersQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let runner_state = q
        .state
        .as_deref()
        .map(|s| {
            RunnerState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown state `{s}`: use requested, creating, idle, busy, finished, removed or failed"
                ))
            })
        })
        .transpose()?;
    let page = state
        .store
        .list_runners(&RunnerFilter {
            state: runner_state,
            pool: q.pool,
            include_removed: q.all,
            limit: q.limit,
            offset: q.offset,
        })
        .await?;
    Ok(ok(
        json!({"runners": page.items, "total": page.total, "limit": page.limit, "offset": page.offset}),
    ))
}

async fn pool_status(State(state): State<AppState>) -> ApiResult {
    let snapshot = state
        .scheduler
        .snapshot()
        .await
        .ok_or_else(|| ApiError::Unavailable("the scheduler is not running".into()))?;
    Ok(ok(json!({
        "pools": snapshot.pools,
        "max_runners": state.config().limits.max_runners,
        "queued": snapshot.queue.len(),
    })))
}

/// Drains a runner: idle ones are deregistered and removed now, busy ones after their job.
async fn remove_runner(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    match state.scheduler.remove_runner(id).await {
        Ok(runner) => Ok((
            StatusCode::ACCEPTED,
            ok(json!({"runner": runner, "draining": true})),
        )
            .into_response()),
        Err(RemoveError::NotFound(id)) => Err(ApiError::NotFound(format!(
            "runner {id} is not known or already removed"
        ))),
        Err(RemoveError::Stopped) => {
            Err(ApiError::Unavailable("the scheduler is not running".into()))
        }
    }
}
