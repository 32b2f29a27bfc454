//! [`RecoveryStore`] for [`PostgresStore`]: known hooks, redelivery asks, dead-letter retries.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::postgres::PostgresStore;
use super::{DeadLetterRetry, KnownHook, RecoveryStore, RedeliveryAsk, StoreResult};

const ASK_COLUMNS: &str = "delivery_guid, kind, owner, hook_id, event, action, asks, \
     attempt_id, first_asked_at, last_asked_at, next_ask_at, recovered_at";

fn ask_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<RedeliveryAsk> {
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
impl RecoveryStore for PostgresStore {
    async fn record_hook(&self, hook: &KnownHook) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_hooks (kind, owner, hook_id, source, first_seen_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, owner, hook_id) DO UPDATE SET \
             source = CASE WHEN excluded.source = 'installed' THEN 'installed' \
             ELSE webhook_hooks.source END",
        )
        .bind(&hook.kind)
        .bind(&hook.owner)
        .bind(hook.hook_id)
        .bind(&hook.source)
        .bind(hook.first_seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_hook(&self, kind: &str, owner: &str, hook_id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM webhook_hooks WHERE kind = $1 AND owner = $2 AND hook_id = $3")
            .bind(kind)
            .bind(owner)
            .bind(hook_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn known_hooks(&self) -> StoreResult<Vec<KnownHook>> {
        let rows = sqlx::query(
            "SELECT kind, owner, hook_id, source, first_seen_at FROM webhook_hooks \
             ORDER BY first_seen_at, kind, owner, hook_id",
        )
        .fetch_all(&self.pool)
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
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT delivery_id FROM webhook_events \
             WHERE signature_valid AND delivery_id = ANY($1::text[])",
        )
        .bind(guids)
        .fetch_all(&self.pool)
        .await?;
        Ok(found.into_iter().collect())
    }

    async fn redelivery_asks(&self, guids: &[String]) -> StoreResult<Vec<RedeliveryAsk>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASK_COLUMNS} FROM webhook_redeliveries WHERE delivery_guid = ANY($1::text[])"
        ))
        .bind(guids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ask_from_row).collect()
    }

    async fn save_redelivery_ask(&self, ask: &RedeliveryAsk) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO webhook_redeliveries ({ASK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (delivery_guid) DO UPDATE SET kind = excluded.kind, \
             owner = excluded.owner, hook_id = excluded.hook_id, event = excluded.event, \
             action = excluded.action, asks = excluded.asks, attempt_id = excluded.attempt_id, \
             first_asked_at = excluded.first_asked_at, last_asked_at = excluded.last_asked_at, \
             next_ask_at = excluded.next_ask_at, recovered_at = excluded.recovered_at"
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn unrecovered_redelivery_asks(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<RedeliveryAsk>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASK_COLUMNS} FROM webhook_redeliveries \
             WHERE recovered_at IS NULL AND last_asked_at >= $1 ORDER BY last_asked_at"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ask_from_row).collect()
    }

    async fn retry_dead_letter(&self, id: i64) -> StoreResult<DeadLetterRetry> {
        let updated = sqlx::query(
            "UPDATE webhook_events SET processed = FALSE, processed_at = NULL, outcome = NULL, \
             outcome_detail = 'retried after failing: ' || COALESCE(outcome_detail, ''), \
             attempts = 0, next_attempt_at = $1 \
             WHERE id = $2 AND processed AND outcome = 'failed'",
        )
        .bind(Utc::now())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(DeadLetterRetry::Queued);
        }
        let outcome: Option<(Option<String>, bool)> =
            sqlx::query_as("SELECT outcome, processed FROM webhook_events WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
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
