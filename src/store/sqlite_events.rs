//! SQL of the live feed for [`SqliteStore`]: the `live_events` log, its seq reservation and
//! pruning, and the job queries of the WebSocket snapshot. The `Store` impl delegates here.

use chrono::{DateTime, Utc};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::sqlite::{SqliteStore, job_from_row};
use super::sqlite_script::Script;
use super::{LiveEventBounds, LiveEventRow, StoreResult};
use crate::domain::Job;

/// Rows per multi-row INSERT (5 bound values each, well under SQLite's variable limit).
const LIVE_ROWS_PER_STATEMENT: usize = 500;

fn live_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<LiveEventRow> {
    Ok(LiveEventRow {
        seq: row.try_get("seq")?,
        kind: row.try_get("type")?,
        repository: row.try_get("repository")?,
        time: row.try_get("time")?,
        message: row.try_get("message")?,
    })
}

impl SqliteStore {
    pub(super) async fn sql_insert_live_events(
        &self,
        events: &[LiveEventRow],
        reserved_seq: i64,
    ) -> StoreResult<()> {
        let mut script = Script::begin(false);
        for chunk in events.chunks(LIVE_ROWS_PER_STATEMENT) {
            script.add(|q| {
                // OR IGNORE: a retried batch after a failed commit must not fail on its own rows.
                q.push("INSERT OR IGNORE INTO live_events (seq, type, repository, time, message) ");
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.seq)
                        .push_bind(&e.kind)
                        .push_bind(&e.repository)
                        .push_bind(e.time)
                        .push_bind(&e.message);
                });
            });
        }
        script.add(|q| {
            q.push("UPDATE live_event_meta SET reserved_seq = ")
                .push_bind(reserved_seq)
                .push(" WHERE id = 1");
        });
        script.commit(&mut *self.writer().await).await?;
        self.durable().await?;
        Ok(())
    }

    pub(super) async fn sql_live_event_bounds(&self) -> StoreResult<LiveEventBounds> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM live_events) AS max_seq, \
             reserved_seq, pruned_through FROM live_event_meta WHERE id = 1",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(LiveEventBounds {
            max_seq: row.try_get("max_seq")?,
            reserved_seq: row.try_get("reserved_seq")?,
            pruned_through: row.try_get("pruned_through")?,
        })
    }

    pub(super) async fn sql_live_events_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> StoreResult<Vec<LiveEventRow>> {
        let rows = sqlx::query(
            "SELECT seq, type, repository, time, message FROM live_events \
             WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(through)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(live_from_row).collect()
    }

    pub(super) async fn sql_prune_live_events(
        &self,
        keep_last: i64,
        older_than: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut writer = self.writer().await;
        let mut tx = writer.ready().await.begin().await?;
        // The boundary is a seq, not a time, so that "since too old" is exact: everything at
        // or below it is gone, everything above it is still here.
        let boundary: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM live_events \
             WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM live_events) - ? OR time < ?",
        )
        .bind(keep_last)
        .bind(older_than)
        .fetch_one(&mut *tx)
        .await?;
        let Some(boundary) = boundary else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM live_events WHERE seq <= ?")
            .bind(boundary)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE live_event_meta SET pruned_through = MAX(pruned_through, ?) WHERE id = 1",
        )
        .bind(boundary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.durable().await?;
        Ok(deleted)
    }

    pub(super) async fn sql_pending_jobs(
        &self,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM jobs WHERE status IN ('queued', 'waiting')");
        if let Some(repo) = repository {
            query.push(" AND repository = ").push_bind(repo);
        }
        query
            .push(" ORDER BY priority DESC, COALESCE(created_at, first_seen_at), id LIMIT ")
            .push_bind(limit);
        let rows = query.build().fetch_all(&self.read).await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn sql_jobs_active_since(
        &self,
        since: DateTime<Utc>,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM jobs WHERE (");
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
            .push_bind(limit);
        let rows = query.build().fetch_all(&self.read).await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn sql_job_repositories_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            // The most recently active first: past the bound, the quiet ones wait.
            "SELECT repository FROM jobs WHERE updated_at >= ? GROUP BY repository \
             ORDER BY MAX(updated_at) DESC, repository LIMIT ?",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}
