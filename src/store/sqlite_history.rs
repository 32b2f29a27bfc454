//! Pool history's SQL for [`SqliteStore`] (see `history.rs`); the same statements as
//! `postgres_history.rs`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::history::{count, sql_count};
use super::sqlite::SqliteStore;
use super::sqlite_script::Script;
use super::{JobWait, PoolMinute, PoolSample, StoreResult};

impl SqliteStore {
    pub(super) async fn sql_record_pool_samples(
        &self,
        instance: &str,
        minute: DateTime<Utc>,
        samples: &[PoolSample],
    ) -> StoreResult<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut script = Script::begin(false);
        script.add(|q| {
            q.push(
                "INSERT INTO pool_samples (minute, instance, pool, queued, busy, idle, starting) ",
            );
            q.push_values(samples, |mut row, sample| {
                row.push_bind(minute)
                    .push_bind(instance.to_owned())
                    .push_bind(sample.pool.clone())
                    .push_bind(sql_count(sample.queued))
                    .push_bind(sql_count(sample.busy))
                    .push_bind(sql_count(sample.idle))
                    .push_bind(sql_count(sample.starting));
            });
            q.push(
                " ON CONFLICT (minute, instance, pool) DO UPDATE SET queued = excluded.queued, \
                 busy = excluded.busy, idle = excluded.idle, starting = excluded.starting",
            );
        });
        script.commit(&mut *self.writer().await).await?;
        self.durable().await
    }

    pub(super) async fn sql_queued_jobs_per_pool(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT pool, COUNT(*) AS jobs FROM jobs \
             WHERE status IN ('queued', 'waiting') AND pool IS NOT NULL AND outcome IS NULL \
             GROUP BY pool ORDER BY pool",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("pool")?, count(row.try_get("jobs")?))))
            .collect()
    }

    pub(super) async fn sql_pool_minutes(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<PoolMinute>> {
        let rows = sqlx::query(
            "SELECT minute, pool, MAX(queued) AS queued, SUM(busy) AS busy, SUM(idle) AS idle, \
             SUM(starting) AS starting FROM pool_samples WHERE minute >= ? \
             GROUP BY pool, minute ORDER BY pool, minute",
        )
        .bind(since)
        .fetch_all(self.reader())
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

    pub(super) async fn sql_job_waits(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<JobWait>> {
        let rows = sqlx::query(
            "SELECT pool, created_at, started_at FROM jobs WHERE started_at >= ? \
             AND runner_name IS NOT NULL AND created_at IS NOT NULL \
             ORDER BY started_at DESC LIMIT ?",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(self.reader())
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
