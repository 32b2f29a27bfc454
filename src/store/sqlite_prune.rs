//! Retention's SQL for [`SqliteStore`]: deleting old rows in small batches, and giving the
//! space back to the filesystem.
//!
//! SQLite keeps the pages of deleted rows in the file (on its freelist, for reuse) unless the
//! database uses auto-vacuum. So the store opens databases with `auto_vacuum = INCREMENTAL`
//! (on a new file that takes effect at once) and retention then moves the free pages to the end
//! and truncates them, 1 MiB per transaction ([`Store::reclaim_space`]), beyond a reserve of
//! [`FREE_PAGES_KEPT_PERCENT`] that new rows reuse: `FULL` auto-vacuum would give back every
//! page inside the commit that frees it, on the ingest path. A database created
//! before this setting existed needs one `VACUUM` to switch: [`SqliteStore::migrate`] runs it
//! at start when the file is small enough to be quick ([`CONVERT_AT_START_MAX_BYTES`]); a
//! larger one keeps working without shrinking (freed pages are reused, so it stops growing)
//! until it is converted offline, as the warning says.

use chrono::{DateTime, Utc};

use super::prune::unfinished_run_cutoff;
use super::sqlite::SqliteStore;
use super::sqlite_script::Script;
use super::{Prunable, Reclaimed, StoreResult};

/// `PRAGMA auto_vacuum` of a database whose file can shrink step by step.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Free pages kept for reuse, as a share of the pages in use: an hourly pass frees about an
/// hour's worth of deliveries (1/720 of a 30-day history), which the next hour fills again, so
/// giving those back would shrink and regrow the file every hour; truncating the file frees
/// disk blocks, which a filesystem mounted with `discard` answers with a 40-50 ms stall (see
/// `sqlite_checkpoint`). Past this share (a burst pruned, the retention shortened, a cleanup),
/// the rest is given back.
const FREE_PAGES_KEPT_PERCENT: i64 = 10;

/// The largest database converted to incremental auto-vacuum at start: the one `VACUUM`
/// rewrites the whole file before the daemon serves (measured here: 5.1 s for 206 MiB, 1.3 s
/// of it CPU, on a busy machine); beyond this, start-up would be held up for minutes.
pub(super) const CONVERT_AT_START_MAX_BYTES: i64 = 256 << 20;

impl SqliteStore {
    pub(super) async fn sql_prune(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut script = Script::begin(true);
        match what {
            Prunable::Deliveries | Prunable::ForgedDeliveries => {
                // The flag written out, not bound, so that the partial index on forged rows
                // can serve the query.
                let valid = if what == Prunable::Deliveries { 1 } else { 0 };
                // The same rows twice: nothing else writes inside the transaction, and the
                // payloads go first (they reference the events).
                let doomed = |q: &mut sqlx::QueryBuilder<'_, sqlx::Sqlite>| {
                    q.push(format!(
                        "SELECT id FROM webhook_events \
                         WHERE processed = 1 AND signature_valid = {valid} AND received_at < "
                    ))
                    .push_bind(before)
                    .push(" ORDER BY received_at LIMIT ")
                    .push_bind(limit);
                };
                script.add(|q| {
                    q.push("DELETE FROM webhook_payloads WHERE event_id IN (");
                    doomed(q);
                    q.push(")");
                });
                script.add(|q| {
                    q.push("DELETE FROM webhook_events WHERE id IN (");
                    doomed(q);
                    q.push(") RETURNING id");
                });
            }
            Prunable::Jobs => {
                script.add(|q| {
                    q.push(
                        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                         WHERE status = 'completed' AND updated_at < ",
                    )
                    .push_bind(before)
                    .push(" ORDER BY updated_at LIMIT ")
                    .push_bind(limit)
                    .push(") RETURNING id");
                });
            }
            Prunable::Runs => {
                script.add(|q| {
                    q.push(
                        "DELETE FROM workflow_runs WHERE id IN (SELECT id FROM workflow_runs \
                         WHERE COALESCE(updated_at, created_at) < ",
                    )
                    .push_bind(before)
                    .push(" AND (status = 'completed' OR COALESCE(updated_at, created_at) < ")
                    .push_bind(unfinished_run_cutoff(before))
                    .push(") ORDER BY COALESCE(updated_at, created_at) LIMIT ")
                    .push_bind(limit)
                    .push(") RETURNING id");
                });
            }
            Prunable::Runners => {
                script.add(|q| {
                    q.push(
                        "DELETE FROM runners WHERE id IN (SELECT id FROM runners \
                         WHERE state = 'removed' AND COALESCE(removed_at, updated_at) < ",
                    )
                    .push_bind(before)
                    .push(" ORDER BY COALESCE(removed_at, updated_at) LIMIT ")
                    .push_bind(limit)
                    .push(") RETURNING id");
                });
            }
            Prunable::Redeliveries => {
                script.add(|q| {
                    q.push(
                        "DELETE FROM webhook_redeliveries WHERE delivery_guid IN \
                         (SELECT delivery_guid FROM webhook_redeliveries WHERE last_asked_at < ",
                    )
                    .push_bind(before)
                    .push(" ORDER BY last_asked_at LIMIT ")
                    .push_bind(limit)
                    .push(") RETURNING 1");
                });
            }
            Prunable::PoolSamples => {
                script.add(|q| {
                    q.push(
                        "DELETE FROM pool_samples WHERE rowid IN \
                         (SELECT rowid FROM pool_samples WHERE minute < ",
                    )
                    .push_bind(before)
                    .push(" ORDER BY minute LIMIT ")
                    .push_bind(limit)
                    .push(") RETURNING 1");
                });
            }
        }
        let deleted = script.commit(&mut *self.writer().await).await?.len() as u64;
        if deleted > 0 {
            self.durable().await?;
        }
        Ok(deleted)
    }

    pub(super) async fn sql_reclaim_space(&self, max_pages: u32) -> StoreResult<Reclaimed> {
        let mut writer = self.writer().await;
        let conn = writer.ready().await;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await?;
        if mode != AUTO_VACUUM_INCREMENTAL {
            return Ok(Reclaimed::default());
        }
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await?;
        let (pages, free_before): (i64, i64) =
            sqlx::query_as("SELECT * FROM pragma_page_count(), pragma_freelist_count()")
                .fetch_one(&mut *conn)
                .await?;
        let kept = (pages - free_before) * FREE_PAGES_KEPT_PERCENT / 100;
        let reclaimable = free_before - kept;
        if reclaimable <= 0 {
            return Ok(Reclaimed::default());
        }
        let step = reclaimable.min(i64::from(max_pages));
        sqlx::query(&format!("PRAGMA incremental_vacuum({step})"))
            .execute(&mut *conn)
            .await?;
        let free_after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        drop(writer);
        self.durable().await?;
        let bytes = |pages: i64| (pages.max(0) * page_size) as u64;
        Ok(Reclaimed {
            bytes: bytes(free_before - free_after),
            left: bytes(free_after - kept),
        })
    }

    /// Switches a database created without incremental auto-vacuum to it (see the module
    /// header); a no-op for one that has it.
    pub(super) async fn ensure_incremental_vacuum(&self) -> StoreResult<()> {
        let mut writer = self.writer().await;
        let conn = writer.ready().await;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await?;
        if mode == AUTO_VACUUM_INCREMENTAL {
            return Ok(());
        }
        let (pages, page_size): (i64, i64) =
            sqlx::query_as("SELECT * FROM pragma_page_count(), pragma_page_size()")
                .fetch_one(&mut *conn)
                .await?;
        let size = pages * page_size;
        let mib = size >> 20;
        if size > CONVERT_AT_START_MAX_BYTES {
            tracing::warn!(
                size_mib = mib,
                "the database does not use incremental auto-vacuum and is too large to convert \
                 at start: retention reuses the space it frees but the file will not shrink. \
                 To convert, stop the daemon and run \
                 `sqlite3 PATH 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'`"
            );
            return Ok(());
        }
        tracing::info!(
            size_mib = mib,
            "converting the database to incremental auto-vacuum (one VACUUM), so that retention can shrink it"
        );
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        // The VACUUM went through the WAL: a copy of the whole database. Copy it back and cut
        // the WAL short now, once, before anything waits on the disk.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        drop(writer);
        self.durable().await
    }
}
