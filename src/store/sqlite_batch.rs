//! The multi-row statements of the write path, written onto a [`super::sqlite_script::Script`]:
//! one statement per chunk instead of one per row, and one script per transaction, because the
//! write connection is shared by ingest and processing and every round trip here is time that
//! webhook acknowledgements wait.

use sqlx::{QueryBuilder, Sqlite};

use super::{DeliveryOutcome, InsertOutcome, ProcessedDelivery};
use crate::domain::{Job, WorkflowRun};
use crate::webhook::intake::{NewDelivery, Settled};

/// New rows for `chunk`; returns (id, delivery_id, signature_valid) of those inserted. A
/// genuine delivery whose GUID is stored already is skipped.
pub(super) fn insert_events<'a>(query: &mut QueryBuilder<'a, Sqlite>, chunk: &'a [NewDelivery]) {
    query.push(
        "INSERT INTO webhook_events (delivery_id, event, action, repository, \
         signature_valid, received_at, processed, processed_at, outcome, outcome_detail) ",
    );
    query.push_values(chunk, |mut row, d| {
        let (outcome, detail) = match &d.settled {
            None => (None, None),
            Some(Settled::Ignored(r)) => (Some("ignored"), Some(r.as_str())),
            Some(Settled::Rejected(r)) => (Some("rejected"), Some(r.as_str())),
        };
        let settled = d.settled.is_some();
        row.push_bind(&d.delivery_id)
            .push_bind(&d.event)
            .push_bind(&d.action)
            .push_bind(&d.repository)
            .push_bind(d.signature_valid)
            .push_bind(d.received_at)
            .push_bind(settled)
            .push_bind(settled.then_some(d.received_at))
            .push_bind(outcome)
            .push_bind(detail);
    });
    query.push(
        " ON CONFLICT (delivery_id) WHERE signature_valid = 1 DO NOTHING \
         RETURNING id, delivery_id, signature_valid",
    );
}

/// The payloads of the rows of `chunk` that were stored (`outcomes` aligned with `chunk`).
pub(super) fn insert_payloads<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    chunk: &'a [NewDelivery],
    outcomes: &[InsertOutcome],
) {
    let rows: Vec<(i64, &[u8])> = chunk
        .iter()
        .zip(outcomes)
        .filter_map(|(d, o)| match o {
            InsertOutcome::Stored { id } => Some((*id, d.payload.as_bytes())),
            InsertOutcome::Duplicate => None,
        })
        .collect();
    query.push("INSERT INTO webhook_payloads (event_id, payload) ");
    query.push_values(rows, |mut row, (id, payload)| {
        row.push_bind(id).push_bind(payload);
    });
}

/// Rows per multi-row upsert (19 columns × 40 stays far below the bound-variable limit).
pub(super) const ROWS_PER_UPSERT: usize = 40;

pub(super) fn upsert_jobs<'a>(query: &mut QueryBuilder<'a, Sqlite>, jobs: &'a [Job]) {
    query.push(
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
            .push_bind(serde_json::to_string(&job.labels).expect("strings serialise"))
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
}

pub(super) fn upsert_runs<'a>(query: &mut QueryBuilder<'a, Sqlite>, runs: &'a [WorkflowRun]) {
    query.push(
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
}

/// One `UPDATE … FROM (VALUES …)` for a chunk of delivery outcomes.
pub(super) fn mark_deliveries<'a>(
    query: &mut QueryBuilder<'a, Sqlite>,
    deliveries: &'a [ProcessedDelivery],
) {
    query.push(
        "WITH v (id, processed, processed_at, outcome, outcome_detail, attempts, next_attempt_at) AS (",
    );
    query.push_values(deliveries, |mut row, d| {
        let (processed, retry_at) = match &d.outcome {
            DeliveryOutcome::Failed {
                retry_at: Some(at), ..
            } => (false, Some(*at)),
            _ => (true, None),
        };
        row.push_bind(d.id)
            .push_bind(processed)
            .push_bind(processed.then_some(d.at))
            .push_bind(d.outcome.label())
            .push_bind(d.outcome.detail())
            .push_bind(d.attempts)
            .push_bind(retry_at);
    });
    query.push(
        ") UPDATE webhook_events SET processed = v.processed, processed_at = v.processed_at, \
         outcome = v.outcome, outcome_detail = v.outcome_detail, attempts = v.attempts, \
         next_attempt_at = v.next_attempt_at FROM v WHERE webhook_events.id = v.id",
    );
}
