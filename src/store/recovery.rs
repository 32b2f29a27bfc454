//! What recovering lost deliveries keeps (DESIGN §12): the webhooks runnerhub knows, the
//! redeliveries it asked GitHub for, and the dead letters an operator may retry. A trait of its
//! own beside [`super::Store`] (which requires it), implemented per backend in
//! `sqlite_recovery.rs` and `postgres_recovery.rs`.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// A webhook runnerhub may list deliveries of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHook {
    /// `repository`, `organization`, or `integration` (the App's hook).
    pub kind: String,
    /// `owner/name`, the organization login, or empty for the App.
    pub owner: String,
    /// GitHub's hook id; 0 for the App's hook.
    pub hook_id: i64,
    /// `installed` (by `runnerhub hooks install`) or `received` (named by a delivery).
    pub source: String,
    pub first_seen_at: DateTime<Utc>,
}

/// One delivery GUID runnerhub asked GitHub to redeliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliveryAsk {
    pub delivery_guid: String,
    /// The hook it was asked of ([`KnownHook`]'s key).
    pub kind: String,
    pub owner: String,
    pub hook_id: i64,
    pub event: String,
    pub action: Option<String>,
    /// How many times it was asked.
    pub asks: i64,
    /// The newest attempt GitHub listed when it was last asked (attempt ids grow): a failed
    /// attempt above it is the answer to that ask.
    pub attempt_id: i64,
    pub first_asked_at: DateTime<Utc>,
    pub last_asked_at: DateTime<Utc>,
    /// When to ask again if it still failed; `None` once recovered or given up.
    pub next_ask_at: Option<DateTime<Utc>>,
    /// When it was found in the audit log after an ask.
    pub recovered_at: Option<DateTime<Utc>>,
}

/// What `POST /api/webhooks/events/{id}/retry` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterRetry {
    /// Queued for processing again, with a fresh round of attempts.
    Queued,
    /// No event with this row id.
    NotFound,
    /// The event is not a dead letter (its outcome, or `pending`).
    NotFailed(String),
}

#[async_trait]
pub trait RecoveryStore {
    /// Remembers a hook. A hook already known keeps its first sighting; `installed` wins over
    /// `received`.
    async fn record_hook(&self, hook: &KnownHook) -> StoreResult<()>;

    /// Forgets a hook (`runnerhub hooks remove`).
    async fn forget_hook(&self, kind: &str, owner: &str, hook_id: i64) -> StoreResult<()>;

    /// Every known hook, oldest first.
    async fn known_hooks(&self) -> StoreResult<Vec<KnownHook>>;

    /// Those of `guids` the audit log holds as genuine (signature-valid) deliveries: a refused
    /// attempt does not count, so a delivery refused with 401 is still missing.
    async fn stored_delivery_guids(&self, guids: &[String]) -> StoreResult<HashSet<String>>;

    /// The asks recorded for these GUIDs.
    async fn redelivery_asks(&self, guids: &[String]) -> StoreResult<Vec<RedeliveryAsk>>;

    /// Inserts or replaces the ask of `ask.delivery_guid`.
    async fn save_redelivery_ask(&self, ask: &RedeliveryAsk) -> StoreResult<()>;

    /// Asks not yet recovered, last asked at or after `since`.
    async fn unrecovered_redelivery_asks(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<RedeliveryAsk>>;

    /// Puts a dead letter (processing failed after every attempt) back in the queue.
    async fn retry_dead_letter(&self, id: i64) -> StoreResult<DeadLetterRetry>;
}
