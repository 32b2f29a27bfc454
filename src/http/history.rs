//! `GET /api/history?hours=24`: pool history for the dashboard's charts (see
//! [`crate::history`]): per pool, the queue and the runners busy, idle and starting, one point
//! per minute (per few minutes past a day); and the queue waits' p50 and p95 per hour.
//!
//! ```text
//! {"hours": 24, "since": "…T07:00:00Z", "until": "…", "sample_interval_seconds": 60,
//!  "step_seconds": 60,
//!  "pools": [{"name": "linux", "points": [{"at", "queued", "busy", "idle", "starting"}, …]}, …],
//!  "waits": [{"hour": "…T07:00:00Z", "jobs": 12, "p50_seconds": 3.5, "p95_seconds": 41.0,
//!             "pools": {"linux": {"jobs", "p50_seconds", "p95_seconds"}}}, …]}
//! ```

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::history::{self, DEFAULT_HOURS, MAX_HOURS};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/history", get(get_history))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    hours: Option<u32>,
}

async fn get_history(
    State(state): State<AppState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let hours = query.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(format!(
            "hours must be between 1 and {MAX_HOURS} (history is kept a week)"
        )));
    }
    let pools: Vec<String> = state
        .config()
        .pools
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let history = history::read(state.store.as_ref(), &pools, hours, chrono::Utc::now()).await?;
    Ok(ok(history))
}
