//! The write path of [`PostgresStore`]: appending deliveries and committing what processing
//! decided. Each is one transaction with one statement per table, whole columns bound as
//! arrays, so a batch of any size costs the same few round trips.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::postgres::PostgresStore;
use super::{DeliveryOutcome, InsertOutcome, ProcessingBatch, StoreError, StoreResult};
use crate::domain::{Job, WorkflowRun};
use crate::webhook::intake::{NewDelivery, Settled};

/// Rows per multi-row upsert: 19 bound values each, far below PostgreSQL's 65,535 per statement.
const ROWS_PER_UPSERT: usize = 1000;

/// Offers only the first occurrence of each genuine GUID (a later one is a duplicate whatever
/// the database holds), and skips GUIDs already stored before asking for an id: a conflict
/// found by `ON CONFLICT` alone would have used up a sequence value, and redeliveries would
/// leave gaps in the event ids. `ON CONFLICT` still settles races with other instances.
/// `ORDER BY ord` hands out ids in the order of the batch, which is arrival order.
const INSERT_EVENTS: &str = "INSERT INTO webhook_events (delivery_id, event, action, repository, \
     signature_valid, received_at, processed, processed_at, outcome, outcome_detail) \
     SELECT u.delivery_id, u.event, u.action, u.repository, u.signature_valid, u.received_at, \
     u.processed, u.processed_at, u.outcome, u.outcome_detail \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], \
     $6::timestamptz[], $7::boolean[], $8::timestamptz[], $9::text[], $10::text[]) \
     WITH ORDINALITY AS u (delivery_id, event, action, repository, signature_valid, \
     received_at, processed, processed_at, outcome, outcome_detail, ord) \
     WHERE NOT (u.signature_valid AND EXISTS (SELECT 1 FROM webhook_events e \
     WHERE e.delivery_id = u.delivery_id AND e.signature_valid)) \
     ORDER BY u.ord \
     ON CONFLICT (delivery_id) WHERE signature_valid DO NOTHING \
     RETURNING id, delivery_id, signature_valid";

/// [`INSERT_EVENTS`] and the payloads in one statement, for a batch of genuine deliveries (each
/// GUID once, so a payload finds its row by GUID): run on its own, it is its own transaction,
/// one round trip to the server instead of four (BEGIN, the rows, the payloads, COMMIT).
/// Invalid-signature attempts may share a GUID, so a batch with any takes the two-statement
/// path, which matches them by order.
const INSERT_GENUINE_WITH_PAYLOADS: &str = "WITH u AS MATERIALIZED (SELECT * FROM \
     UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], \
     $6::timestamptz[], $7::boolean[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[]) \
     WITH ORDINALITY AS u (delivery_id, event, action, repository, signature_valid, \
     received_at, processed, processed_at, outcome, outcome_detail, payload, ord)), \
     ins AS (INSERT INTO webhook_events (delivery_id, event, action, repository, \
     signature_valid, received_at, processed, processed_at, outcome, outcome_detail) \
     SELECT u.delivery_id, u.event, u.action, u.repository, u.signature_valid, u.received_at, \
     u.processed, u.processed_at, u.outcome, u.outcome_detail FROM u \
     WHERE NOT EXISTS (SELECT 1 FROM webhook_events e \
     WHERE e.delivery_id = u.delivery_id AND e.signature_valid) \
     ORDER BY u.ord \
     ON CONFLICT (delivery_id) WHERE signature_valid DO NOTHING \
     RETURNING id, delivery_id, signature_valid), \
     stored_payloads AS (INSERT INTO webhook_payloads (event_id, payload) \
     SELECT ins.id, u.payload FROM ins JOIN u ON u.delivery_id = ins.delivery_id) \
     SELECT id, delivery_id, signature_valid FROM ins";

const MARK_DELIVERIES: &str = "UPDATE webhook_events AS e SET processed = v.processed, \
     processed_at = v.processed_at, outcome = v.outcome, outcome_detail = v.outcome_detail, \
     attempts = v.attempts, next_attempt_at = v.next_attempt_at \
     FROM UNNEST($1::bigint[], $2::boolean[], $3::timestamptz[], $4::text[], $5::text[], \
     $6::bigint[], $7::timestamptz[]) \
     AS v (id, processed, processed_at, outcome, outcome_detail, attempts, next_attempt_at) \
     WHERE e.id = v.id";

impl PostgresStore {
    pub(super) async fn append_once(
        &self,
        batch: &[NewDelivery],
    ) -> StoreResult<Vec<InsertOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut genuine = HashSet::new();
        let offered: Vec<&NewDelivery> = batch
            .iter()
            .filter(|d| !d.signature_valid || genuine.insert(d.delivery_id.as_str()))
            .collect();
        if offered.iter().all(|d| d.signature_valid) {
            let rows = bind_event_columns(sqlx::query(INSERT_GENUINE_WITH_PAYLOADS), &offered)
                .bind(
                    offered
                        .iter()
                        .map(|d| d.payload.as_bytes())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&self.pool)
                .await?;
            return match_outcomes(batch, returned_rows(&rows)?);
        }
        let mut tx = self.pool.begin().await?;
        let rows = bind_event_columns(sqlx::query(INSERT_EVENTS), &offered)
            .fetch_all(&mut *tx)
            .await?;
        let outcomes = match_outcomes(batch, returned_rows(&rows)?)?;
        insert_payloads(&mut tx, batch, &outcomes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn commit_processing_once(&self, batch: &ProcessingBatch) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in last_per_id(&batch.jobs, |j| j.id).chunks(ROWS_PER_UPSERT) {
            upsert_jobs(chunk).build().execute(&mut *tx).await?;
        }
        for chunk in last_per_id(&batch.runs, |r| r.id).chunks(ROWS_PER_UPSERT) {
            upsert_runs(chunk).build().execute(&mut *tx).await?;
        }
        if !batch.deliveries.is_empty() {
            mark_deliveries(&mut tx, batch).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds the columns of a delivery row ($1 to $10 of [`INSERT_EVENTS`]), one array each.
fn bind_event_columns<'q>(query: PgQuery<'q>, offered: &[&'q NewDelivery]) -> PgQuery<'q> {
    query
        .bind(
            offered
                .iter()
                .map(|d| d.delivery_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(offered.iter().map(|d| d.event.as_str()).collect::<Vec<_>>())
        .bind(
            offered
                .iter()
                .map(|d| d.action.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            offered
                .iter()
                .map(|d| d.repository.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            offered
                .iter()
                .map(|d| d.signature_valid)
                .collect::<Vec<_>>(),
        )
        .bind(offered.iter().map(|d| d.received_at).collect::<Vec<_>>())
        .bind(
            offered
                .iter()
                .map(|d| d.settled.is_some())
                .collect::<Vec<_>>(),
        )
        .bind(
            offered
                .iter()
                .map(|d| d.settled.is_some().then_some(d.received_at))
                .collect::<Vec<_>>(),
        )
        .bind(offered.iter().map(|d| settled(d).0).collect::<Vec<_>>())
        .bind(offered.iter().map(|d| settled(d).1).collect::<Vec<_>>())
}

/// (id, GUID, signature valid) of each row an insert returned.
fn returned_rows(rows: &[sqlx::postgres::PgRow]) -> StoreResult<Vec<(i64, String, bool)>> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect()
}

/// The outcome and detail a delivery settled at intake is stored with.
fn settled(d: &NewDelivery) -> (Option<&'static str>, Option<&str>) {
    match &d.settled {
        None => (None, None),
        Some(Settled::Ignored(r)) => (Some("ignored"), Some(r.as_str())),
        Some(Settled::Rejected(r)) => (Some("rejected"), Some(r.as_str())),
    }
}

/// One outcome per delivery of `batch`, from what the INSERT returned. By GUID, because
/// PostgreSQL does not promise RETURNING's order: a genuine GUID returned is the first
/// occurrence's row, and every other genuine occurrence a duplicate. Invalid-signature
/// attempts are all stored, several perhaps under one GUID; their ids rise in batch order.
fn match_outcomes(
    batch: &[NewDelivery],
    returned: Vec<(i64, String, bool)>,
) -> StoreResult<Vec<InsertOutcome>> {
    let mut genuine: HashMap<String, i64> = HashMap::new();
    let mut attempts: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, guid, valid) in returned {
        if valid {
            genuine.insert(guid, id);
        } else {
            attempts.entry(guid).or_default().push(id);
        }
    }
    for ids in attempts.values_mut() {
        // Popped from the end: smallest first.
        ids.sort_unstable_by(|a, b| b.cmp(a));
    }
    batch
        .iter()
        .map(|d| {
            if d.signature_valid {
                return Ok(match genuine.remove(&d.delivery_id) {
                    Some(id) => InsertOutcome::Stored { id },
                    None => InsertOutcome::Duplicate,
                });
            }
            attempts
                .get_mut(&d.delivery_id)
                .and_then(Vec::pop)
                .map(|id| InsertOutcome::Stored { id })
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "delivery {} (invalid signature) was not stored",
                        d.delivery_id
                    ))
                })
        })
        .collect()
}

async fn insert_payloads(
    conn: &mut PgConnection,
    batch: &[NewDelivery],
    outcomes: &[InsertOutcome],
) -> StoreResult<()> {
    let (ids, payloads): (Vec<i64>, Vec<&[u8]>) = batch
        .iter()
        .zip(outcomes)
        .filter_map(|(d, o)| match o {
            InsertOutcome::Stored { id } => Some((*id, d.payload.as_bytes())),
            InsertOutcome::Duplicate => None,
        })
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_payloads (event_id, payload) \
         SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
    )
    .bind(ids)
    .bind(payloads)
    .execute(conn)
    .await?;
    Ok(())
}

/// The last record per id, by id: one statement must not upsert a row twice (PostgreSQL
/// refuses), the last is what a row-by-row write would leave, and a fixed order makes
/// concurrent writers lock rows in the same order.
fn last_per_id<T: Clone>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<T> {
    let mut by_id: std::collections::BTreeMap<i64, &T> = std::collections::BTreeMap::new();
    for item in items {
        by_id.insert(id(item), item);
    }
    by_id.into_values().cloned().collect()
}

/// Same columns, and the same ones left alone on update (run, repository, name and first
/// sight never change), as the SQLite store's upsert.
fn upsert_jobs(jobs: &[Job]) -> QueryBuilder<'_, Postgres> {
    let mut query = QueryBuilder::new(
        "INSERT INTO jobs (id, run_id, run_attempt, repository, workflow_name, name, labels, \
         priority, pool, status, conclusion, runner_id, runner_name, runner_group_name, \
         created_at, started_at, completed_at, first_seen_at, updated_at, outcome, \
         outcome_detail) ",
    );
    query.push_values(jobs, |mut row, job| {
        row.push_bind(job.id)
            .push_bind(job.run_id)
            .push_bind(job.run_attempt)
            .push_bind(&job.repository)
            .push_bind(&job.workflow_name)
            .push_bind(&job.name)
            .push_bind(job.labels.as_slice())
            .push_bind(job.priority)
            .push_bind(&job.pool)
            .push_bind(job.status.as_str())
            .push_bind(&job.conclusion)
            .push_bind(job.runner_id)
            .push_bind(&job.runner_name)
            .push_bind(&job.runner_group_name)
            .push_bind(job.created_at)
            .push_bind(job.started_at)
            .push_bind(job.completed_at)
            .push_bind(job.first_seen_at)
            .push_bind(job.updated_at)
            .push_bind(job.outcome.map(|o| o.as_str()))
            .push_bind(&job.outcome_detail);
    });
    query.push(
        " ON CONFLICT (id) DO UPDATE SET run_attempt = excluded.run_attempt, \
         workflow_name = excluded.workflow_name, labels = excluded.labels, \
         priority = excluded.priority, pool = excluded.pool, status = excluded.status, \
         conclusion = excluded.conclusion, runner_id = excluded.runner_id, \
         runner_name = excluded.runner_name, runner_group_name = excluded.runner_group_name, \
         created_at = excluded.created_at, started_at = excluded.started_at, \
         completed_at = excluded.completed_at, updated_at = excluded.updated_at, \
         outcome = COALESCE(jobs.outcome, excluded.outcome), \
         outcome_detail = COALESCE(jobs.outcome_detail, excluded.outcome_detail)",
    );
    query
}

fn upsert_runs(runs: &[WorkflowRun]) -> QueryBuilder<'_, Postgres> {
    let mut query = QueryBuilder::new(
        "INSERT INTO workflow_runs (id, repository, workflow_name, head_branch, head_sha, \
         event, status, conclusion, run_attempt, created_at, updated_at) ",
    );
    query.push_values(runs, |mut row, run| {
        row.push_bind(run.id)
            .push_bind(&run.repository)
            .push_bind(&run.workflow_name)
            .push_bind(&run.head_branch)
            .push_bind(&run.head_sha)
            .push_bind(&run.event)
            .push_bind(&run.status)
            .push_bind(&run.conclusion)
            .push_bind(run.run_attempt)
            .push_bind(run.created_at)
            .push_bind(run.updated_at);
    });
    query.push(
        " ON CONFLICT (id) DO UPDATE SET workflow_name = excluded.workflow_name, \
         head_branch = excluded.head_branch, head_sha = excluded.head_sha, \
         event = excluded.event, status = excluded.status, conclusion = excluded.conclusion, \
         run_attempt = excluded.run_attempt, created_at = excluded.created_at, \
         updated_at = excluded.updated_at",
    );
    query
}

/// Each delivery's outcome; a failure with a retry time stays unprocessed until then.
async fn mark_deliveries(conn: &mut PgConnection, batch: &ProcessingBatch) -> StoreResult<()> {
    let n = batch.deliveries.len();
    let mut ids = Vec::with_capacity(n);
    let mut processed = Vec::with_capacity(n);
    let mut processed_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut details = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut retry_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    for d in &batch.deliveries {
        let retry = match &d.outcome {
            DeliveryOutcome::Failed {
                retry_at: Some(at), ..
            } => Some(*at),
            _ => None,
        };
        ids.push(d.id);
        processed.push(retry.is_none());
        processed_at.push(retry.is_none().then_some(d.at));
        outcomes.push(d.outcome.label());
        details.push(d.outcome.detail());
        attempts.push(d.attempts);
        retry_at.push(retry);
    }
    sqlx::query(MARK_DELIVERIES)
        .bind(ids)
        .bind(processed)
        .bind(processed_at)
        .bind(outcomes)
        .bind(details)
        .bind(attempts)
        .bind(retry_at)
        .execute(conn)
        .await?;
    Ok(())
}
