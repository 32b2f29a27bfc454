//! `DELETE /api/webhooks/cleanup?older_than=7d`: retention on demand, the original RunnerHub's
//! "cleanup old events" (the seed lists `DELETE …/webhooks/cleanup` and no parameters). It
//! deletes what the periodic pass would ([`crate::retention`]), with `older_than` as the
//! retention of everything, forged deliveries included; without it, with the configured
//! `database.retention` and `database.forged_retention`. Behind the API token like every
//! `/api/*` call.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::delete;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, ok};
use crate::app::AppState;
use crate::config::MIN_RETENTION;
use crate::retention::{self, Cutoffs};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/webhooks/cleanup", delete(cleanup))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupQuery {
    older_than: Option<String>,
}

async fn cleanup(
    State(state): State<AppState>,
    query: Result<Query<CleanupQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = Utc::now();
    let (cutoffs, older_than) = match &query.older_than {
        Some(text) => {
            let keep = parse_older_than(text)?;
            let before = retention::ago(now, keep).ok_or_else(|| {
                ApiError::bad_request(format!("older_than `{text}` is longer than the calendar"))
            })?;
            (Cutoffs::before(before), Some(text.clone()))
        }
        None => {
            let database = state.config().database.clone();
            let configured = (!database.retention.is_zero())
                .then(|| humantime::format_duration(database.retention).to_string());
            (Cutoffs::from_config(&database, now), configured)
        }
    };
    let report = retention::prune(state.store.as_ref(), &cutoffs, &state.shutdown)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cleanup: the database refused to delete old rows");
            ApiError::Unavailable("the database refused the cleanup; see the daemon's log".into())
        })?;
    tracing::info!(
        rows = report.rows(),
        older_than = older_than.as_deref().unwrap_or("configured"),
        "cleanup: deleted old rows on request"
    );
    Ok(ok(json!({
        "deleted_count": report.rows(),
        "deleted": {
            "deliveries": report.deliveries,
            "forged_deliveries": report.forged_deliveries,
            "jobs": report.jobs,
            "runs": report.runs,
            "runners": report.runners,
            "redeliveries": report.redeliveries,
            "pool_samples": report.pool_samples,
        },
        "older_than": older_than,
        "before": cutoffs.history,
        "forged_before": cutoffs.forged,
        "reclaimed_bytes": report.reclaimed_bytes,
        "complete": report.complete,
    })))
}

/// `7d`, `12h`, `1w`, `90m`: the duration format of the configuration, at least
/// [`MIN_RETENTION`] for the reason `database.retention` is.
fn parse_older_than(text: &str) -> Result<std::time::Duration, ApiError> {
    let keep = humantime::parse_duration(text.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "older_than `{text}` is not a duration like 7d, 72h or 30d"
        ))
    })?;
    if keep < MIN_RETENTION {
        return Err(ApiError::bad_request(format!(
            "older_than `{text}` is shorter than 3d: GitHub redelivers for 3 days, and a job \
             deleted sooner would be queued again by a late redelivery"
        )));
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_than_takes_the_config_format_and_refuses_less_than_three_days() {
        assert_eq!(parse_older_than("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_older_than("72h").unwrap(), MIN_RETENTION);
        assert_eq!(parse_older_than("2w").unwrap().as_secs(), 14 * 86_400);
        for bad in ["", "30", "soon", "-7d", "12h", "2d 23h"] {
            let error = parse_older_than(bad).unwrap_err().to_string();
            assert!(error.contains("older_than"), "{bad}: {error}");
        }
    }
}
