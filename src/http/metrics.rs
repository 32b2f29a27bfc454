//! `GET /metrics`: the Prometheus text exposition.
//!
//! Access: on the main listener `/metrics` sits behind the same bearer-token guard as `/api/*`
//! (open when `server.api_tokens` is empty), because its `repository` labels tell what the API
//! would only tell a token holder. On the dedicated `server.metrics_listen` listener it is open:
//! that listener exists to be bound to a private address a Prometheus server scrapes, and
//! Prometheus scrapes are simplest without credentials. No metric carries a secret.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

/// The Prometheus text format version the exporter renders.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> Response {
    // Rendering also drains histogram samples gathered since the last scrape, which keeps
    // memory bounded without a separate upkeep task.
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
