//! The response fields of the original RunnerHub's API reference (`timeWindow`, `summary`,
//! `byEvent`, an event's `id` as its delivery GUID, …), set beside runnerhub's own: scripts
//! and dashboards written against that reference keep working (DESIGN §7).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::{EventRecord, EventStatistics};

/// `GET /api/webhooks/events` serves this many when no `limit` is given, as the original did.
pub const DEFAULT_EVENTS_LIMIT: u32 = 100;

/// One audit-log row: the stored record plus the original's `id` (the delivery GUID) and
/// `timestamp` (when it was received). The numeric row id is `row_id`.
#[derive(Serialize)]
pub struct SeedEvent<'a> {
    id: &'a str,
    timestamp: DateTime<Utc>,
    #[serde(flatten)]
    record: &'a EventRecord,
}

impl<'a> From<&'a EventRecord> for SeedEvent<'a> {
    fn from(record: &'a EventRecord) -> Self {
        SeedEvent {
            id: &record.delivery_id,
            timestamp: record.received_at,
            record,
        }
    }
}

/// The original's `timeWindow`, worded as it worded it (`"24 hours"`).
pub fn time_window(hours: u32) -> String {
    format!("{hours} hours")
}

/// `summary`: every delivery in the window, by whether it has been processed.
pub fn summary(stats: &EventStatistics) -> Value {
    let processed: i64 = stats.by_event_counts.values().map(|c| c.processed).sum();
    let pending: i64 = stats.by_event_counts.values().map(|c| c.pending).sum();
    json!({"totalEvents": stats.total, "processedEvents": processed, "pendingEvents": pending})
}

/// `byEvent` (and health's `hourlyStats`): one entry per event type, the busiest first.
pub fn by_event(stats: &EventStatistics) -> Value {
    let mut rows: Vec<_> = stats.by_event_counts.iter().collect();
    rows.sort_by(|(a, x), (b, y)| y.total.cmp(&x.total).then(a.cmp(b)));
    rows.into_iter()
        .map(|(event, c)| {
            json!({"event": event, "total": c.total, "processed": c.processed, "pending": c.pending})
        })
        .collect()
}

/// What the webhook answer's `message` says for each acknowledgement.
pub fn ack_message(status: &str, reason: Option<&str>) -> String {
    match (status, reason) {
        ("duplicate", _) => "Delivery already received; nothing changed".into(),
        ("ignored", Some(reason)) => format!("Webhook received and ignored: {reason}"),
        ("ignored", None) => "Webhook received and ignored".into(),
        ("pong", _) => "Ping received".into(),
        _ => "Webhook received and stored; it is processed in order".into(),
    }
}
