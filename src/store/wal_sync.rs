//! Group fsync of SQLite's write-ahead log, outside the write lock.
//!
//! With `synchronous = FULL` SQLite fsyncs the WAL inside every COMMIT while it holds the one
//! write connection, so the next batch cannot even start until the disk answers: throughput
//! was capped at one batch per fsync. Instead the
//! connections run with `synchronous = NORMAL` (a commit writes its WAL frames but does not
//! sync them) and whoever needs a commit durable asks [`WalSync::sync`], which resolves after an
//! `fdatasync` of the WAL file that *started after* the request. The WAL is one file, written
//! in order, so one fdatasync makes every commit before it durable: concurrent requests share
//! it, and the next transaction writes while the previous one syncs. An acknowledgement still
//! means "on disk"; only the waiting moved.
//!
//! What makes this equivalent to `FULL`:
//! - every store method that commits waits for a sync before it returns (see `SqliteStore`);
//! - a WAL file seen for the first time also gets its directory synced, as SQLite does when it
//!   creates one, so the file itself survives a power cut;
//! - the file is re-opened when its inode changes (SQLite deletes the WAL when the last
//!   connection closes — after checkpointing it into the database and syncing that — and
//!   creates a new one on the next write);
//! - one difference remains, for readers only: another connection can read a commit up to one
//!   fsync before it is durable. Nothing is acknowledged or published before it is, so after
//!   a power cut such a reader has at most seen state that is then rebuilt by reprocessing;
//! - an fsync error is final: after a failed fsync Linux may have dropped the dirty pages, so a
//!   later success proves nothing. Every later request fails and the daemon must be restarted;
//!   SQLite's recovery then reads what really reached the disk.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

/// Handle to the sync thread; the thread stops when the handle is dropped.
pub struct WalSync {
    shared: Arc<Shared>,
}

struct Shared {
    wal_path: PathBuf,
    requests: Mutex<Requests>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
}

#[derive(Default)]
struct Requests {
    /// Tickets handed out so far; a request's ticket is covered by a sync that started after
    /// it was handed out.
    issued: u64,
    closed: bool,
}

#[derive(Clone, Copy, Default)]
struct Progress {
    /// Every ticket up to here is durable.
    synced: u64,
    failed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("syncing the write-ahead log {path} failed: {reason}; restart runnerhub to recover")]
pub struct SyncFailed {
    path: String,
    reason: String,
}

impl WalSync {
    /// Syncs the WAL of the database file `database` (`database` + `-wal`).
    pub fn start(database: &Path) -> std::io::Result<WalSync> {
        let mut wal_path = database.as_os_str().to_owned();
        wal_path.push("-wal");
        let shared = Arc::new(Shared {
            wal_path: PathBuf::from(wal_path),
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            progress: watch::channel(Progress::default()).0,
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || worker.run())?;
        Ok(WalSync { shared })
    }

    /// How many syncs have been asked for so far: changes whenever something was committed.
    pub fn requests(&self) -> u64 {
        self.shared.requests.lock().expect("wal-sync lock").issued
    }

    /// Resolves once every commit that returned before this call is on disk.
    pub async fn sync(&self) -> Result<(), SyncFailed> {
        let ticket = {
            let mut requests = self.shared.requests.lock().expect("wal-sync lock");
            requests.issued += 1;
            requests.issued
        };
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.failed || p.synced >= ticket)
            .await
            .map(|p| *p)
            .unwrap_or(Progress {
                synced: 0,
                failed: true,
            });
        if reached.failed {
            return Err(self.shared.failure("an earlier fdatasync failed".into()));
        }
        Ok(())
    }
}

impl Drop for WalSync {
    fn drop(&mut self) {
        self.shared.requests.lock().expect("wal-sync lock").closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn run(&self) {
        let mut wal = OpenWal::default();
        loop {
            let target = {
                let mut requests = self.requests.lock().expect("wal-sync lock");
                loop {
                    if requests.closed {
                        return;
                    }
                    if requests.issued > self.progress.borrow().synced {
                        break requests.issued;
                    }
                    requests = self.wake.wait(requests).expect("wal-sync lock");
                }
            };
            match wal.sync(&self.wal_path) {
                Ok(()) => {
                    self.progress
                        .send_modify(|p| p.synced = p.synced.max(target));
                }
                Err(error) => {
                    tracing::error!(error = %self.failure(error.to_string()), "durability lost");
                    self.progress.send_modify(|p| p.failed = true);
                    return;
                }
            }
        }
    }

    fn failure(&self, reason: String) -> SyncFailed {
        SyncFailed {
            path: self.wal_path.display().to_string(),
            reason,
        }
    }
}

/// The WAL file as last opened, re-opened when SQLite has replaced it.
#[derive(Default)]
struct OpenWal {
    file: Option<(File, u64)>,
}

impl OpenWal {
    fn sync(&mut self, path: &Path) -> std::io::Result<()> {
        let inode = match std::fs::metadata(path) {
            Ok(meta) => meta.ino(),
            // No WAL: SQLite checkpointed it into the database, synced that, and deleted it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.file = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.file.as_ref().is_none_or(|(_, seen)| *seen != inode) {
            let file = File::open(path)?;
            let opened = file.metadata()?.ino();
            // A new WAL's directory entry must be durable too, or the file could vanish.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            self.file = Some((file, opened));
        }
        let (file, _) = self.file.as_ref().expect("opened above");
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn concurrent_requests_all_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::File::create(dir.path().join("db-wal"))
            .unwrap()
            .write_all(b"frames")
            .unwrap();
        let sync = Arc::new(WalSync::start(&db).unwrap());
        let waits: Vec<_> = (0..50)
            .map(|_| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.sync().await })
            })
            .collect();
        for wait in waits {
            wait.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_missing_wal_needs_no_sync_and_a_replaced_one_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let sync = WalSync::start(&db).unwrap();
        sync.sync().await.unwrap();
        std::fs::write(dir.path().join("db-wal"), b"one").unwrap();
        sync.sync().await.unwrap();
        std::fs::remove_file(dir.path().join("db-wal")).unwrap();
        std::fs::write(dir.path().join("db-wal"), b"two").unwrap();
        sync.sync().await.unwrap();
    }
}
