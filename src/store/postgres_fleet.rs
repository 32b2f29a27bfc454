//! [`FleetStore`] on PostgreSQL: each operation one statement or one short transaction, with
//! the database's `now()` deciding leases and liveness.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use futures::StreamExt;

use super::fleet::{
    Beat, Bell, Claim, ClaimedJob, FleetStore, HeldSlots, InstanceInfo, InstanceRecord, JobChanges,
    QuotaGate, Ring, Rings, UnsequencedEvent,
};
use super::postgres::{PostgresStore, job_from_row};
use super::postgres_live::{insert_live_rows, runner_from_row};
use super::{LiveEventRow, StoreResult};
use crate::domain::{JobId, Runner};

/// A `Duration` as PostgreSQL's `interval` (bound as seconds).
fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn claimed_job(row: &PgRow) -> StoreResult<ClaimedJob> {
    Ok(ClaimedJob {
        job: job_from_row(row)?,
        claimed_by: row.try_get("claimed_by")?,
    })
}

#[async_trait]
impl FleetStore for PostgresStore {
    async fn ring(&self, bell: Bell, me: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(bell.channel())
            .bind(me)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rings(&self) -> StoreResult<Rings> {
        // A pool of its own: the listening connection is held for good, and the pool makes
        // it again when it breaks (sqlx's listener reconnects and listens again by itself).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.options.clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener
            .listen_all(Bell::ALL.iter().map(|b| b.channel()))
            .await?;
        Ok(Box::pin(listener.into_stream().filter_map(|note| {
            std::future::ready(match note {
                Ok(note) => Bell::from_channel(note.channel()).map(|bell| {
                    Ok(Ring {
                        bell,
                        by: note.payload().to_owned(),
                    })
                }),
                Err(error) => Some(Err(error.into())),
            })
        })))
    }

    async fn heartbeat(&self, me: &InstanceInfo, lease: Duration) -> StoreResult<Beat> {
        let mut tx = self.pool.begin().await?;
        // The row before this heartbeat says whether the leader had given this instance up.
        // Locked first, so that a leader declaring it dead at this moment either comes before
        // (and is seen) or waits until this heartbeat has made it alive again.
        let dead_since: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT dead_since FROM fleet_instances WHERE id = $1 FOR UPDATE")
                .bind(&me.id)
                .fetch_optional(&mut *tx)
                .await?;
        let revived = dead_since.flatten().is_some();
        sqlx::query(
            "INSERT INTO fleet_instances \
                 (id, version, started_at, heartbeat_at, dead_since, pools, capacity, runners, \
                  pool_settings) \
             VALUES ($1, $2, $3, now(), NULL, $4, $5, \
                 (SELECT count(*) FROM runners WHERE instance = $1 AND state <> 'removed'), $6) \
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, \
                 started_at = EXCLUDED.started_at, heartbeat_at = now(), dead_since = NULL, \
                 pools = EXCLUDED.pools, capacity = EXCLUDED.capacity, runners = EXCLUDED.runners, \
                 pool_settings = EXCLUDED.pool_settings",
        )
        .bind(&me.id)
        .bind(&me.version)
        .bind(me.started_at)
        .bind(&me.pools)
        .bind(me.capacity)
        .bind(sqlx::types::Json(&me.pool_settings))
        .execute(&mut *tx)
        .await?;
        let leader = sqlx::query(
            "INSERT INTO fleet_leader (id, holder, since, expires_at) \
             VALUES (1, $1, now(), now() + make_interval(secs => $2)) \
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, \
                 since = CASE WHEN fleet_leader.holder = EXCLUDED.holder \
                              THEN fleet_leader.since ELSE now() END, \
                 expires_at = EXCLUDED.expires_at \
             WHERE fleet_leader.holder = EXCLUDED.holder OR fleet_leader.expires_at < now() \
             RETURNING holder",
        )
        .bind(&me.id)
        .bind(seconds(lease))
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        tx.commit().await?;
        Ok(Beat { revived, leader })
    }

    async fn resign(&self, me: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM fleet_leader WHERE holder = $1")
            .bind(me)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn declare_dead(&self, me: &str, timeout: Duration) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let dead: Vec<String> = sqlx::query_scalar(
            "UPDATE fleet_instances SET dead_since = now() \
             WHERE dead_since IS NULL AND id <> $1 \
               AND heartbeat_at < now() - make_interval(secs => $2) \
             RETURNING id",
        )
        .bind(me)
        .bind(seconds(timeout))
        .fetch_all(&mut *tx)
        .await?;
        // Every sweep, not only for the newly dead: a claim a dead instance made while it
        // was being declared dead is released the next time.
        sqlx::query(
            "UPDATE jobs SET claimed_by = NULL, claimed_at = NULL, updated_at = now() \
             WHERE claimed_by IN (SELECT id FROM fleet_instances WHERE dead_since IS NOT NULL) \
               AND status IN ('queued', 'waiting')",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(dead)
    }

    async fn runners_of_dead_instances(&self) -> StoreResult<Vec<Runner>> {
        let rows = sqlx::query(
            "SELECT r.* FROM runners r JOIN fleet_instances i ON i.id = r.instance \
             WHERE i.dead_since IS NOT NULL AND r.state <> 'removed' \
               AND (r.state <> 'busy' OR EXISTS (SELECT 1 FROM jobs j \
                    WHERE j.id = r.job_id AND j.status = 'completed')) \
             ORDER BY r.created_at LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(runner_from_row).collect()
    }

    async fn remove_runner_of_dead_instance(
        &self,
        runner: &str,
        reason: &str,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE runners SET state = 'removed', removed_at = now(), updated_at = now(), \
                 failure_reason = COALESCE(failure_reason, $2) \
             WHERE id = $1 AND state <> 'removed' AND instance IN \
                 (SELECT id FROM fleet_instances WHERE dead_since IS NOT NULL)",
        )
        .bind(runner)
        .bind(reason)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn claim_job(
        &self,
        job: JobId,
        me: &str,
        quota: Option<&QuotaGate<'_>>,
    ) -> StoreResult<Claim> {
        super::postgres_quota::claim_job(&self.pool, job, me, quota).await
    }

    async fn slots_held_elsewhere(&self, me: &str) -> StoreResult<Vec<HeldSlots>> {
        super::postgres_quota::slots_held_elsewhere(&self.pool, me).await
    }

    async fn job_changes(&self, since: Option<DateTime<Utc>>) -> StoreResult<JobChanges> {
        let as_of: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?;
        let rows = match since {
            Some(since) => {
                sqlx::query("SELECT * FROM jobs WHERE updated_at >= $1 ORDER BY updated_at, id")
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT * FROM jobs WHERE status IN ('queued', 'waiting') \
                     AND pool IS NOT NULL AND outcome IS NULL ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(JobChanges {
            jobs: rows.iter().map(claimed_job).collect::<StoreResult<_>>()?,
            as_of,
        })
    }

    async fn append_live_events(&self, events: &[UnsequencedEvent]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // The meta row, locked until the commit: the next writer numbers after this batch and
        // commits after it, so a reader that has seen seq N will never find a new one below N.
        let reserved: i64 =
            sqlx::query_scalar("SELECT reserved_seq FROM live_event_meta WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let stored: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM live_events")
            .fetch_one(&mut *tx)
            .await?;
        let first = reserved.max(stored) + 1;
        let rows: Vec<LiveEventRow> = events
            .iter()
            .zip(first..)
            .map(|(e, seq)| LiveEventRow {
                seq,
                kind: e.kind.clone(),
                repository: e.repository.clone(),
                time: e.time,
                message: match e.body.strip_prefix('{') {
                    Some(rest) => format!("{{\"seq\":{seq},{rest}"),
                    None => format!("{{\"seq\":{seq}}}"),
                },
            })
            .collect();
        insert_live_rows(&mut tx, &rows).await?;
        sqlx::query("UPDATE live_event_meta SET reserved_seq = $1 WHERE id = 1")
            .bind(first + events.len() as i64 - 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn instances(&self, timeout: Duration) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(
            "SELECT i.*, \
                 (i.dead_since IS NULL AND i.heartbeat_at >= now() - make_interval(secs => $1)) \
                     AS alive, \
                 COALESCE(l.holder = i.id AND l.expires_at > now(), false) AS leader \
             FROM fleet_instances i LEFT JOIN fleet_leader l ON l.id = 1 ORDER BY i.id",
        )
        .bind(seconds(timeout))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRecord {
                    id: row.try_get("id")?,
                    version: row.try_get("version")?,
                    started: row.try_get("started_at")?,
                    last_heartbeat: row.try_get("heartbeat_at")?,
                    alive: row.try_get("alive")?,
                    dead_since: row.try_get("dead_since")?,
                    leader: row.try_get("leader")?,
                    pools: row.try_get("pools")?,
                    pool_settings: row
                        .try_get::<sqlx::types::Json<Vec<super::fleet::PoolSetting>>, _>(
                            "pool_settings",
                        )?
                        .0,
                    capacity: row.try_get("capacity")?,
                    runners: row.try_get("runners")?,
                })
            })
            .collect()
    }

    async fn forget_instance(
        &self,
        id: &str,
        timeout: Duration,
    ) -> StoreResult<super::fleet::Forget> {
        use super::fleet::Forget;
        let mut tx = self.pool.begin().await?;
        // Locked as a heartbeat locks it: a heartbeat now either comes first (alive: refused)
        // or after the delete (the instance joins again).
        let alive: Option<bool> = sqlx::query_scalar(
            "SELECT dead_since IS NULL AND heartbeat_at >= now() - make_interval(secs => $2) \
             FROM fleet_instances WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .bind(seconds(timeout))
        .fetch_optional(&mut *tx)
        .await?;
        let answer = match alive {
            None => Forget::Unknown,
            Some(true) => Forget::Alive,
            Some(false) => {
                let runners: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM runners WHERE instance = $1 AND state <> 'removed'",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if runners > 0 {
                    Forget::HasRunners(runners)
                } else {
                    sqlx::query("DELETE FROM fleet_instances WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    Forget::Forgotten
                }
            }
        };
        tx.commit().await?;
        Ok(answer)
    }
}
