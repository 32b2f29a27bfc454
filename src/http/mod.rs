//! HTTP: one router per resource, the bearer-token guard, and the server wiring.

pub mod body;
mod browser;
mod cleanup;
mod dashboard;
mod dead_letters;
pub mod error;
mod fleet_pools;
mod health;
mod history;
mod instances;
mod jobs;
mod metrics;
mod request_id;
mod runners;
mod seed_views;
pub mod serve;
pub mod snapshot;
mod webhooks;
pub mod ws;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use error::ApiError;

/// The whole HTTP surface. `with_metrics` is false when `/metrics` has its own listener
/// ([`metrics_router`]), so the main (often public) listener does not expose it twice.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let token = || middleware::from_fn_with_state(state.clone(), require_token);
    let api = Router::new()
        .merge(webhooks::management_routes())
        .merge(jobs::routes())
        .merge(history::routes())
        .merge(runners::routes())
        .merge(instances::routes())
        .merge(cleanup::routes())
        .route_layer(token());
    // What a browser can be made to reach: Host and cross-site checks in the open mode.
    // `/ws` checks the API token itself (header or `token=`), so that a refusal reaches a
    // browser as a close reason; `/` serves only static assets.
    let browsable = Router::new()
        .merge(api)
        .merge(ws::routes())
        .merge(dashboard::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            browser::guard,
        ));
    let mut router = Router::new()
        .merge(webhooks::ingest_routes())
        .merge(health::routes())
        .merge(browsable);
    if with_metrics {
        router = router.merge(metrics::routes().route_layer(token()));
    }
    router
        // Last, so that it reaches every route merged above.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn(refuse_long_uri))
        .layer(middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// The longest request target answered; no endpoint needs more (hyper's own limit is 64 KiB,
/// past which it answers 431 for the whole head).
const MAX_URI_BYTES: usize = 8 * 1024;

/// 414 with the error envelope for a request target over [`MAX_URI_BYTES`].
async fn refuse_long_uri(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::Status {
            status: axum::http::StatusCode::URI_TOO_LONG,
            code: "URI_TOO_LONG",
            message: format!("the request target is {length} bytes; at most {MAX_URI_BYTES}"),
        }
        .into_response();
    }
    next.run(request).await
}

/// 405 with the error envelope (axum's own has an empty body).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Status {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "METHOD_NOT_ALLOWED",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
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
