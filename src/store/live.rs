//! Types of the live feed's log (`live_events`): what the event bus persists and replays.

use chrono::{DateTime, Utc};

/// One persisted live message, exactly as it was sent to WebSocket clients.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEventRow {
    /// Strictly increasing across restarts (see [`LiveEventBounds::reserved_seq`]).
    pub seq: i64,
    /// `webhook`, `job`, `workflow_run`, `runner`, `pool`, …
    pub kind: String,
    /// Present when the change belongs to one repository (filters use it).
    pub repository: Option<String>,
    /// When the change was published.
    pub time: DateTime<Utc>,
    /// The JSON text of the message, replayed byte for byte.
    pub message: String,
}

/// Where the persisted live log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveEventBounds {
    /// The highest seq stored.
    pub max_seq: i64,
    /// Seqs up to here may have been handed out before the last stop (a crash loses the
    /// unwritten tail); the next daemon starts above `max(max_seq, reserved_seq)`.
    pub reserved_seq: i64,
    /// Every seq up to here was pruned: a resume from below it cannot be served from the log.
    pub pruned_through: i64,
}
