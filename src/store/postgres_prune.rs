//! Retention's SQL for [`PostgresStore`]: the same rows as `sqlite_prune.rs`, deleted in
//! small transactions. Space is not given back here: PostgreSQL's autovacuum makes the space of
//! deleted rows reusable, so the tables stop growing; the files shrink only with
//! `VACUUM FULL`, which locks the tables and is left to the operator.

use chrono::{DateTime, Utc};

use super::postgres::{PostgresStore, sql_count};
use super::prune::unfinished_run_cutoff;
use super::{Prunable, StoreResult};

impl PostgresStore {
    pub(super) async fn pg_prune(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let limit = sql_count(limit);
        // SKIP LOCKED: a row another transaction holds (an instance pruning at the same time)
        // is left to it, instead of waiting for it.
        let deleted = match what {
            Prunable::Deliveries | Prunable::ForgedDeliveries => {
                let mut tx = self.pool.begin().await?;
                // The flag written out, not bound, so that the partial index on forged rows
                // can serve the query.
                let signature = match what {
                    Prunable::Deliveries => "signature_valid",
                    _ => "NOT signature_valid",
                };
                let ids: Vec<i64> = sqlx::query_scalar(&format!(
                    "SELECT id FROM webhook_events \
                     WHERE processed AND {signature} AND received_at < $1 \
                     ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED"
                ))
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                if ids.is_empty() {
                    return Ok(0);
                }
                // The payloads first: they reference the events.
                sqlx::query("DELETE FROM webhook_payloads WHERE event_id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
                let deleted = sqlx::query("DELETE FROM webhook_events WHERE id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                deleted
            }
            Prunable::Jobs => sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                     WHERE status = 'completed' AND updated_at < $1 \
                     ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Prunable::Runs => sqlx::query(
                "DELETE FROM workflow_runs WHERE id IN (SELECT id FROM workflow_runs \
                     WHERE COALESCE(updated_at, created_at) < $1 \
                     AND (status = 'completed' OR COALESCE(updated_at, created_at) < $2) \
                     ORDER BY COALESCE(updated_at, created_at) LIMIT $3 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(unfinished_run_cutoff(before))
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Prunable::Runners => sqlx::query(
                "DELETE FROM runners WHERE id IN (SELECT id FROM runners \
                     WHERE state = 'removed' AND COALESCE(removed_at, updated_at) < $1 \
                     ORDER BY COALESCE(removed_at, updated_at) LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Prunable::Redeliveries => sqlx::query(
                "DELETE FROM webhook_redeliveries WHERE delivery_guid IN \
                     (SELECT delivery_guid FROM webhook_redeliveries WHERE last_asked_at < $1 \
                     ORDER BY last_asked_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Prunable::PoolSamples => sqlx::query(
                "DELETE FROM pool_samples WHERE (minute, instance, pool) IN \
                     (SELECT minute, instance, pool FROM pool_samples WHERE minute < $1 \
                     ORDER BY minute LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected(),
        };
        Ok(deleted)
    }
}
