//! The embedded SQLite backend.
//!
//! WAL mode; every method that commits returns only once its commit is on disk, which is what
//! the webhook acknowledgement promises. SQLite itself runs with `synchronous = NORMAL` and the
//! WAL is fsynced by [`WalSync`], grouped across commits and outside the write lock (see
//! there why this is as durable as `FULL`). Throughput comes from group commits (many
//! deliveries per transaction, many transactions per fsync), not from weaker durability.
//! Writes go through one connection the store owns, behind a tokio mutex, so writers queue
//! fairly in tokio instead of spinning on SQLite's busy lock; reads use their own pool and
//! never wait for writers (WAL). Checkpoints run from `maintain` (`sqlite_checkpoint`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite, SqlitePool};

use super::filters::*;
use super::hot_payloads::HotPayloads;
use super::sqlite_batch::{
    ROWS_PER_UPSERT, insert_events, insert_payloads, mark_deliveries, upsert_jobs, upsert_runs,
};
use super::sqlite_checkpoint::{CheckpointState, WAL_AUTOCHECKPOINT_PAGES};
use super::sqlite_identity::DatabaseWatch;
use super::sqlite_script::{Script, WriteConnection};
use super::wal_sync::WalSync;
use super::*;
use crate::domain::{JobStatus, Runner};
use crate::webhook::payload_codec::Payload;

/// Prepared scripts kept on the write connection (ingest has one per batch size, up to
/// `MAX_BATCH`, and two scripts per batch).
const WRITE_STATEMENT_CACHE: usize = 1024;

/// Rows per multi-row INSERT statement (well under SQLite's bound-variable limit).
const INSERT_ROWS_PER_STATEMENT: usize = 200;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    write: Arc<tokio::sync::Mutex<WriteConnection>>,
    hot: Arc<HotPayloads>,
    pub(super) read: SqlitePool,
    pub(super) wal: Arc<WalSync>,
    pub(super) checkpoints: Arc<CheckpointState>,
    /// The database file, and the lock file held while this process serves from it.
    path: std::path::PathBuf,
    serving: Arc<std::sync::Mutex<Option<std::fs::File>>>,
    /// Whether the files written to are still those at the path (while serving).
    identity: Arc<DatabaseWatch>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // So that retention can shrink the file (`sqlite_prune`); takes effect on a new
            // database, an older one is converted by `migrate`.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            // Commits are synced by `WalSync`; checkpoints still sync (NORMAL does that).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Temporary files in memory (on every connection, so large sorts use RAM): a
            // multi-row insert's statement journal past 64 KiB was a file created and
            // unlinked per batch, metadata writes on the disk whose fsyncs acks wait on.
            .pragma("temp_store", "MEMORY");
        let path = options.get_filename().to_owned();
        let wal = Arc::new(WalSync::start(&path).map_err(sqlx::Error::Io)?);
        // Checkpoints run from `maintain`, not inside commits (see `sqlite_checkpoint`); the
        // automatic one is only a backstop.
        // The write connection lives as long as the store: closing the last connection
        // deletes the WAL, and there is no reason to churn it.
        let write = options
            .clone()
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            // Ingest scripts come in one shape per batch size; keep them all prepared.
            .statement_cache_capacity(WRITE_STATEMENT_CACHE)
            .connect()
            .await?;
        let write = Arc::new(tokio::sync::Mutex::new(WriteConnection::new(write)));
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(false))
            .await?;
        Ok(SqliteStore {
            path,
            serving: Arc::default(),
            identity: Arc::default(),
            write,
            read,
            wal,
            hot: Arc::default(),
            checkpoints: Arc::default(),
        })
    }

    /// Waits until everything committed so far is on disk; every writing method ends here.
    pub(super) async fn durable(&self) -> StoreResult<()> {
        self.wal.sync().await.map_err(StoreError::from)?;
        self.still_there()
    }

    /// The future that [`Committed::durable`] carries.
    fn durable_later(&self) -> Durable {
        let wal = self.wal.clone();
        let identity = self.identity.clone();
        Box::pin(async move {
            wal.sync().await.map_err(StoreError::from)?;
            lost_error(&identity)
        })
    }

    /// Fails once the database at the path is no longer the one written to: a commit into an
    /// unlinked file must not be acknowledged.
    fn still_there(&self) -> StoreResult<()> {
        lost_error(&self.identity)
    }
}

fn lost_error(identity: &DatabaseWatch) -> StoreResult<()> {
    match identity.lost() {
        Some(cause) => Err(StoreError::Lost(cause.to_owned())),
        None => Ok(()),
    }
}

pub(super) fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Job> {
    let status: String = row.try_get("status")?;
    let labels: String = row.try_get("labels")?;
    Ok(Job {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        run_attempt: row.try_get("run_attempt")?,
        repository: row.try_get("repository")?,
        workflow_name: row.try_get("workflow_name")?,
        name: row.try_get("name")?,
        labels: serde_json::from_str(&labels)
            .map_err(|e| StoreError::Corrupt(format!("jobs.labels: {e}")))?,
        priority: row.try_get("priority")?,
        pool: row.try_get("pool")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("jobs.status `{status}`")))?,
        conclusion: row.try_get("conclusion")?,
        runner_id: row.try_get("runner_id")?,
        runner_name: row.try_get("runner_name")?,
        runner_group_name: row.try_get("runner_group_name")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        first_seen_at: row.try_get("first_seen_at")?,
        updated_at: row.try_get("updated_at")?,
        outcome: outcome_from_row(row.try_get("outcome")?)?,
        outcome_detail: row.try_get("outcome_detail")?,
    })
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<WorkflowRun> {
    Ok(WorkflowRun {
        id: row.try_get("id")?,
        repository: row.try_get("repository")?,
        workflow_name: row.try_get("workflow_name")?,
        head_branch: row.try_get("head_branch")?,
        head_sha: row.try_get("head_sha")?,
        event: row.try_get("event")?,
        status: row.try_get("status")?,
        conclusion: row.try_get("conclusion")?,
        run_attempt: row.try_get("run_attempt")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn event_from_row(row: &sqlx::sqlite::SqliteRow, with_payload: bool) -> StoreResult<EventRecord> {
    let payload = if with_payload {
        Some(stored_payload_json(row.try_get("payload")?)?)
    } else {
        None
    };
    Ok(EventRecord {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        event: row.try_get("event")?,
        action: row.try_get("action")?,
        repository: row.try_get("repository")?,
        signature_valid: row.try_get("signature_valid")?,
        received_at: row.try_get("received_at")?,
        processed: row.try_get("processed")?,
        processed_at: row.try_get("processed_at")?,
        outcome: row.try_get("outcome")?,
        outcome_detail: row.try_get("outcome_detail")?,
        attempts: row.try_get("attempts")?,
        payload,
    })
}

const EVENT_COLUMNS: &str = "id, delivery_id, event, action, repository, signature_valid, \
     received_at, processed, processed_at, outcome, outcome_detail, attempts";

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        // Through the pool: sqlx's migrator cannot run on a borrowed connection inside this
        // async trait (a lifetime limitation), and at start nothing else writes yet.
        MIGRATOR.run(&self.read).await?;
        self.ensure_incremental_vacuum().await?;
        self.durable().await
    }

    async fn maintain(&self) -> StoreResult<()> {
        self.identity.check();
        if self.identity.lost().is_some() {
            return Ok(()); // nothing to checkpoint into; logged once by `check`
        }
        self.checkpoint().await
    }

    async fn lock_for_serving(&self, instance: &str) -> StoreResult<()> {
        let (file, canonical) = super::serving_lock::lock_sqlite_file(&self.path, instance)?;
        self.identity.start(&canonical).map_err(sqlx::Error::Io)?;
        *self.serving.lock().expect("not poisoned") = Some(file);
        Ok(())
    }

    async fn unlock_serving(&self) {
        self.identity.stop();
        self.serving.lock().expect("not poisoned").take();
    }

    async fn ping(&self) -> StoreResult<()> {
        self.still_there()?;
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn append_deliveries(
        &self,
        batch: &[NewDelivery],
    ) -> StoreResult<Committed<Vec<InsertOutcome>>> {
        let mut conn = self.writer().await;
        // Two round trips: the rows, then the payloads under the ids the rows were given.
        let mut rows = Script::begin(true);
        for chunk in batch.chunks(INSERT_ROWS_PER_STATEMENT) {
            rows.add(|q| insert_events(q, chunk));
        }
        let mut returned = Vec::with_capacity(batch.len());
        for row in rows.run_open(&mut conn).await? {
            returned.push((
                row.try_get::<i64, _>(0)?,
                row.try_get::<String, _>(1)?,
                row.try_get::<bool, _>(2)?,
            ));
        }
        // RETURNING yields inserted rows in input order; a GUID repeated inside the batch
        // is inserted once (its first occurrence) and the later ones are duplicates.
        let mut returned = returned.into_iter().peekable();
        let outcomes: Vec<InsertOutcome> = batch
            .iter()
            .map(|d| match returned.peek() {
                Some((_, guid, valid)) if *guid == d.delivery_id && *valid == d.signature_valid => {
                    let (id, ..) = returned.next().expect("peeked");
                    InsertOutcome::Stored { id }
                }
                _ => InsertOutcome::Duplicate,
            })
            .collect();
        let mut payloads = Script::continue_with(true);
        for (chunk, chunk_outcomes) in batch
            .chunks(INSERT_ROWS_PER_STATEMENT)
            .zip(outcomes.chunks(INSERT_ROWS_PER_STATEMENT))
        {
            if chunk_outcomes
                .iter()
                .any(|o| matches!(o, InsertOutcome::Stored { .. }))
            {
                payloads.add(|q| insert_payloads(q, chunk, chunk_outcomes));
            }
        }
        payloads.commit(&mut conn).await?;
        drop(conn);
        self.hot
            .insert(batch.iter().zip(&outcomes).filter_map(|(d, o)| match o {
                InsertOutcome::Stored { id } if d.settled.is_none() => {
                    d.payload.kept_text().map(|text| (*id, text.clone()))
                }
                _ => None,
            }));
        Ok(Committed {
            value: outcomes,
            durable: self.durable_later(),
        })
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, event, action, repository, attempts FROM webhook_events \
             WHERE processed = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= ?) \
             ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let ids: Vec<i64> = rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut texts: HashMap<i64, Arc<str>> = ids
            .iter()
            .filter_map(|id| self.hot.get(*id).map(|text| (*id, text)))
            .collect();
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !texts.contains_key(id))
            .collect();
        texts.extend(self.stored_payloads(&missing).await?);
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                Ok(PendingDelivery {
                    id,
                    delivery_id: row.try_get("delivery_id")?,
                    event: row.try_get("event")?,
                    action: row.try_get("action")?,
                    repository: row.try_get("repository")?,
                    payload: texts.remove(&id).ok_or_else(|| {
                        StoreError::Corrupt(format!("webhook event {id} has no payload"))
                    })?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    async fn jobs_by_id(&self, ids: &[JobId]) -> StoreResult<Vec<Job>> {
        let rows = self.rows_by_id("jobs", "id", ids).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn runs_by_id(&self, ids: &[i64]) -> StoreResult<Vec<WorkflowRun>> {
        let rows = self.rows_by_id("workflow_runs", "id", ids).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn commit_processing(&self, batch: &ProcessingBatch) -> StoreResult<()> {
        let mut script = Script::begin(true);
        for chunk in batch.jobs.chunks(ROWS_PER_UPSERT) {
            script.add(|q| upsert_jobs(q, chunk));
        }
        for chunk in batch.runs.chunks(ROWS_PER_UPSERT) {
            script.add(|q| upsert_runs(q, chunk));
        }
        for chunk in batch.deliveries.chunks(ROWS_PER_UPSERT) {
            script.add(|q| mark_deliveries(q, chunk));
        }
        script.commit(&mut *self.writer().await).await?;
        self.hot.remove(batch.deliveries.iter().map(|d| d.id));
        self.durable().await
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Page<EventRecord>> {
        let (limit, offset) = page_bounds(filter.limit, filter.offset);
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {EVENT_COLUMNS}, COUNT(*) OVER () AS total FROM webhook_events WHERE 1 = 1"
        ));
        push_event_filter(&mut query, filter);
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = query.build().fetch_all(&self.read).await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            None => self.count_events(filter).await?,
        };
        let items = rows
            .iter()
            .map(|r| event_from_row(r, false))
            .collect::<StoreResult<_>>()?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    async fn event(&self, id: i64) -> StoreResult<Option<EventRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS}, payload FROM webhook_events LEFT JOIN webhook_payloads ON event_id = id WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| event_from_row(&r, true)).transpose()
    }

    async fn event_by_delivery(&self, delivery_id: &str) -> StoreResult<Option<EventRecord>> {
        // The genuine delivery through its (partial) unique index; refused attempts, which
        // the index leaves out, only when there is none.
        for only in [
            " AND signature_valid = 1 ORDER BY id DESC",
            " ORDER BY id DESC",
        ] {
            let row = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS}, payload FROM webhook_events \
                 LEFT JOIN webhook_payloads ON event_id = id WHERE delivery_id = ?{only} LIMIT 1"
            ))
            .bind(delivery_id)
            .fetch_optional(&self.read)
            .await?;
            if let Some(row) = row {
                return event_from_row(&row, true).map(Some);
            }
        }
        Ok(None)
    }

    async fn event_statistics(&self, since: DateTime<Utc>) -> StoreResult<EventStatistics> {
        let rows = sqlx::query(
            "SELECT event, COALESCE(outcome, 'pending') AS outcome, signature_valid, processed, \
             COUNT(*) AS n FROM webhook_events WHERE received_at >= ? GROUP BY 1, 2, 3, 4",
        )
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        let mut stats = EventStatistics {
            since: Some(since),
            ..Default::default()
        };
        for row in rows {
            let n: i64 = row.try_get("n")?;
            let event: String = row.try_get("event")?;
            let outcome: String = row.try_get("outcome")?;
            let valid: bool = row.try_get("signature_valid")?;
            stats.count_processed(&event, row.try_get("processed")?, n);
            stats.total += n;
            *stats.by_event.entry(event).or_default() += n;
            if outcome == "pending" {
                stats.pending += n;
            }
            *stats.by_outcome.entry(outcome).or_default() += n;
            if !valid {
                stats.signature_failures += n;
            }
        }
        Ok(stats)
    }

    async fn ingest_health(&self) -> StoreResult<IngestHealth> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM webhook_events WHERE processed = 0) AS pending, \
             (SELECT MIN(received_at) FROM webhook_events WHERE processed = 0) AS oldest, \
             (SELECT MAX(received_at) FROM webhook_events) AS last, \
             (SELECT COUNT(*) FROM webhook_events WHERE processed = 1 AND outcome = 'failed') AS failed",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(IngestHealth {
            pending: row.try_get("pending")?,
            oldest_pending_at: row.try_get("oldest")?,
            last_received_at: row.try_get("last")?,
            failed: row.try_get("failed")?,
        })
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Page<Job>> {
        let (limit, offset) = page_bounds(filter.limit, filter.offset);
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT *, COUNT(*) OVER () AS total FROM jobs WHERE 1 = 1");
        push_job_filter(&mut query, filter);
        query
            .push(" ORDER BY first_seen_at DESC, id DESC LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = query.build().fetch_all(&self.read).await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            // Past the end no row carries the count: ask for it alone.
            None if offset > 0 => {
                let mut count: QueryBuilder<Sqlite> =
                    QueryBuilder::new("SELECT COUNT(*) FROM jobs WHERE 1 = 1");
                push_job_filter(&mut count, filter);
                count.build_query_scalar().fetch_one(&self.read).await?
            }
            None => 0,
        };
        let items = rows.iter().map(job_from_row).collect::<StoreResult<_>>()?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        Ok(self.jobs_by_id(&[id]).await?.into_iter().next())
    }

    async fn schedulable_jobs(&self) -> StoreResult<Vec<Job>> {
        self.schedulable_jobs_impl().await
    }

    async fn record_job_outcome(
        &self,
        id: JobId,
        outcome: JobOutcome,
        detail: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        self.record_job_outcome_impl(id, outcome, detail, at).await
    }

    async fn save_runner(&self, runner: &Runner) -> StoreResult<()> {
        self.save_runner_impl(runner).await
    }

    async fn live_runners(&self) -> StoreResult<Vec<Runner>> {
        self.live_runners_impl().await
    }

    async fn registered_scopes(&self) -> StoreResult<Vec<String>> {
        self.registered_scopes_impl().await
    }

    async fn runner_by_name(&self, name: &str) -> StoreResult<Option<Runner>> {
        self.runner_by_name_impl(name).await
    }

    async fn list_runners(&self, filter: &RunnerFilter) -> StoreResult<Page<Runner>> {
        self.list_runners_impl(filter).await
    }

    // The live feed's SQL lives in `sqlite_events.rs`.

    async fn insert_live_events(
        &self,
        events: &[LiveEventRow],
        reserved_seq: i64,
    ) -> StoreResult<()> {
        self.sql_insert_live_events(events, reserved_seq).await
    }

    async fn live_event_bounds(&self) -> StoreResult<LiveEventBounds> {
        self.sql_live_event_bounds().await
    }

    async fn live_events_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> StoreResult<Vec<LiveEventRow>> {
        self.sql_live_events_after(after, through, limit).await
    }

    async fn prune_live_events(
        &self,
        keep_last: i64,
        older_than: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.sql_prune_live_events(keep_last, older_than).await
    }

    async fn prune(&self, what: Prunable, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        self.sql_prune(what, before, limit).await
    }

    async fn reclaim_space(&self, max_pages: u32) -> StoreResult<Reclaimed> {
        self.sql_reclaim_space(max_pages).await
    }

    async fn pending_jobs(&self, repository: Option<&str>, limit: u32) -> StoreResult<Vec<Job>> {
        self.sql_pending_jobs(repository, limit).await
    }

    async fn jobs_active_since(
        &self,
        since: DateTime<Utc>,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        self.sql_jobs_active_since(since, repository, limit).await
    }

    async fn job_repositories_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.sql_job_repositories_since(since, limit).await
    }

    // Pool history: `sqlite_history.rs`.

    async fn record_pool_samples(
        &self,
        instance: &str,
        minute: DateTime<Utc>,
        samples: &[PoolSample],
    ) -> StoreResult<()> {
        self.sql_record_pool_samples(instance, minute, samples)
            .await
    }

    async fn queued_jobs_per_pool(&self) -> StoreResult<Vec<(String, u64)>> {
        self.sql_queued_jobs_per_pool().await
    }

    async fn pool_minutes(&self, since: DateTime<Utc>) -> StoreResult<Vec<PoolMinute>> {
        self.sql_pool_minutes(since).await
    }

    async fn job_waits(&self, since: DateTime<Utc>, limit: u32) -> StoreResult<Vec<JobWait>> {
        self.sql_job_waits(since, limit).await
    }
}

impl SqliteStore {
    /// `SELECT * FROM {table} WHERE id IN (…)`; `table` is one of ours, never user input.
    async fn rows_by_id(
        &self,
        table: &'static str,
        key: &'static str,
        ids: &[i64],
    ) -> StoreResult<Vec<sqlx::sqlite::SqliteRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT * FROM {table} WHERE {key} IN ("));
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(")");
        Ok(query.build().fetch_all(&self.read).await?)
    }

    /// Decompressed payloads of these events, read from the database.
    async fn stored_payloads(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Arc<str>)>> {
        let rows = self.rows_by_id("webhook_payloads", "event_id", ids).await?;
        rows.iter()
            .map(|row| {
                let text = Payload::from_stored(row.try_get("payload")?)
                    .shared_text()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((row.try_get("event_id")?, text))
            })
            .collect()
    }

    /// The write connection, exclusively; writers queue here in arrival order.
    pub(super) async fn writer(&self) -> tokio::sync::MutexGuard<'_, WriteConnection> {
        self.write.lock().await
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    async fn count_events(&self, filter: &EventFilter) -> StoreResult<i64> {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT COUNT(*) FROM webhook_events WHERE 1 = 1");
        push_event_filter(&mut query, filter);
        Ok(query.build_query_scalar().fetch_one(&self.read).await?)
    }
}
