//! WAL checkpoints, kept off the commit path.
//!
//! Left to itself, SQLite checkpoints inside the commit that crosses `wal_autocheckpoint`: the
//! commit copies the WAL into the database file and fsyncs it while it holds the one write
//! connection, and every acknowledgement waiting behind it stalls (measured: 40–140 ms every
//! 0.7–2.5 s; small commits write whole pages, so the WAL grows by up to 40 MB/s at a steady
//! 1,000 deliveries/s). So the store checkpoints from the maintenance task instead, often
//! enough that each checkpoint is small (a few ms of disk at that rate):
//!
//! 1. a PASSIVE checkpoint on a read connection copies whatever is committed, without blocking
//!    anyone;
//! 2. SQLite starts writing the WAL from the beginning again only when a write transaction
//!    begins with every frame copied (and no reader in the WAL). Under continuous writes,
//!    frames keep arriving during step 1 and the WAL would grow without bound. So past
//!    [`WAL_RESTART_FRAMES`], a few more PASSIVE checkpoints follow at once: each has only the
//!    last milliseconds' frames to copy, and one that finds nothing new leaves the WAL fully
//!    copied, so the next transaction restarts it (measured: this kept the WAL under 10,000
//!    frames at a steady 1,000 deliveries/s);
//! 3. if the WAL still grows past [`WAL_FORCE_RESTART_FRAMES`] (writes never pause, as under
//!    saturation), one more runs on the write connection, under its lock: a short stall for
//!    the writers, after which the next transaction restarts the WAL.
//!
//! A reader that still uses older frames keeps them from being copied; until it is done, the
//! passes stop at what they could copy (a checkpoint under the write lock could not do more).
//! One sync stays in the commit path: the commit that restarts the WAL fsyncs its new header
//! (SQLite does that in `NORMAL` too), about once per checkpoint under steady writes.
//!
//! `wal_autocheckpoint` stays as a backstop at [`WAL_AUTOCHECKPOINT_PAGES`], far above what the
//! maintenance task lets the WAL reach. The WAL file is never truncated (no
//! `journal_size_limit`): it is reused from the start, and cutting it back would free blocks,
//! which a filesystem mounted with `discard` (ours was) answers with a 40–50 ms stall.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::SqliteConnection;

use super::StoreResult;
use super::sqlite::SqliteStore;

/// WAL frames (4 KiB pages) past which a checkpoint tries to let the WAL restart (16 MiB).
const WAL_RESTART_FRAMES: i64 = 4096;

/// WAL frames past which it makes the WAL restart, under the write lock (128 MiB).
const WAL_FORCE_RESTART_FRAMES: i64 = 32_768;

/// Quick checkpoints tried, one after another, to catch up with the last commits.
const CATCH_UP_PASSES: usize = 3;

/// The backstop: a commit checkpoints by itself past this many WAL pages (256 MiB), which
/// only happens if maintenance has stopped.
pub(super) const WAL_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// What the store remembers between checkpoints.
pub(super) struct CheckpointState {
    /// `WalSync` requests (one per durable commit) when a checkpoint last copied everything.
    requests_copied: AtomicU64,
    /// [`WAL_RESTART_FRAMES`] and [`WAL_FORCE_RESTART_FRAMES`] (smaller in tests).
    restart_frames: i64,
    force_restart_frames: i64,
}

impl Default for CheckpointState {
    fn default() -> Self {
        CheckpointState {
            requests_copied: AtomicU64::new(0),
            restart_frames: WAL_RESTART_FRAMES,
            force_restart_frames: WAL_FORCE_RESTART_FRAMES,
        }
    }
}

impl SqliteStore {
    /// Copies the WAL into the database file; see the module header.
    pub(super) async fn checkpoint(&self) -> StoreResult<()> {
        // Read before checkpointing: a commit counted here has its frames in the WAL already.
        let requests = self.wal.requests();
        let state = &self.checkpoints;
        if state.requests_copied.load(Ordering::Relaxed) == requests {
            return Ok(()); // nothing committed since everything was last copied
        }
        let mut conn = self.reader().acquire().await?;
        let mut last = passive_checkpoint(&mut conn).await?;
        for _ in 0..CATCH_UP_PASSES {
            if last.frames <= state.restart_frames || !last.copied_all() {
                break;
            }
            let now = passive_checkpoint(&mut conn).await?;
            let caught_up = now.frames == last.frames && now.copied_all();
            last = now;
            if caught_up {
                break; // nothing committed during the last pass: the WAL restarts next
            }
        }
        drop(conn);
        if !last.copied_all() {
            // A reader still uses older frames; copying more must wait for it, and so would
            // a checkpoint under the write lock.
            tracing::debug!(
                frames = last.frames,
                copied = last.copied,
                "WAL checkpoint partial"
            );
            return Ok(());
        }
        if last.frames > state.force_restart_frames {
            let mut writer = self.writer().await;
            passive_checkpoint(writer.ready().await).await?;
        }
        state.requests_copied.store(requests, Ordering::Relaxed);
        Ok(())
    }
}

/// What one `PRAGMA wal_checkpoint(PASSIVE)` reported.
struct Pass {
    /// Frames in the WAL when it ran.
    frames: i64,
    /// Of those, the frames now copied into the database file.
    copied: i64,
}

impl Pass {
    fn copied_all(&self) -> bool {
        self.copied >= self.frames
    }
}

async fn passive_checkpoint(conn: &mut SqliteConnection) -> StoreResult<Pass> {
    let (_busy, frames, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok(Pass { frames, copied })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::webhook::intake::NewDelivery;
    use crate::webhook::payload_codec::Payload;
    use std::sync::Arc;

    fn deliveries(from: usize, count: usize) -> Vec<NewDelivery> {
        (from..from + count)
            .map(|n| NewDelivery {
                delivery_id: format!("delivery-{n:06}"),
                event: "push".into(),
                action: None,
                repository: Some("octo/repo".into()),
                payload: Payload::compress(&format!("{{\"n\":{n},\"pad\":\"{}\"}}", noise(n))),
                signature_valid: true,
                received_at: chrono::Utc::now(),
                settled: None,
            })
            .collect()
    }

    /// 2,000 letters from a xorshift generator: text that LZ4 cannot shrink much, so that
    /// each delivery fills a good part of a page as a real one does.
    fn noise(seed: usize) -> String {
        let mut x = seed as u64 * 2_654_435_761 + 1;
        (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect()
    }

    /// One commit of 5 deliveries per batch number.
    async fn commit_batches(store: &SqliteStore, batches: std::ops::Range<usize>) {
        for batch in batches {
            store
                .insert_deliveries(&deliveries(batch * 5, 5))
                .await
                .unwrap();
        }
    }

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("db.sqlite-wal")).unwrap().len()
    }

    #[tokio::test]
    async fn after_a_checkpoint_the_wal_is_reused_from_the_start_not_grown() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db.sqlite", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // The migrations' frames copied first, so that the WAL below holds only the commits.
        store.checkpoint().await.unwrap();
        commit_batches(&store, 0..40).await;
        let grown = wal_bytes(dir.path());
        store.checkpoint().await.unwrap();
        commit_batches(&store, 40..80).await;
        // Without the restart, the second 40 commits would have been appended after the first.
        assert!(
            wal_bytes(dir.path()) < grown * 3 / 2,
            "WAL grew from {grown} to {} bytes",
            wal_bytes(dir.path())
        );
    }

    #[tokio::test]
    async fn under_continuous_writes_the_wal_still_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db.sqlite", dir.path().display());
        let mut store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.checkpoints = Arc::new(CheckpointState {
            restart_frames: 16,
            force_restart_frames: 64,
            ..CheckpointState::default()
        });
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { commit_batches(&store, 0..150).await })
        };
        // Checkpoints race the commits, as the maintenance task does; the forced pass takes
        // the write lock between them.
        while !writer.is_finished() {
            store.checkpoint().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        writer.await.unwrap();
        // 150 commits of 5 deliveries are ~7.5 MiB of WAL frames when nothing restarts it.
        assert!(
            wal_bytes(dir.path()) < 1024 * 1024,
            "the WAL grew to {} bytes",
            wal_bytes(dir.path())
        );
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
            .fetch_one(&store.read)
            .await
            .unwrap();
        assert_eq!(stored, 750);
    }
}
