//! Liveness and readiness.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;

/// How long `/readyz` waits for the scheduler task to take a command: it answers between two
/// steps, and a step that takes longer than this is stuck (a hung database or engine call).
pub const SCHEDULER_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long `/readyz` waits for the database to answer: a database that cannot be reached may
/// keep a new connection waiting for the pool's whole acquire timeout (10 s), longer than a
/// load balancer waits for a health check.
pub const DATABASE_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process answers: it is alive.
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready to take deliveries: not shutting down, deliveries can be stored, the scheduler
/// processes them, and the database answers. A stalled pool does not fail readiness (see
/// `GET /api/webhooks/health`): every instance of a fleet would fail it at once.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    if let Some(failing) = state.ingest.writes_failing() {
        // The database answers reads but cannot store deliveries (disk full, read-only).
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"status": "writes_failing", "last_failure_seconds_ago": failing.as_secs()}),
            ),
        )
            .into_response();
    }
    if !state.fleet.connected() {
        // Cut off from the fleet's database: launching nothing, and soon given up by the
        // others; a load balancer should send deliveries to an instance that reaches it.
        // Asked before the scheduler and the database, which may keep the check waiting for
        // seconds while the database is unreachable; this is known at once.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "fleet_disconnected"})),
        )
            .into_response();
    }
    if !state.scheduler.answers(SCHEDULER_READY_WAIT).await {
        tracing::warn!("readiness check: the scheduler does not answer");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "scheduler_unresponsive"})),
        )
            .into_response();
    }
    let ping = tokio::time::timeout(DATABASE_READY_WAIT, state.store.ping()).await;
    match ping.map_err(|_| format!("no answer within {DATABASE_READY_WAIT:?}")) {
        Ok(Ok(())) => axum::Json(json!({"status": "ready"})).into_response(),
        Ok(Err(error)) => database_unavailable(&error.to_string()),
        Err(waited) => database_unavailable(&waited),
    }
}

fn database_unavailable(error: &str) -> Response {
    tracing::warn!(%error, "readiness check: database does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "database_unavailable"})),
    )
        .into_response()
}
