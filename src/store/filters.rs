//! The `AND …` clauses of the list filters, written once for both backends: the SQL is the
//! same in SQLite and PostgreSQL, only the placeholders differ, and `QueryBuilder` writes those.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{EventFilter, JobFilter, RunnerFilter};

/// `AND repository = ? AND event = ?` for the event filters that are set.
pub(super) fn push_event_filter<'a, DB>(query: &mut QueryBuilder<'a, DB>, filter: &'a EventFilter)
where
    DB: Database,
    &'a String: Encode<'a, DB> + Type<DB>,
{
    if let Some(repo) = &filter.repository {
        query.push(" AND repository = ").push_bind(repo);
    }
    if let Some(event) = &filter.event {
        query.push(" AND event = ").push_bind(event);
    }
    if let Some(outcome) = &filter.outcome {
        if outcome == "pending" {
            query.push(" AND NOT processed");
        } else {
            query
                .push(" AND processed AND outcome = ")
                .push_bind(outcome);
        }
    }
}

/// `AND status IN (?, …) AND repository = ?` for the job filters that are set.
pub(super) fn push_job_filter<'a, DB>(query: &mut QueryBuilder<'a, DB>, filter: &'a JobFilter)
where
    DB: Database,
    &'a String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if !filter.status.is_empty() {
        query.push(" AND status IN (");
        let mut list = query.separated(", ");
        for status in &filter.status {
            let status: &'a str = status.as_str();
            list.push_bind(status);
        }
        query.push(")");
    }
    if let Some(repo) = &filter.repository {
        query.push(" AND repository = ").push_bind(repo);
    }
}

/// The runner filters that are set; removed runners only when asked for.
pub(super) fn push_runner_filter<'a, DB>(query: &mut QueryBuilder<'a, DB>, filter: &'a RunnerFilter)
where
    DB: Database,
    &'a String: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if let Some(state) = filter.state {
        let state: &'a str = state.as_str();
        query.push(" AND state = ").push_bind(state);
    }
    if let Some(pool) = &filter.pool {
        query.push(" AND pool = ").push_bind(pool);
    }
    if !filter.include_removed && filter.state.is_none() {
        query.push(" AND state <> 'removed'");
    }
}
