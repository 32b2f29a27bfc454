//! HTTP: one router per resource, the bearer-token guard, and the server wiring.

mod dashboard;
pub mod error;
mod health;
mod jobs;
mod metrics;
mod request_id;
mod runners;
mod seed_views;
pub mod snapshot;
mod webhooks;
pub mod ws;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::app::AppState;
use error::ApiError;

/// The whole HTTP surface. `with_metrics` is false when `/metrics` has its own listener
/// ([`metrics_router`]), so the main (often public) listener does not expose it twice.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let mut guarded = Router::new()
        .merge(webhooks::management_routes())
        .merge(jobs::routes())
        .merge(runners::routes());
    if with_metrics {
        guarded = guarded.merge(metrics::routes());
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(webhooks::ingest_routes())
        .merge(health::routes())
        // `/ws` checks the API token itself (header or `token=`), so that a refusal reaches a
        // browser as a close reason; `/` serves only static assets.
        .merge(ws::routes())
        .merge(dashboard::routes())
        .merge(guarded)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// The dedicated `server.metrics_listen` listener: `/metrics` only, no token (see
/// [`metrics`] for why).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .merge(metrics::routes())
        .fallback(|| async { ApiError::NotFound("this listener serves only /metrics".into()) })
        .with_state(state)
}

/// When `server.api_tokens` is set, `/api/*` (but not the webhook) needs `Authorization: Bearer`.
async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = state.api_tokens();
    if tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if token_matches(&tokens, token) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        )),
        None => Err(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header".into(),
        )),
    }
}

/// Constant-time comparison against every configured token.
pub fn token_matches(tokens: &[crate::config::Secret], presented: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Comparing digests makes the comparison independent of the tokens' lengths.
    let digest = Sha256::digest(presented.as_bytes());
    tokens.iter().fold(false, |found, t| {
        let want = Sha256::digest(t.expose().as_bytes());
        let same = want
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        found | same
    })
}
