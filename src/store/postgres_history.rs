//! Pool history's SQL for [`PostgresStore`] (see `history.rs`); the same statements as
//! `sqlite_history.rs`.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};

use super::history::{count, sql_count};
use super::postgres::PostgresStore;
use super::{JobWait, PoolMinute, PoolSample, StoreResult};

impl PostgresStore {
    pub(super) async fn pg_record_pool_samples(
        &self,
        instance: &str,
        minute: DateTime<Utc>,
        samples: &[PoolSample],
    ) -> StoreResult<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO pool_samples (minute, instance, pool, queued, busy, idle, starting) ",
        );
        query.push_values(samples, |mut row, sample| {
            row.push_bind(minute)
                .push_bind(instance)
                .push_bind(&sample.pool)
                .push_bind(sql_count(sample.queued))
                .push_bind(sql_count(sample.busy))
                .push_bind(sql_count(sample.idle))
                .push_bind(sql_count(sample.starting));
        });
        query.push(
            " ON CONFLICT (minute, instance, pool) DO UPDATE SET queued = excluded.queued, \
             busy = excluded.busy, idle = excluded.idle, starting = excluded.starting",
        );
        query.build().execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn pg_queued_jobs_per_pool(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT pool, COUNT(*) AS jobs FROM jobs \
             WHERE status IN ('queued', 'waiting') AND pool IS NOT NULL AND outcome IS NULL \
             GROUP BY pool ORDER BY pool",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("pool")?, count(row.try_get("jobs")?))))
            .collect()
    }

    pub(super) async fn pg_pool_minutes(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<PoolMinute>> {
        // SUM of BIGINT is NUMERIC in PostgreSQL: back to BIGINT.
        let rows = sqlx::query(
            "SELECT minute, pool, MAX(queued) AS queued, SUM(busy)::BIGINT AS busy, \
             SUM(idle)::BIGINT AS idle, SUM(starting)::BIGINT AS starting \
             FROM pool_samples WHERE minute >= $1 \
             GROUP BY pool, minute ORDER BY pool, minute",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PoolMinute {
                    minute: row.try_get("minute")?,
                    pool: row.try_get("pool")?,
                    queued: count(row.try_get("queued")?),
                    busy: count(row.try_get("busy")?),
                    idle: count(row.try_get("idle")?),
                    starting: count(row.try_get("starting")?),
                })
            })
            .collect()
    }

    pub(super) async fn pg_job_waits(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<JobWait>> {
        let rows = sqlx::query(
            "SELECT pool, created_at, started_at FROM jobs WHERE started_at >= $1 \
             AND runner_name IS NOT NULL AND created_at IS NOT NULL \
             ORDER BY started_at DESC LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobWait {
                    pool: row.try_get("pool")?,
                    queued_at: row.try_get("created_at")?,
                    started_at: row.try_get("started_at")?,
                })
            })
            .collect()
    }
}
