//! The PostgreSQL backend: runnerhub's state in a database server (backups, replicas, the
//! tools a team already runs). One daemon serves from a database at a time
//! (`serving_lock.rs`); instances sharing one queue (DESIGN.md §9) need job claims first.
//!
//! The same tables and the same answers as [`super::sqlite::SqliteStore`] (the contract test
//! `tests/store_contract.rs` runs one set of scenarios against both). A COMMIT here is durable
//! (`synchronous_commit` stays on, the server default), so [`Committed::durable`] is already
//! resolved when `append_deliveries` returns; throughput comes from batching instead: one
//! transaction per batch and one statement per table, with whole columns bound as arrays
//! (`UNNEST`) rather than a round trip per row.
//!
//! Two differences a caller could notice, both harmless to the daemon: times are kept to the
//! microsecond (TIMESTAMPTZ), and event ids come from a sequence, so a transaction rolled back,
//! or an insert skipped as a duplicate, leaves a gap in them.
//!
//! The statements of the write path are in `postgres_write.rs`; runners, the live feed and the
//! job queries of the snapshot in `postgres_live.rs`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::filters::*;
use super::*;
use crate::domain::JobStatus;
use crate::webhook::payload_codec::Payload;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per instance: ingest, the processor, the live log and API reads at once, with
/// room to spare; several instances share the server's `max_connections`.
const POOL_CONNECTIONS: u32 = 10;

/// Ingest transactions in flight at once (of [`POOL_CONNECTIONS`]): while one waits for the
/// server's fsync the next is already being written, and commits that arrive together are
/// flushed together by the server.
const CONCURRENT_APPENDS: usize = 4;

/// How long a caller waits for a free connection before the call fails (and `/readyz` says so).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at a transaction that PostgreSQL aborted to break a deadlock or a serialization
/// conflict, which only concurrent instances writing the same rows cause.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// How often `maintain` checks that the session holding the serving lock is still there.
const SERVING_LOCK_CHECK: Duration = Duration::from_secs(10);
/// How long one check (or one attempt to take the lock again) may take.
const SERVING_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
    pub(super) options: PgConnectOptions,
    serving: Arc<tokio::sync::Mutex<ServingLock>>,
}

/// The session that holds the advisory lock, while this process serves.
#[derive(Default)]
struct ServingLock {
    instance: Option<String>,
    mode: Option<super::serving_lock::LockMode>,
    session: Option<sqlx::PgConnection>,
    checked: Option<std::time::Instant>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=…`). The database
    /// must exist; [`Store::migrate`] creates the tables.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// [`PostgresStore::connect`] with options built in code (TLS files, application name, …).
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        // Every statement planned for the values it runs with. sqlx prepares each statement
        // once per connection, and after five executions PostgreSQL may keep one generic plan
        // for it, costed against the tables as they were then: made while `webhook_events`
        // was nearly empty, the ingest insert's duplicate check became a hash join over a
        // sequential scan of the whole table, and stayed one as the table grew (seen at 40,000
        // rows: each insert cost ~2 ms of server CPU instead of ~0.1, and a steady 1,000/s fell
        // behind for seconds). Planning these small statements each time costs far less.
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // The pool's default pings each connection before lending it: a round trip added
            // to every transaction. A connection the server closed meanwhile fails on use
            // instead, is dropped by the pool, and `retry_transient` runs the work again on
            // another (all this store's transactions can run twice: inserts and upserts).
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        refuse_asynchronous_commit(&pool).await?;
        Ok(PostgresStore {
            pool,
            options,
            serving: Arc::default(),
        })
    }

    async fn take_serving_lock(
        &self,
        instance: &str,
        mode: super::serving_lock::LockMode,
    ) -> StoreResult<()> {
        let session = super::serving_lock::lock_postgres(&self.options, instance, mode).await?;
        let mut lock = self.serving.lock().await;
        lock.instance = Some(instance.to_owned());
        lock.mode = Some(mode);
        lock.session = Some(session);
        lock.checked = Some(std::time::Instant::now());
        Ok(())
    }

    /// Takes the serving lock again if its session died (a server restart ends it). If
    /// another daemon took it meanwhile, that is [`StoreError::InUse`]: this one must stop.
    /// While the server is unreachable it keeps trying, every [`SERVING_LOCK_CHECK`].
    async fn keep_serving_lock(&self) -> StoreResult<()> {
        let mut lock = self.serving.lock().await;
        let (Some(instance), Some(mode)) = (lock.instance.clone(), lock.mode) else {
            return Ok(()); // not serving (`runnerhub migrate`, tests)
        };
        if lock
            .checked
            .is_some_and(|at| at.elapsed() < SERVING_LOCK_CHECK)
        {
            return Ok(());
        }
        lock.checked = Some(std::time::Instant::now());
        if let Some(session) = lock.session.as_mut() {
            // The lock lives as long as this session: a ping says whether it still does.
            let alive = tokio::time::timeout(SERVING_LOCK_TIMEOUT, sqlx::Connection::ping(session));
            if matches!(alive.await, Ok(Ok(()))) {
                return Ok(());
            }
            lock.session = None;
        }
        let retake = tokio::time::timeout(
            SERVING_LOCK_TIMEOUT,
            super::serving_lock::lock_postgres(&self.options, &instance, mode),
        );
        match retake.await {
            Ok(Ok(session)) => {
                tracing::warn!(
                    "the database session holding the serving lock was lost; took it again"
                );
                lock.session = Some(session);
                Ok(())
            }
            Ok(Err(StoreError::InUse(holder))) => Err(StoreError::InUse(holder)),
            Ok(Err(error)) => {
                tracing::error!(%error, "lost the serving lock's session; cannot take it again yet");
                Ok(())
            }
            Err(_) => {
                tracing::error!("lost the serving lock's session; the database does not answer");
                Ok(())
            }
        }
    }
}

/// An acknowledgement means "on disk" only if COMMIT waits for the WAL flush; a server or
/// role configured with `synchronous_commit = off` would make it a promise it cannot keep.
async fn refuse_asynchronous_commit(pool: &PgPool) -> StoreResult<()> {
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await?;
    if setting == "off" {
        return Err(StoreError::Unsafe(
            "synchronous_commit is off for this database or role: a commit could be lost after \
             it was acknowledged. Set it on (ALTER ROLE … SET synchronous_commit = on)"
                .into(),
        ));
    }
    Ok(())
}

/// Runs `attempt` again when PostgreSQL aborted it as a deadlock victim or a serialization
/// failure (the transaction was rolled back, so running it again is exactly the retry it asks
/// for), or when the connection it ran on turned out closed (a server restart closes every
/// pooled one; the pool drops each as it fails). A commit whose answer was lost may have
/// landed: the callers' statements are inserts that skip what exists and upserts, so running
/// one twice leaves what running it once does.
pub(super) async fn retry_transient<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut aborted = 1;
    let mut connections_lost = 0;
    loop {
        match attempt().await {
            Err(StoreError::Database(error))
                if aborted < TRANSIENT_ATTEMPTS && is_transient(&error) =>
            {
                tracing::debug!(%error, aborted, "retrying a transaction PostgreSQL aborted");
                aborted += 1;
            }
            Err(StoreError::Database(error))
                if connections_lost < POOL_CONNECTIONS && is_connection_lost(&error) =>
            {
                tracing::debug!(%error, "retrying on another connection");
                connections_lost += 1;
            }
            result => return result,
        }
    }
}

/// The connection broke (an I/O error) or the server ended the session (57P01
/// admin_shutdown, 57P02 crash_shutdown): the work may run again on a fresh connection.
fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        error => error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "57P01" || code == "57P02"),
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    // 40P01 deadlock_detected, 40001 serialization_failure.
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// A limit or offset as PostgreSQL takes it (it has no unsigned integers).
pub(super) fn sql_count(n: u32) -> i64 {
    i64::from(n)
}

pub(super) fn job_from_row(row: &PgRow) -> StoreResult<Job> {
    let status: String = row.try_get("status")?;
    Ok(Job {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        run_attempt: row.try_get("run_attempt")?,
        repository: row.try_get("repository")?,
        workflow_name: row.try_get("workflow_name")?,
        name: row.try_get("name")?,
        labels: row.try_get("labels")?,
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

fn run_from_row(row: &PgRow) -> StoreResult<WorkflowRun> {
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

fn event_from_row(row: &PgRow, with_payload: bool) -> StoreResult<EventRecord> {
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
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx's migrator holds an advisory lock meanwhile: instances starting together take
        // turns, and the later ones find nothing left to apply.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn maintain(&self) -> StoreResult<()> {
        self.keep_serving_lock().await
    }

    async fn unlock_serving(&self) {
        let mut lock = self.serving.lock().await;
        lock.instance = None;
        lock.mode = None;
        if let Some(session) = lock.session.take() {
            // Closing the session ends the advisory lock with it.
            let _ =
                tokio::time::timeout(SERVING_LOCK_TIMEOUT, sqlx::Connection::close(session)).await;
        }
    }

    async fn lock_for_serving(&self, instance: &str) -> StoreResult<()> {
        self.take_serving_lock(instance, super::serving_lock::LockMode::Alone)
            .await
    }

    fn fleet_store(self: Arc<Self>) -> Option<Arc<dyn super::fleet::FleetStore>> {
        Some(self)
    }

    async fn lock_for_fleet(&self, instance: &str) -> StoreResult<()> {
        self.take_serving_lock(instance, super::serving_lock::LockMode::Fleet)
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn concurrent_appends(&self) -> usize {
        CONCURRENT_APPENDS
    }

    async fn append_deliveries(
        &self,
        batch: &[NewDelivery],
    ) -> StoreResult<Committed<Vec<InsertOutcome>>> {
        let value = retry_transient(|| self.append_once(batch)).await?;
        Ok(Committed {
            value,
            // The COMMIT returned, and with `synchronous_commit` on that means it is on disk.
            durable: Box::pin(async { Ok(()) }),
        })
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let rows = sqlx::query(
            "SELECT e.id, e.delivery_id, e.event, e.action, e.repository, e.attempts, p.payload \
             FROM webhook_events e LEFT JOIN webhook_payloads p ON p.event_id = e.id \
             WHERE NOT e.processed AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= $1) \
             ORDER BY e.id LIMIT $2",
        )
        .bind(now)
        .bind(sql_count(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                let stored: Option<Vec<u8>> = row.try_get("payload")?;
                let stored = stored.ok_or_else(|| {
                    StoreError::Corrupt(format!("webhook event {id} has no payload"))
                })?;
                Ok(PendingDelivery {
                    id,
                    delivery_id: row.try_get("delivery_id")?,
                    event: row.try_get("event")?,
                    action: row.try_get("action")?,
                    repository: row.try_get("repository")?,
                    payload: Payload::from_stored(stored)
                        .shared_text()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    async fn jobs_by_id(&self, ids: &[JobId]) -> StoreResult<Vec<Job>> {
        let rows = self.rows_by_id("jobs", ids).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn runs_by_id(&self, ids: &[i64]) -> StoreResult<Vec<WorkflowRun>> {
        let rows = self.rows_by_id("workflow_runs", ids).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn commit_processing(&self, batch: &ProcessingBatch) -> StoreResult<()> {
        retry_transient(|| self.commit_processing_once(batch)).await
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Page<EventRecord>> {
        let (limit, offset) = page_bounds(filter.limit, filter.offset);
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {EVENT_COLUMNS}, COUNT(*) OVER () AS total FROM webhook_events WHERE TRUE"
        ));
        push_event_filter(&mut query, filter);
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(sql_count(limit))
            .push(" OFFSET ")
            .push_bind(sql_count(offset));
        let rows = query.build().fetch_all(&self.pool).await?;
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
            "SELECT {EVENT_COLUMNS}, payload FROM webhook_events \
             LEFT JOIN webhook_payloads ON event_id = id WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| event_from_row(&r, true)).transpose()
    }

    async fn event_by_delivery(&self, delivery_id: &str) -> StoreResult<Option<EventRecord>> {
        // The genuine delivery through its (partial) unique index; refused attempts, which
        // the index leaves out, only when there is none.
        for only in [" AND signature_valid ORDER BY id DESC", " ORDER BY id DESC"] {
            let row = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS}, payload FROM webhook_events \
                 LEFT JOIN webhook_payloads ON event_id = id WHERE delivery_id = $1{only} LIMIT 1"
            ))
            .bind(delivery_id)
            .fetch_optional(&self.pool)
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
             COUNT(*) AS n FROM webhook_events WHERE received_at >= $1 GROUP BY 1, 2, 3, 4",
        )
        .bind(since)
        .fetch_all(&self.pool)
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
            "SELECT (SELECT COUNT(*) FROM webhook_events WHERE NOT processed) AS pending, \
             (SELECT MIN(received_at) FROM webhook_events WHERE NOT processed) AS oldest, \
             (SELECT MAX(received_at) FROM webhook_events) AS last, \
             (SELECT COUNT(*) FROM webhook_events WHERE processed AND outcome = 'failed') AS failed",
        )
        .fetch_one(&self.pool)
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
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT *, COUNT(*) OVER () AS total FROM jobs WHERE TRUE");
        push_job_filter(&mut query, filter);
        query
            .push(" ORDER BY first_seen_at DESC, id DESC LIMIT ")
            .push_bind(sql_count(limit))
            .push(" OFFSET ")
            .push_bind(sql_count(offset));
        let rows = query.build().fetch_all(&self.pool).await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            // Past the end no row carries the count: ask for it alone.
            None if offset > 0 => {
                let mut count: QueryBuilder<Postgres> =
                    QueryBuilder::new("SELECT COUNT(*) FROM jobs WHERE TRUE");
                push_job_filter(&mut count, filter);
                count.build_query_scalar().fetch_one(&self.pool).await?
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
        self.pg_schedulable_jobs().await
    }

    async fn record_job_outcome(
        &self,
        id: JobId,
        outcome: JobOutcome,
        detail: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        self.pg_record_job_outcome(id, outcome, detail, at).await
    }

    async fn save_runner(&self, runner: &Runner) -> StoreResult<()> {
        self.pg_save_runner(runner).await
    }

    async fn live_runners(&self) -> StoreResult<Vec<Runner>> {
        self.pg_live_runners().await
    }

    async fn registered_scopes(&self) -> StoreResult<Vec<String>> {
        self.pg_registered_scopes().await
    }

    async fn runner_by_name(&self, name: &str) -> StoreResult<Option<Runner>> {
        self.pg_runner_by_name(name).await
    }

    async fn list_runners(&self, filter: &RunnerFilter) -> StoreResult<Page<Runner>> {
        self.pg_list_runners(filter).await
    }

    async fn insert_live_events(
        &self,
        events: &[LiveEventRow],
        reserved_seq: i64,
    ) -> StoreResult<()> {
        self.pg_insert_live_events(events, reserved_seq).await
    }

    async fn live_event_bounds(&self) -> StoreResult<LiveEventBounds> {
        self.pg_live_event_bounds().await
    }

    async fn live_events_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> StoreResult<Vec<LiveEventRow>> {
        self.pg_live_events_after(after, through, limit).await
    }

    async fn prune_live_events(
        &self,
        keep_last: i64,
        older_than: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.pg_prune_live_events(keep_last, older_than).await
    }

    async fn prune(&self, what: Prunable, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        self.pg_prune(what, before, limit).await
    }

    async fn pending_jobs(&self, repository: Option<&str>, limit: u32) -> StoreResult<Vec<Job>> {
        self.pg_pending_jobs(repository, limit).await
    }

    async fn jobs_active_since(
        &self,
        since: DateTime<Utc>,
        repository: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        self.pg_jobs_active_since(since, repository, limit).await
    }

    async fn job_repositories_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            // The most recently active first: past the bound, the quiet ones wait.
            "SELECT repository FROM jobs WHERE updated_at >= $1 GROUP BY repository \
             ORDER BY MAX(updated_at) DESC, repository LIMIT $2",
        )
        .bind(since)
        .bind(sql_count(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    // Pool history: `postgres_history.rs`.

    async fn record_pool_samples(
        &self,
        instance: &str,
        minute: DateTime<Utc>,
        samples: &[PoolSample],
    ) -> StoreResult<()> {
        self.pg_record_pool_samples(instance, minute, samples).await
    }

    async fn queued_jobs_per_pool(&self) -> StoreResult<Vec<(String, u64)>> {
        self.pg_queued_jobs_per_pool().await
    }

    async fn pool_minutes(&self, since: DateTime<Utc>) -> StoreResult<Vec<PoolMinute>> {
        self.pg_pool_minutes(since).await
    }

    async fn job_waits(&self, since: DateTime<Utc>, limit: u32) -> StoreResult<Vec<JobWait>> {
        self.pg_job_waits(since, limit).await
    }
}

impl PostgresStore {
    /// `SELECT * FROM {table} WHERE id = ANY(…)`, by id; `table` is one of ours, never input.
    async fn rows_by_id(&self, table: &'static str, ids: &[i64]) -> StoreResult<Vec<PgRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ordered as SQLite's primary-key lookups come back, so both backends answer alike.
        Ok(sqlx::query(&format!(
            "SELECT * FROM {table} WHERE id = ANY($1) ORDER BY id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_events(&self, filter: &EventFilter) -> StoreResult<i64> {
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT COUNT(*) FROM webhook_events WHERE TRUE");
        push_event_filter(&mut query, filter);
        Ok(query.build_query_scalar().fetch_one(&self.pool).await?)
    }
}
