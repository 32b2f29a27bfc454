//! Records and filters exchanged with the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Job, JobStatus, RunnerState, WorkflowRun};

/// What became of one delivery offered to [`super::Store::insert_deliveries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Newly stored under this row id.
    Stored { id: i64 },
    /// A genuine delivery with this GUID is already stored: nothing changed.
    Duplicate,
}

/// A stored delivery waiting to be processed.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub payload: std::sync::Arc<str>,
    pub attempts: i64,
}

/// How processing a delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// Applied; the note says what it did.
    Processed(String),
    /// Nothing to do, and why (stale transition, GitHub-hosted job, …).
    Ignored(String),
    /// Failed; retried at `retry_at`, or given up when `None`.
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

impl DeliveryOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Processed(_) => "processed",
            DeliveryOutcome::Ignored(_) => "ignored",
            DeliveryOutcome::Failed { .. } => "failed",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            DeliveryOutcome::Processed(d) | DeliveryOutcome::Ignored(d) => d,
            DeliveryOutcome::Failed { error, .. } => error,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessedDelivery {
    pub id: i64,
    pub outcome: DeliveryOutcome,
    /// Attempts including this one.
    pub attempts: i64,
    pub at: DateTime<Utc>,
}

/// Everything one processing step writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ProcessingBatch {
    pub deliveries: Vec<ProcessedDelivery>,
    pub jobs: Vec<Job>,
    pub runs: Vec<WorkflowRun>,
}

/// Page of results with the total count of matches.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: u32,
    pub offset: u32,
}

pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_PAGE: u32 = 50;

/// The page a listing actually serves: `limit` 0 means the default, and no page is larger than
/// [`MAX_PAGE`]. Every backend pages through this, so that the API answers alike.
pub(super) fn page_bounds(limit: u32, offset: u32) -> (u32, u32) {
    let limit = if limit == 0 {
        DEFAULT_PAGE
    } else {
        limit.min(MAX_PAGE)
    };
    (limit, offset)
}

/// The `jobs.outcome` column back.
pub(super) fn outcome_from_row(
    stored: Option<String>,
) -> Result<Option<crate::domain::JobOutcome>, super::StoreError> {
    stored
        .map(|s| {
            crate::domain::JobOutcome::parse(&s)
                .ok_or_else(|| super::StoreError::Corrupt(format!("jobs.outcome `{s}`")))
        })
        .transpose()
}

/// A stored (compressed) payload as the single-event view shows it.
pub(super) fn stored_payload_json(stored: Vec<u8>) -> Result<serde_json::Value, super::StoreError> {
    let text = crate::webhook::payload_codec::Payload::from_stored(stored)
        .text()
        .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
    // Unverified attempts may not be JSON: show them as a string.
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub repository: Option<String>,
    pub event: Option<String>,
    /// `processed`, `ignored`, `rejected`: deliveries processed with that outcome; `failed`: the
    /// dead letters (processing failed after every attempt); `pending`: not processed yet (a
    /// failing delivery between its attempts included).
    pub outcome: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Jobs in any of these statuses; empty means every status.
    pub status: Vec<JobStatus>,
    pub repository: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// One row of the audit log as the API shows it (payload only on the single-event view).
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// The row id, also accepted by `GET /api/webhooks/events/{id}`. The API serves it as
    /// `row_id`: the original RunnerHub's event `id` is the delivery GUID.
    #[serde(rename = "row_id")]
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub signature_valid: bool,
    pub received_at: DateTime<Utc>,
    pub processed: bool,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub outcome_detail: Option<String>,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EventStatistics {
    pub since: Option<DateTime<Utc>>,
    pub total: i64,
    pub by_event: BTreeMap<String, i64>,
    pub by_outcome: BTreeMap<String, i64>,
    pub signature_failures: i64,
    /// Deliveries whose outcome is not recorded yet.
    pub pending: i64,
    /// Per event type, counted by the `processed` flag (the original RunnerHub's `byEvent`).
    #[serde(skip)]
    pub by_event_counts: BTreeMap<String, EventCounts>,
}

/// Deliveries of one event type: `processed + pending = total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub total: i64,
    pub processed: i64,
    pub pending: i64,
}

impl EventStatistics {
    /// Adds `n` deliveries of `event` to the per-event counts.
    pub(super) fn count_processed(&mut self, event: &str, processed: bool, n: i64) {
        let counts = self.by_event_counts.entry(event.to_owned()).or_default();
        counts.total += n;
        if processed {
            counts.processed += n;
        } else {
            counts.pending += n;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestHealth {
    /// Deliveries stored but not processed yet.
    pub pending: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub last_received_at: Option<DateTime<Utc>>,
    /// Deliveries that failed for good.
    pub failed: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RunnerFilter {
    pub state: Option<RunnerState>,
    pub pool: Option<String>,
    /// Include removed runners (history) when no state is given.
    pub include_removed: bool,
    pub limit: u32,
    pub offset: u32,
}
