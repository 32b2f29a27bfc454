//! The dead-letter list and its retry: deliveries whose processing failed after every attempt
//! are listed by `GET /api/webhooks/events?outcome=failed`, and
//! `POST /api/webhooks/events/{id}/retry` puts one back in the queue with a fresh round of
//! attempts (after the cause, say a database or GitHub outage, is fixed).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::store::DeadLetterRetry;

/// Outcomes `?outcome=` accepts.
const OUTCOMES: [&str; 5] = ["processed", "ignored", "failed", "rejected", "pending"];

/// Refuses an `outcome` filter that no event can have, naming the ones that exist.
pub(super) fn check_outcome(outcome: Option<&str>) -> Result<(), ApiError> {
    match outcome {
        Some(o) if !OUTCOMES.contains(&o) => Err(ApiError::bad_request(format!(
            "outcome `{o}` is not one of {}",
            OUTCOMES.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// `{id}` is the delivery GUID (the event `id` of the listing) or the row id.
pub(super) async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let mut row_id = state
        .store
        .event_by_delivery(&id)
        .await?
        .filter(|e| e.signature_valid)
        .map(|e| e.id);
    if row_id.is_none() {
        row_id = id.parse::<i64>().ok();
    }
    let outcome = match row_id {
        Some(row_id) => state.store.retry_dead_letter(row_id).await?,
        None => DeadLetterRetry::NotFound,
    };
    match outcome {
        DeadLetterRetry::Queued => {
            tracing::info!(event.id = %id, "dead letter queued for processing again");
            Ok((
                StatusCode::ACCEPTED,
                ok(json!({
                    "message": "queued for processing again, with a fresh round of attempts",
                    "id": id,
                    "row_id": row_id,
                })),
            )
                .into_response())
        }
        DeadLetterRetry::NotFound => Err(ApiError::NotFound(format!(
            "no event with delivery id or row id `{id}` is in the log"
        ))),
        DeadLetterRetry::NotFailed(outcome) => Err(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "NOT_A_DEAD_LETTER",
            message: format!(
                "event `{id}` is {outcome}: only a delivery whose processing failed after every \
                 attempt (outcome=failed) can be retried"
            ),
        }),
    }
}
