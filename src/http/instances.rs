//! `GET /api/instances`: the fleet's instances (DESIGN §9), or this daemon alone;
//! `DELETE /api/instances/{id}`: forget a dead instance whose host left the fleet.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::store::fleet::{Forget, InstanceRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/instances", get(list_instances))
        .route("/api/instances/{id}", delete(forget_instance))
}

/// A host taken out of the fleet for good stays listed dead (and `RunnerhubFleetInstanceDead`
/// firing) until it is forgotten here.
async fn forget_instance(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let Some(member) = state.fleet.as_member() else {
        return Err(ApiError::NotFound(
            "not a fleet (database.fleet): this daemon is its only instance".into(),
        ));
    };
    let conflict = |message: String| ApiError::Status {
        status: StatusCode::CONFLICT,
        code: "CONFLICT",
        message,
    };
    let forgotten = member
        .store
        .forget_instance(&id, member.timeout)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot forget a fleet instance");
            ApiError::Unavailable("the database does not answer; see the daemon's log".into())
        })?;
    match forgotten {
        Forget::Forgotten => {
            tracing::info!(instance = %id, "fleet instance forgotten");
            Ok(ok(serde_json::json!({ "forgotten": id })))
        }
        Forget::Unknown => Err(ApiError::NotFound(format!(
            "no instance `{id}` in the fleet"
        ))),
        Forget::Alive => Err(conflict(format!(
            "instance `{id}` is alive: stop it first, and forget it once it is listed dead"
        ))),
        Forget::HasRunners(n) => Err(conflict(format!(
            "instance `{id}` still has {n} live runner(s) recorded: the leader deregisters the \
             idle ones, a busy one's record ends with its job"
        ))),
    }
}

async fn list_instances(State(state): State<AppState>) -> ApiResult {
    let instances = match state.fleet.as_member() {
        Some(member) => member
            .store
            .instances(member.timeout)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot list the fleet's instances");
                ApiError::Unavailable("the database does not answer; see the daemon's log".into())
            })?,
        None => vec![alone(&state).await],
    };
    Ok(ok(serde_json::json!({
        "fleet": state.fleet.is_fleet(),
        "instances": instances,
    })))
}

/// A daemon without `database.fleet`: the one instance, always leading.
async fn alone(state: &AppState) -> InstanceRecord {
    let config = state.config();
    let runners = state
        .scheduler
        .snapshot()
        .await
        .map_or(0, |s| s.runners.len() as i64);
    InstanceRecord {
        id: config.server.instance_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: state.started_at,
        last_heartbeat: chrono::Utc::now(),
        alive: true,
        dead_since: None,
        leader: true,
        pools: config.pools.iter().map(|p| p.name.clone()).collect(),
        pool_settings: crate::fleet::pool_settings(&config),
        capacity: i64::from(config.limits.max_runners),
        runners,
    }
}
