//! A request id on every request: in a tracing span around the handler (so every log line the
//! request causes carries it) and in the `x-request-id` response header (so a client can quote it).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";
/// Longest id accepted from a client (a proxy's id); longer or odd ones are replaced.
const MAX_INCOMING_LEN: usize = 64;

/// Tags the request with an id (a proxy's `x-request-id` when sane, else a fresh one) and logs
/// method, path (never the query: `/ws?token=` carries a secret) and status at debug level.
pub async fn tag(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_INCOMING_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // GitHub's delivery GUID ties a request to its row in the audit log.
    let delivery = request
        .headers()
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_INCOMING_LEN)
        .map(str::to_owned);
    let span = tracing::info_span!("request", request_id = %id, %method, %path, delivery = delivery.as_deref());
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request served"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
