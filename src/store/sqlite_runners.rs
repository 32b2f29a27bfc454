//! Runner records and the queue rebuild, SQLite side.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::filters::*;
use super::sqlite::{SqliteStore, job_from_row};
use super::{Page, RunnerFilter, StoreError, StoreResult};
use crate::domain::{Job, JobId, JobOutcome, Runner, RunnerState};

fn runner_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Runner> {
    let state: String = row.try_get("state")?;
    let labels: String = row.try_get("labels")?;
    Ok(Runner {
        id: row.try_get("id")?,
        pool: row.try_get("pool")?,
        state: RunnerState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("runners.state `{state}`")))?,
        failure_reason: row.try_get("failure_reason")?,
        labels: serde_json::from_str(&labels)
            .map_err(|e| StoreError::Corrupt(format!("runners.labels: {e}")))?,
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
        updated_at: row.try_get::<DateTime<Utc>, _>("updated_at")?,
    })
}

impl SqliteStore {
    pub(super) async fn save_runner_impl(&self, r: &Runner) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO runners (id, pool, state, failure_reason, labels, scope, name, github_runner_id, \
             container_id, instance, launched_for, job_id, draining, created_at, idle_at, busy_at, \
             finished_at, removed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, failure_reason = excluded.failure_reason, \
             github_runner_id = excluded.github_runner_id, container_id = excluded.container_id, \
             job_id = excluded.job_id, draining = excluded.draining, idle_at = excluded.idle_at, \
             busy_at = excluded.busy_at, finished_at = excluded.finished_at, removed_at = excluded.removed_at, \
             updated_at = excluded.updated_at",
        )
        .bind(&r.id)
        .bind(&r.pool)
        .bind(r.state.as_str())
        .bind(&r.failure_reason)
        .bind(serde_json::to_string(&r.labels).expect("strings serialise"))
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
        .execute(self.writer().await.ready().await)
        .await?;
        self.durable().await
    }

    pub(super) async fn live_runners_impl(&self) -> StoreResult<Vec<Runner>> {
        let rows =
            sqlx::query("SELECT * FROM runners WHERE state <> 'removed' ORDER BY created_at")
                .fetch_all(self.reader())
                .await?;
        rows.iter().map(runner_from_row).collect()
    }

    pub(super) async fn registered_scopes_impl(&self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT scope FROM runners ORDER BY scope")
                .fetch_all(self.reader())
                .await?,
        )
    }

    pub(super) async fn runner_by_name_impl(&self, name: &str) -> StoreResult<Option<Runner>> {
        let row = sqlx::query("SELECT * FROM runners WHERE name = ?")
            .bind(name)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(runner_from_row).transpose()
    }

    pub(super) async fn list_runners_impl(
        &self,
        filter: &RunnerFilter,
    ) -> StoreResult<Page<Runner>> {
        let (limit, offset) = super::page_bounds(filter.limit, filter.offset);
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT *, COUNT(*) OVER () AS total FROM runners WHERE 1 = 1");
        push_runner_filter(&mut query, filter);
        query
            .push(" ORDER BY created_at DESC LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = query.build().fetch_all(self.reader()).await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            // Past the end no row carries the count: ask for it alone.
            None if offset > 0 => {
                let mut count: QueryBuilder<Sqlite> =
                    QueryBuilder::new("SELECT COUNT(*) FROM runners WHERE 1 = 1");
                push_runner_filter(&mut count, filter);
                count.build_query_scalar().fetch_one(self.reader()).await?
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

    pub(super) async fn record_job_outcome_impl(
        &self,
        id: JobId,
        outcome: JobOutcome,
        detail: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let updated = sqlx::query(
            "UPDATE jobs SET outcome = ?, outcome_detail = ?, updated_at = ? \
             WHERE id = ? AND outcome IS NULL",
        )
        .bind(outcome.as_str())
        .bind(detail)
        .bind(at)
        .bind(id)
        .execute(self.writer().await.ready().await)
        .await?;
        self.durable().await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub(super) async fn schedulable_jobs_impl(&self) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status IN ('queued', 'waiting') AND pool IS NOT NULL \
             AND outcome IS NULL",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(job_from_row).collect()
    }
}
