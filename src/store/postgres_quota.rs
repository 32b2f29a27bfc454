//! Quotas across a fleet on PostgreSQL (DESIGN §13): what the fleet's runners hold, and the
//! claim that checks a job's quotas in its own transaction, under one advisory lock per quota.
//!
//! A runner record is written just after its job's claim commits, so between the two the claim
//! stands for it: a slot is held by a live runner that counts for a repository (the job it
//! runs, else the job it was launched for), or by another instance's claim on a queued job that
//! no live runner was launched for yet. An instance's own claims without a runner are its
//! launches that failed or were never recorded: its core plans those jobs again, so its own
//! check leaves them out (the others count them, which is only cautious).

use std::collections::HashMap;

use sqlx::{PgPool, Row};

use super::StoreResult;
use super::fleet::{Claim, HeldSlots, QuotaGate};
use crate::domain::JobId;

/// Every slot the fleet holds, as (pool, repository, instance). `$1`: the instance asking (its
/// own claims are left out), `$2`: a job to leave out (the one being claimed), or NULL.
const SLOTS_HELD: &str = "\
    SELECT pool, repository, instance FROM ( \
        SELECT r.pool, r.instance, COALESCE(ran.repository, launched.repository, \
                   CASE WHEN r.scope LIKE 'repos/%' THEN substr(r.scope, 7) END) AS repository \
        FROM runners r \
        LEFT JOIN jobs ran ON ran.id = r.job_id \
        LEFT JOIN jobs launched ON launched.id = r.launched_for \
        WHERE r.state IN ('requested', 'creating', 'idle', 'busy') \
          AND COALESCE(r.job_id, r.launched_for) IS NOT NULL \
        UNION ALL \
        SELECT j.pool, j.claimed_by AS instance, j.repository \
        FROM jobs j \
        WHERE j.status IN ('queued', 'waiting') AND j.claimed_by <> $1 \
          AND j.id IS DISTINCT FROM $2 \
          AND NOT EXISTS (SELECT 1 FROM runners s WHERE s.launched_for = j.id \
                          AND s.state IN ('requested', 'creating', 'idle', 'busy')) \
    ) held WHERE repository IS NOT NULL AND pool IS NOT NULL";

/// Two keys for `pg_advisory_xact_lock`: this namespace and the quota's name.
const LOCK_NAMESPACE: &str = "runnerhub quota";

pub(super) async fn slots_held_elsewhere(pool: &PgPool, me: &str) -> StoreResult<Vec<HeldSlots>> {
    let rows = sqlx::query(&format!(
        "SELECT pool, repository, count(*) AS runners FROM ({SLOTS_HELD}) slots \
         WHERE instance <> $1 GROUP BY pool, repository"
    ))
    .bind(me)
    .bind(None::<JobId>)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HeldSlots {
                pool: row.try_get("pool")?,
                repository: row.try_get("repository")?,
                runners: row.try_get::<i64, _>("runners")? as usize,
            })
        })
        .collect()
}

const CLAIM: &str = "UPDATE jobs SET claimed_by = $2, claimed_at = now(), updated_at = now() \
     WHERE id = $1 AND status IN ('queued', 'waiting') \
       AND (claimed_by IS NULL OR claimed_by = $2)";

pub(super) async fn claim_job(
    pool: &PgPool,
    job: JobId,
    me: &str,
    quota: Option<&QuotaGate<'_>>,
) -> StoreResult<Claim> {
    let Some(gate) = quota.filter(|g| !g.quotas.is_empty()) else {
        let claimed = sqlx::query(CLAIM).bind(job).bind(me).execute(pool).await?;
        return Ok(if claimed.rows_affected() > 0 {
            Claim::Claimed
        } else {
            Claim::Elsewhere
        });
    };
    let mut tx = pool.begin().await?;
    // The locks before the job's row: an instance holding a quota's lock may be claiming this
    // same job, and taking them the other way round would deadlock with it.
    for name in &gate.quotas {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
            .bind(LOCK_NAMESPACE)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    let claimed = sqlx::query(CLAIM)
        .bind(job)
        .bind(me)
        .execute(&mut *tx)
        .await?;
    if claimed.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Claim::Elsewhere);
    }
    // Read after the locks: every claim decided before this one under them has committed.
    let rows = sqlx::query(&format!(
        "SELECT repository, count(*) AS runners FROM ({SLOTS_HELD}) slots GROUP BY repository"
    ))
    .bind(me)
    .bind(Some(job))
    .fetch_all(&mut *tx)
    .await?;
    let mut fleet = HashMap::with_capacity(rows.len());
    for row in &rows {
        let repository: String = row.try_get("repository")?;
        fleet.insert(repository, row.try_get::<i64, _>("runners")? as usize);
    }
    if let Some(detail) = (gate.refusal)(&fleet) {
        tx.rollback().await?;
        return Ok(Claim::OverQuota(detail));
    }
    tx.commit().await?;
    Ok(Claim::Claimed)
}
