//! `POST /api/webhooks/github` and the audit-log API under `/api/webhooks/*`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::store::{EventFilter, InsertOutcome};
use crate::webhook::MAX_BODY_BYTES;
use crate::webhook::ingest::IngestError;
use crate::webhook::intake::{self, NewDelivery, Rejection, Settled};
use crate::webhook::payload_codec::Payload;

pub fn ingest_routes() -> Router<AppState> {
    Router::new().route("/api/webhooks/github", post(receive))
}

pub fn management_routes() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks/events", get(list_events))
        .route("/api/webhooks/events/{id}", get(get_event))
        .route("/api/webhooks/statistics", get(statistics))
        .route("/api/webhooks/health", get(health))
        .route("/api/webhooks/test", post(test_delivery))
}

fn rejection_response(rejection: &Rejection) -> Response {
    let status = match rejection {
        Rejection::MissingHeader(_) | Rejection::BadHeader(..) => StatusCode::BAD_REQUEST,
        Rejection::MalformedJson(_) | Rejection::MissingFormPayload => StatusCode::BAD_REQUEST,
        Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Rejection::Signature(_) => StatusCode::UNAUTHORIZED,
    };
    metrics::counter!(crate::metrics::WEBHOOK_REJECTIONS_TOTAL, "code" => rejection.code())
        .increment(1);
    ApiError::Status {
        status,
        code: rejection.code(),
        message: rejection.to_string(),
    }
    .into_response()
}

fn ingest_failure(error: IngestError) -> Response {
    // 503, not 500: GitHub records the failure and the delivery can be redelivered.
    ApiError::Unavailable(error.to_string()).into_response()
}

/// Checks, stores durably, then acknowledges. Processing happens afterwards, from the log.
async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if state.shutdown.is_cancelled() {
        return ingest_failure(IngestError::ShuttingDown);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return rejection_response(&Rejection::TooLarge(MAX_BODY_BYTES));
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return rejection_response(&Rejection::TooLarge(MAX_BODY_BYTES)),
    };
    let secrets = state.webhook_secrets();
    let delivery = match intake::check(
        &headers,
        &body,
        &secrets,
        state.allow_unsigned(),
        Utc::now(),
    ) {
        Ok(delivery) => {
            crate::metrics::webhook_received();
            delivery
        }
        Err((rejection, attempt)) => {
            if let Some(attempt) = attempt {
                tracing::warn!(delivery = %attempt.delivery_id, event = %attempt.event, %rejection, "webhook signature refused");
                metrics::counter!(crate::metrics::WEBHOOK_SIGNATURE_FAILURES_TOTAL).increment(1);
                if let Err(error) = state.ingest.submit(*attempt).await {
                    tracing::error!(%error, "cannot record a refused delivery in the audit log");
                }
            }
            return rejection_response(&rejection);
        }
    };
    acknowledge(&state, delivery).await
}

async fn acknowledge(state: &AppState, delivery: NewDelivery) -> Response {
    let guid = delivery.delivery_id.clone();
    let event = delivery.event.clone();
    let ignored = match &delivery.settled {
        Some(Settled::Ignored(reason)) => Some(reason.clone()),
        _ => None,
    };
    let outcome = match state.ingest.submit(delivery).await {
        Ok(outcome) => outcome,
        Err(error) => return ingest_failure(error),
    };
    let (status, word) = match (&outcome, &ignored, event.as_str()) {
        (InsertOutcome::Duplicate, ..) => (StatusCode::OK, "duplicate"),
        (_, Some(_), _) => (StatusCode::OK, "ignored"),
        (_, None, "ping") => (StatusCode::OK, "pong"),
        _ => (StatusCode::ACCEPTED, "accepted"),
    };
    tracing::debug!(delivery = %guid, %event, status = word, "webhook acknowledged");
    let mut body = json!({"success": true, "status": word, "delivery": guid, "event": event});
    if let Some(reason) = ignored {
        body["reason"] = json!(reason);
    }
    (status, axum::Json(body)).into_response()
}

fn parse_query<T>(
    query: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    repository: Option<String>,
    event: Option<String>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let page = state
        .store
        .list_events(&EventFilter {
            repository: q.repository,
            event: q.event,
            limit: q.limit,
            offset: q.offset,
        })
        .await?;
    Ok(ok(
        json!({"events": page.items, "total": page.total, "limit": page.limit, "offset": page.offset}),
    ))
}

async fn get_event(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not an event id")))?;
    match state.store.event(id).await? {
        Some(event) => Ok(ok(event)),
        None => Err(ApiError::NotFound(format!("event {id} is not in the log"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsQuery {
    hours: Option<u32>,
}

async fn statistics(
    State(state): State<AppState>,
    query: Result<Query<StatisticsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let hours = parse_query(query)?.hours.unwrap_or(24);
    if !(1..=24 * 366).contains(&hours) {
        return Err(ApiError::bad_request("hours must be between 1 and 8784"));
    }
    let since = Utc::now() - chrono::Duration::hours(i64::from(hours));
    let stats = state.store.event_statistics(since).await?;
    Ok(ok(json!({"hours": hours, "statistics": stats})))
}

/// Pending deliveries older than this make the ingest pipeline "degraded".
const DEGRADED_PENDING_AGE_SECS: i64 = 60;

async fn health(State(state): State<AppState>) -> ApiResult {
    let health = state.store.ingest_health().await?;
    let oldest_age = health
        .oldest_pending_at
        .map(|at| (Utc::now() - at).num_seconds());
    let degraded = oldest_age.is_some_and(|age| age > DEGRADED_PENDING_AGE_SECS);
    Ok(ok(json!({
        "status": if degraded { "degraded" } else { "healthy" },
        "pending": health.pending,
        "oldest_pending_age_seconds": oldest_age,
        "last_received_at": health.last_received_at,
        "failed": health.failed,
        "signature_required": !state.allow_unsigned(),
    })))
}

/// Sends a synthetic `ping` through the whole pipeline (log, processor, event stream).
async fn test_delivery(State(state): State<AppState>) -> ApiResult {
    let guid = format!("test-{}", crate::webhook::new_delivery_guid());
    let payload = json!({"zen": "runnerhub test delivery", "hook_id": 0});
    let delivery = NewDelivery {
        delivery_id: guid.clone(),
        event: "ping".into(),
        action: None,
        repository: None,
        payload: Payload::compress(&payload.to_string()),
        signature_valid: true,
        received_at: Utc::now(),
        settled: None,
    };
    match state.ingest.submit(delivery).await {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            ok(json!({"delivery": guid, "event": "ping"})),
        )
            .into_response()),
        Err(error) => Err(ApiError::Unavailable(error.to_string())),
    }
}
