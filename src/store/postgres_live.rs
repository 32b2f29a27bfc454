//! Runner records, the live feed's log and the job queries of the queue and the snapshot, for
//! [`PostgresStore`]. Same statements and orders as `sqlite_runners.rs` and `sqlite_events.rs`.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::filters::*;
use super::postgres::{PostgresStore, job_from_row, sql_count};
use super::{LiveEventBounds, LiveEventRow, Page, RunnerFilter, StoreError, StoreResult};
use crate::domain::{Job, JobId, JobOutcome, Runner, RunnerState};

pub(super) fn runner_from_row(row: &PgRow) -> StoreResult<Runner> {
    let state: String = row.try_get("state")?;
    Ok(Runner {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        state: RunnerState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("runners.state `{state}`")))?,
        failure_reason: row.try_get("failure_reason")?,
        labels: row.try_get("labels")?,
        scope: row.try_get("scope")?,
        name: row.try_get("name")?,
        github_runner_id: row.try_get("github_runner_id")?,
        container_id: row.try_get("container_id")?,
        instance: row.try_get("instance")?,
        launched_for: row.try_get("launched_for")?,
        job_id: row.try_get("job_id")?,
        draining: row.try_get("draining")?,
        created_at: row.try_get("created_at")?,
        idle_at: row.try_get("idle_at")?,
        busy_at: row.try_get("busy_at")?,
        finished_at: row.try_get("finished_at")?,
        removed_at: row.try_get("removed_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn live_from_row(row: &PgRow) -> StoreResult<LiveEventRow> {
    Ok(LiveEventRow {
        seq: row.try_get("seq")?,
        kind: row.try_get("type")?,
        repository: row.try_get("repository")?,
        time: row.try_get("time")?,
        message: row.try_get("message")?,
    })
}

impl PostgresStore {
    /// Pool, labels, scope, name, instance and what it was launched for are fixed at creation,
    /// as in the SQLite store: an update leaves them alone.
    pub(super) async fn pg_save_runner(&self, r: &Runner) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO runners (id, pool, state, failure_reason, labels, scope, name, \
             github_runner_id, container_id, instance, launched_for, job_id, draining, created_at, \
             idle_at, busy_at, finished_at, removed_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             failure_reason = excluded.failure_reason, github_runner_id = excluded.github_runner_id, \
             container_id = excluded.container_id, job_id = excluded.job_id, \
             draining = excluded.draining, idle_at = excluded.idle_at, busy_at = excluded.busy_at, \
             finished_at = excluded.finished_at, removed_at = excluded.removed_at, \
             updated_at = excluded.updated_at",
        )
        .bind(&r.id)
        .bind(&r.pool)
        .bind(r.state.as_str())
        .bind(&r.failure_reason)
        .bind(r.labels.as_slice())
        .bind(&r.scope)
        .bind(&r.name)
        .bind(r.github_runner_id)
        .bind(&r.container_id)
        .bind(&r.instance)
        .bind(r.launched_for)
        .bind(r.job_id)
        .bind(r.draining)
        .bind(r.created_at)
        .bind(r.idle_at)
        .bind(r.busy_at)
        .bind(r.finished_at)
        .bind(r.removed_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn pg_live_runners(&self) -> StoreResult<Vec<Runner>> {
        let rows =
            sqlx::query("SELECT * FROM runners WHERE state <> 'removed' ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(runner_from_row).collect()
    }

    pub(super) async fn pg_registered_scopes(&self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT scope FROM runners ORDER BY scope")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(super) async fn pg_runner_by_name(&self, name: &str) -> StoreResult<Option<Runner>> {
        let row = sqlx::query("SELECT * FROM runners WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(runner_from_row).transpose()
    }

    pub(super) async fn pg_list_runners(&self, filter: &RunnerFilter) -> StoreResult<Page<Runner>> {
        let (limit, offset) = super::page_bounds(filter.limit, filter.offset);
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT *, COUNT(*) OVER () AS total FROM runners WHERE TRUE");
        push_runner_filter(&mut query, filter);
        query
            .push(" ORDER BY created_at DESC LIMIT ")
            .push_bind(sql_count(limit))
            .push(" OFFSET ")
            .push_bind(sql_count(offset));
        let rows = query.build().fetch_all(&self.pool).await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            // Past the end no row carries the count: ask for it alone.
            None if offset > 0 => {
                let mut count: QueryBuilder<Postgres> =
                    QueryBuilder::new("SELECT COUNT(*) FROM runners WHERE TRUE");
                push_runner_filter(&mut count, filter);
                count.build_query_scalar().fetch_one(&self.pool).await?
            }
            None => 0,
        };
        let items = rows
            .iter()
            .map(runner_from_row)
            .collect::<StoreResult<_>>()?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    pub(super) async fn pg_record_job_outcome(
        &self,
        id: JobId,
        outcome: JobOutcome,
        detail: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let updated = sqlx::query(
            "UPDATE jobs SET outcome = $1, outcome_detail = $2, updated_at = $3 \
             WHERE id = $4 AND outcome IS NULL",
        )
        .bind(outcome.as_str())
        .bind(detail)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub(super) async fn pg_schedulable_jobs(&self) -> StoreResult<Vec<Job>> {
        // The queue orders them itself; by id only so that every call answers alike.
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status IN ('queued', 'waiting') AND pool IS NOT NULL \
             AND outcome IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn pg_insert_live_events(
        &self,
        events: &[LiveEventRow],
        reserved_seq: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_live_rows(&mut tx, events).await?;
        sqlx::query("UPDATE live_event_meta SET reserved_seq = $1 WHERE id = 1")
            .bind(reserved_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn pg_live_event_bounds(&self) -> StoreResult<LiveEventBounds> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM live_events) AS max_seq, \
             reserved_seq, pruned_through FROM live_event_meta WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LiveEventBounds {
            max_seq: row.try_get("max_seq")?,
            reserved_seq: row.try_get("reserved_seq")?,
            pruned_through: row.try_get("pruned_through")?,
        })
    }

    pub(super) async fn pg_live_events_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> StoreResult<Vec<LiveEventRow>> {
        let rows = sqlx::query(
            "SELECT seq, type, repository, time, message FROM live_events \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(through)
        .bind(sql_count(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(live_from_row).collect()
    }

    pub(super) async fn pg_prune_live_events(
        &self,
        keep_last: i64,
        older_than: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        // The meta row first, locked: two instances pruning at once take turns instead of
        // racing on the boundary.
        sqlx::query("SELECT 1 FROM live_event_meta WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        // The boundary is a seq, not a time, so that "since too old" is exact: everything at
        // or below it is gone, everything above it is still here.
        let boundary: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM live_events \
             WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM live_events) - $1 OR time < $2",
        )
        .bind(keep_last)
        .bind(older_than)
        .fetch_one(&mut *tx)
        .await?;
        let Some(boundary) = boundary else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM live_events WHERE seq <= $1")
            .bind(boundary)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE live_event_meta SET pruned_through = GREATEST(pruned_through, $1) WHERE id = 1",
        )
        .bind(boundary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub(super) async fn pg_pending_jobs(
        &self,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT * FROM jobs WHERE status IN ('queued', 'waiting')");
        if let Some(repo) = repository {
            query.push(" AND repository = ").push_bind(repo);
        }
        query
            .push(" ORDER BY priority DESC, COALESCE(created_at, first_seen_at), id LIMIT ")
            .push_bind(sql_count(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn pg_jobs_active_since(
        &self,
        since: DateTime<Utc>,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM jobs WHERE (");
        query
            .push("started_at >= ")
            .push_bind(since)
            .push(" OR completed_at >= ")
            .push_bind(since)
            .push(")");
        if let Some(repo) = repository {
            query.push(" AND repository = ").push_bind(repo);
        }
        query
            .push(" ORDER BY updated_at DESC LIMIT ")
            .push_bind(sql_count(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }
}

/// Appends numbered live messages inside the caller's transaction. DO NOTHING: a batch retried
/// after a failed commit must not fail on its own rows.
pub(super) async fn insert_live_rows(
    conn: &mut sqlx::PgConnection,
    events: &[LiveEventRow],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO live_events (seq, type, repository, time, message) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], \
         $5::text[]) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(events.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.repository.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.time).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
