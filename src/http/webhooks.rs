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

use super::body::{BodyError, read_body};
use super::error::{ApiError, ApiResult, ok};
use super::seed_views::{self, SeedEvent};
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
        .route(
            "/api/webhooks/events/{id}/retry",
            post(super::dead_letters::retry),
        )
        .route("/api/webhooks/statistics", get(statistics))
        .route("/api/webhooks/health", get(health))
        .route("/api/webhooks/test", post(test_delivery))
}

fn rejection_response(rejection: &Rejection) -> Response {
    let status = rejection.status();
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
///
/// The headers are checked before the body is read, so a request that cannot be a delivery
/// costs no memory; the body is read within `server.body_timeout` and the shared body budget.
async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if state.shutdown.is_cancelled() {
        return ingest_failure(IngestError::ShuttingDown);
    }
    let secrets = state.webhook_secrets();
    if let Err((rejection, attempt)) =
        intake::check_head(&headers, &secrets, state.allow_unsigned(), Utc::now())
    {
        return refuse(&state, rejection, attempt).await;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let deadline = state.config().server.body_timeout;
    let body = match read_body(body, declared, MAX_BODY_BYTES, &state.body_budget, deadline).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(limit)) => {
            return rejection_response(&Rejection::TooLarge(limit));
        }
        Err(error) => {
            tracing::debug!(%error, "webhook body not read");
            metrics::counter!(crate::metrics::WEBHOOK_REJECTIONS_TOTAL, "code" => error.code())
                .increment(1);
            return ApiError::from(error).into_response();
        }
    };
    let delivery = match intake::check(
        &headers,
        &body.bytes,
        &secrets,
        state.allow_unsigned(),
        Utc::now(),
    ) {
        Ok(delivery) => {
            crate::metrics::webhook_received();
            if delivery.signature_valid {
                state
                    .hook_sightings
                    .note(&headers, delivery.repository.as_deref());
            }
            delivery
        }
        Err((rejection, attempt)) => return refuse(&state, rejection, attempt).await,
    };
    // The budget is given back once the delivery is handed to the writer (its payload is a
    // compressed copy).
    drop(body);
    acknowledge(&state, delivery).await
}

/// Answers a refused request; a refused signature is recorded in the audit log first.
async fn refuse(
    state: &AppState,
    rejection: Rejection,
    attempt: Option<Box<NewDelivery>>,
) -> Response {
    if let Some(attempt) = attempt {
        tracing::warn!(delivery = %attempt.delivery_id, event = %attempt.event, %rejection, "webhook signature refused");
        metrics::counter!(crate::metrics::WEBHOOK_SIGNATURE_FAILURES_TOTAL).increment(1);
        if let Err(error) = state.ingest.submit(*attempt).await {
            tracing::error!(%error, "cannot record a refused delivery in the audit log");
        }
    }
    rejection_response(&rejection)
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
    let message = seed_views::ack_message(word, ignored.as_deref());
    let mut body = json!({
        "success": true, "message": message, "status": word, "delivery": guid, "event": event,
    });
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
    /// `failed` lists the dead letters (see [`EventFilter::outcome`]).
    outcome: Option<String>,
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
    super::dead_letters::check_outcome(q.outcome.as_deref())?;
    let page = state
        .store
        .list_events(&EventFilter {
            repository: q.repository,
            event: q.event,
            outcome: q.outcome,
            limit: match q.limit {
                0 => seed_views::DEFAULT_EVENTS_LIMIT,
                limit => limit,
            },
            offset: q.offset,
        })
        .await?;
    let events: Vec<SeedEvent> = page.items.iter().map(SeedEvent::from).collect();
    Ok(ok(
        json!({"events": events, "total": page.total, "limit": page.limit, "offset": page.offset}),
    ))
}

/// `{id}` is a delivery GUID (the event `id` the listing shows) or a row id (`row_id`); a
/// GUID that looks like a number is looked up as a GUID first.
async fn get_event(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let mut found = state.store.event_by_delivery(&id).await?;
    if found.is_none()
        && let Ok(row_id) = id.parse::<i64>()
    {
        found = state.store.event(row_id).await?;
    }
    match found {
        Some(event) => Ok(ok(SeedEvent::from(&event))),
        None => Err(ApiError::NotFound(format!(
            "no event with delivery id or row id `{id}` is in the log"
        ))),
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
    Ok(ok(json!({
        "hours": hours,
        "statistics": stats,
        "timeWindow": seed_views::time_window(hours),
        "summary": seed_views::summary(&stats),
        "byEvent": seed_views::by_event(&stats),
    })))
}

/// Pending deliveries older than this make the ingest pipeline "degraded".
const DEGRADED_PENDING_AGE_SECS: i64 = 60;

/// How long health waits for the scheduler's pool counters before saying it does not answer.
const SCHEDULER_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `degraded` when deliveries wait too long to be processed, or a pool is stalled (queued jobs
/// it cannot launch for, not merely full: see `scheduler::core::status`), with the cause. Not
/// a readiness failure: every instance of a fleet sees the same stalled pool, and none of them
/// should leave the load balancer for it (`/readyz` fails only when intake cannot work).
async fn health(State(state): State<AppState>) -> ApiResult {
    let health = state.store.ingest_health().await?;
    let oldest_age = health
        .oldest_pending_at
        .map(|at| (Utc::now() - at).num_seconds());
    let pools = tokio::time::timeout(SCHEDULER_ANSWER_WAIT, state.scheduler.pools()).await;
    let scheduler_answers = matches!(pools, Ok(Some(_)));
    let stalled_pools: Vec<serde_json::Value> = pools
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let b = p.stalled?;
            Some(json!({"pool": p.name, "reason": b.reason, "since": b.since, "jobs": b.jobs}))
        })
        .collect();
    let degraded = oldest_age.is_some_and(|age| age > DEGRADED_PENDING_AGE_SECS)
        || !stalled_pools.is_empty()
        || !scheduler_answers;
    // The original's `recentEvents` and `hourlyStats` cover the last hour.
    let last_hour = state
        .store
        .event_statistics(Utc::now() - chrono::Duration::hours(1))
        .await?;
    Ok(ok(json!({
        "status": if degraded { "degraded" } else { "healthy" },
        "pending": health.pending,
        "oldest_pending_age_seconds": oldest_age,
        "last_received_at": health.last_received_at,
        "failed": health.failed,
        "stalled_pools": stalled_pools,
        "scheduler_answers": scheduler_answers,
        "signature_required": !state.allow_unsigned(),
        "recentEvents": last_hour.total,
        "lastEventTime": health.last_received_at,
        "hourlyStats": seed_views::by_event(&last_hour),
    })))
}

/// The optional body of `POST /api/webhooks/test`, as the original RunnerHub documents it
/// (`{"eventType": "ping", "repository": "test/repo"}`); no body means a plain ping.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TestRequest {
    event_type: Option<String>,
    repository: Option<String>,
}

fn parse_test_request(body: &[u8]) -> Result<TestRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TestRequest::default());
    }
    let request: TestRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"eventType\": \"ping\", \"repository\": \"owner/repo\"}}: {e}"
        ))
    })?;
    // Only a ping: any other synthetic event would change jobs and runners.
    if let Some(other) = request.event_type.as_deref().filter(|&t| t != "ping") {
        return Err(ApiError::bad_request(format!(
            "eventType `{other}` cannot be tested: only `ping` is sent through the pipeline"
        )));
    }
    if request
        .repository
        .as_deref()
        .is_some_and(|r| r.split('/').count() != 2)
    {
        return Err(ApiError::bad_request(
            "repository must look like `owner/repo`",
        ));
    }
    Ok(request)
}

/// The largest body `POST /api/webhooks/test` reads (its JSON has two short fields).
const TEST_BODY_MAX_BYTES: usize = 16 * 1024;

/// Sends a synthetic `ping` through the whole pipeline (log, processor, event stream).
async fn test_delivery(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let deadline = state.config().server.body_timeout;
    let body = read_body(
        body,
        declared,
        TEST_BODY_MAX_BYTES,
        &state.body_budget,
        deadline,
    )
    .await?;
    let request = parse_test_request(&body.bytes)?;
    let guid = format!("test-{}", crate::webhook::new_delivery_guid());
    let mut payload = json!({"zen": "runnerhub test delivery", "hook_id": 0});
    if let Some(repo) = &request.repository {
        payload["repository"] = json!({"full_name": repo});
    }
    let delivery = NewDelivery {
        delivery_id: guid.clone(),
        event: "ping".into(),
        action: None,
        repository: request.repository.clone(),
        payload: Payload::compress(&payload.to_string()),
        signature_valid: true,
        received_at: Utc::now(),
        settled: None,
    };
    match state.ingest.submit(delivery).await {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            ok(json!({
                "message": "Test ping stored; it goes through the pipeline like a delivery",
                "delivery": guid,
                "event": "ping",
                "repository": request.repository,
            })),
        )
            .into_response()),
        Err(error) => Err(ApiError::Unavailable(error.to_string())),
    }
}
