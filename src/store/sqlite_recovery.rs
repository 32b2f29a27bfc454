//! [`RecoveryStore`] for [`SqliteStore`]: known hooks, redelivery asks, dead-letter retries.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::sqlite::SqliteStore;
use super::{DeadLetterRetry, KnownHook, RecoveryStore, RedeliveryAsk, StoreResult};

/// GUIDs per `IN (…)` list, well under SQLite's bound-variable limit.
const GUIDS_PER_QUERY: usize = 500;

const ASK_COLUMNS: &str = "delivery_guid, kind, owner, hook_id, event, action, asks, \
     attempt_id, first_asked_at, last_asked_at, next_ask_at, recovered_at";

fn ask_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<RedeliveryAsk> {
    Ok(RedeliveryAsk {
        delivery_guid: row.try_get("delivery_guid")?,
        kind: row.try_get("kind")?,
        owner: row.try_get("owner")?,
        hook_id: row.try_get("hook_id")?,
        event: row.try_get("event")?,
        action: row.try_get("action")?,
        asks: row.try_get("asks")?,
        attempt_id: row.try_get("attempt_id")?,
        first_asked_at: row.try_get("first_asked_at")?,
        last_asked_at: row.try_get("last_asked_at")?,
        next_ask_at: row.try_get("next_ask_at")?,
        recovered_at: row.try_get("recovered_at")?,
    })
}

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn record_hook(&self, hook: &KnownHook) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_hooks (kind, owner, hook_id, source, first_seen_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, owner, hook_id) DO UPDATE SET \
             source = CASE WHEN excluded.source = 'installed' THEN 'installed' ELSE source END",
        )
        .bind(&hook.kind)
        .bind(&hook.owner)
        .bind(hook.hook_id)
        .bind(&hook.source)
        .bind(hook.first_seen_at)
        .execute(self.writer().await.ready().await)
        .await?;
        self.durable().await
    }

    async fn forget_hook(&self, kind: &str, owner: &str, hook_id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM webhook_hooks WHERE kind = ? AND owner = ? AND hook_id = ?")
            .bind(kind)
            .bind(owner)
            .bind(hook_id)
            .execute(self.writer().await.ready().await)
            .await?;
        self.durable().await
    }

    async fn known_hooks(&self) -> StoreResult<Vec<KnownHook>> {
        let rows = sqlx::query(
            "SELECT kind, owner, hook_id, source, first_seen_at FROM webhook_hooks \
             ORDER BY first_seen_at, kind, owner, hook_id",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KnownHook {
                    kind: row.try_get("kind")?,
                    owner: row.try_get("owner")?,
                    hook_id: row.try_get("hook_id")?,
                    source: row.try_get("source")?,
                    first_seen_at: row.try_get("first_seen_at")?,
                })
            })
            .collect()
    }

    async fn stored_delivery_guids(&self, guids: &[String]) -> StoreResult<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in guids.chunks(GUIDS_PER_QUERY) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT delivery_id FROM webhook_events WHERE signature_valid = 1 AND delivery_id IN (",
            );
            let mut list = query.separated(", ");
            for guid in chunk {
                list.push_bind(guid);
            }
            query.push(")");
            for row in query.build().fetch_all(self.reader()).await? {
                found.insert(row.try_get("delivery_id")?);
            }
        }
        Ok(found)
    }

    async fn redelivery_asks(&self, guids: &[String]) -> StoreResult<Vec<RedeliveryAsk>> {
        let mut asks = Vec::new();
        for chunk in guids.chunks(GUIDS_PER_QUERY) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "SELECT {ASK_COLUMNS} FROM webhook_redeliveries WHERE delivery_guid IN ("
            ));
            let mut list = query.separated(", ");
            for guid in chunk {
                list.push_bind(guid);
            }
            query.push(")");
            for row in query.build().fetch_all(self.reader()).await? {
                asks.push(ask_from_row(&row)?);
            }
        }
        Ok(asks)
    }

    async fn save_redelivery_ask(&self, ask: &RedeliveryAsk) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT OR REPLACE INTO webhook_redeliveries ({ASK_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&ask.delivery_guid)
        .bind(&ask.kind)
        .bind(&ask.owner)
        .bind(ask.hook_id)
        .bind(&ask.event)
        .bind(&ask.action)
        .bind(ask.asks)
        .bind(ask.attempt_id)
        .bind(ask.first_asked_at)
        .bind(ask.last_asked_at)
        .bind(ask.next_ask_at)
        .bind(ask.recovered_at)
        .execute(self.writer().await.ready().await)
        .await?;
        self.durable().await
    }

    async fn unrecovered_redelivery_asks(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<RedeliveryAsk>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASK_COLUMNS} FROM webhook_redeliveries \
             WHERE recovered_at IS NULL AND last_asked_at >= ? ORDER BY last_asked_at"
        ))
        .bind(since)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(ask_from_row).collect()
    }

    async fn retry_dead_letter(&self, id: i64) -> StoreResult<DeadLetterRetry> {
        let now = Utc::now();
        let updated = sqlx::query(
            "UPDATE webhook_events SET processed = 0, processed_at = NULL, outcome = NULL, \
             outcome_detail = 'retried after failing: ' || COALESCE(outcome_detail, ''), \
             attempts = 0, next_attempt_at = ? \
             WHERE id = ? AND processed = 1 AND outcome = 'failed'",
        )
        .bind(now)
        .bind(id)
        .execute(self.writer().await.ready().await)
        .await?
        .rows_affected();
        if updated == 1 {
            self.durable().await?;
            return Ok(DeadLetterRetry::Queued);
        }
        let outcome: Option<(Option<String>, bool)> =
            sqlx::query_as("SELECT outcome, processed FROM webhook_events WHERE id = ?")
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
        Ok(match outcome {
            None => DeadLetterRetry::NotFound,
            Some((_, false)) => DeadLetterRetry::NotFailed("pending".into()),
            Some((outcome, true)) => {
                DeadLetterRetry::NotFailed(outcome.unwrap_or_else(|| "pending".into()))
            }
        })
    }
}
