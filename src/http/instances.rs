//! `GET /api/instances`: the fleet's instances (DESIGN §9), or this daemon alone.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::store::fleet::InstanceRecord;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/instances", get(list_instances))
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
