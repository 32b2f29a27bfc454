//! Is the database this process writes to still the one at its path?
//!
//! SQLite keeps writing to open files: if the database's directory is removed, or the file (or
//! its `-wal`) is replaced, commits go on succeeding into unlinked files and every
//! acknowledgement after that is lost at the next start, which opens whatever is at the path
//! then. So the serving store notes the identity (device + inode) of the database, `-wal` and
//! `-shm` files, and [`DatabaseWatch::check`] (run from `maintain`, ten times a second) compares
//! them with what the path names now. Once they differ the store is *lost*: writes and `ping`
//! fail from then on, so webhooks answer 503 and `/readyz` and the watchdog fail. Checking
//! before each acknowledgement would cost three `stat`s per commit; the check's period bounds
//! the acknowledgements lost instead (those between the removal and the next check).
//!
//! The `-shm` file is SQLite's shared memory, mapped into the process: truncated behind its
//! back, the next access to a page past its new end kills the process with SIGBUS, which no
//! safe Rust can catch. A shrunk `-shm` is therefore reported (and the store lost) as soon as
//! it is seen, so that the log says why if the signal comes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Device and inode: what a file is, whatever path names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(path: &Path) -> std::io::Result<(FileId, u64)> {
        let meta = std::fs::metadata(path)?;
        Ok((
            FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            meta.len(),
        ))
    }
}

/// One of the three files and what it was when first seen.
struct Watched {
    path: PathBuf,
    /// `None` until the file exists (`-wal` and `-shm` appear with the first transaction).
    seen: Option<FileId>,
    /// The largest length seen (only checked for `-shm`, which SQLite never shrinks while a
    /// connection has it mapped).
    len: u64,
}

#[derive(Default)]
pub(super) struct DatabaseWatch {
    files: Mutex<Vec<Watched>>,
    lost: OnceLock<String>,
}

impl DatabaseWatch {
    /// Starts watching `database` (its canonical path) as it is now.
    pub(super) fn start(&self, database: &Path) -> std::io::Result<()> {
        let (id, len) = FileId::of(database)?;
        let mut files = vec![Watched {
            path: database.to_owned(),
            seen: Some(id),
            len,
        }];
        for suffix in ["-wal", "-shm"] {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            files.push(Watched {
                path: path.into(),
                seen: None,
                len: 0,
            });
        }
        *self.files.lock().expect("not poisoned") = files;
        Ok(())
    }

    /// Stops watching (the store no longer serves).
    pub(super) fn stop(&self) {
        self.files.lock().expect("not poisoned").clear();
    }

    /// Why the database is no longer the one at its path, once that has been found.
    pub(super) fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Compares the files with what their paths name now; the first difference found makes the
    /// store lost for good (logged once, at ERROR, with the path).
    pub(super) fn check(&self) {
        if self.lost.get().is_some() {
            return;
        }
        let mut files = self.files.lock().expect("not poisoned");
        for (index, file) in files.iter_mut().enumerate() {
            if let Some(cause) = file.check(index == 2) {
                let cause = format!("{}: {cause}", file.path.display());
                tracing::error!(
                    path = %file.path.display(),
                    %cause,
                    "the database is no longer the file at its path; refusing writes \
                     (webhooks answer 503, /readyz fails) until restarted"
                );
                let _ = self.lost.set(cause);
                return;
            }
        }
    }
}

impl Watched {
    fn check(&mut self, is_shm: bool) -> Option<String> {
        let now = match FileId::of(&self.path) {
            Ok(now) => Some(now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Some(format!("cannot be examined: {e}")),
        };
        match (self.seen, now) {
            (None, None) => None,
            (None, Some((id, len))) => {
                self.seen = Some(id);
                self.len = len;
                None
            }
            (Some(_), None) => Some("removed while in use".into()),
            (Some(seen), Some((id, _))) if seen != id => {
                Some("replaced by another file while in use".into())
            }
            (Some(_), Some((_, len))) if is_shm && len < self.len => Some(format!(
                "shared-memory file truncated from {} to {len} bytes while mapped (the process \
                 dies of SIGBUS at its next access)",
                self.len
            )),
            (Some(_), Some((_, len))) => {
                self.len = self.len.max(len);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(dir: &Path) -> (PathBuf, DatabaseWatch) {
        let db = dir.join("t.db");
        std::fs::write(&db, b"x").unwrap();
        let watch = DatabaseWatch::default();
        watch.start(&db).unwrap();
        (db, watch)
    }

    #[test]
    fn a_removed_database_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (db, watch) = watch(dir.path());
        watch.check();
        assert_eq!(watch.lost(), None);
        std::fs::remove_file(&db).unwrap();
        watch.check();
        assert!(
            watch.lost().unwrap().contains("removed"),
            "{:?}",
            watch.lost()
        );
    }

    #[test]
    fn a_replaced_wal_is_lost_and_a_new_one_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let (db, watch) = watch(dir.path());
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&wal, b"w").unwrap();
        watch.check();
        assert_eq!(watch.lost(), None, "first seen: adopted");
        std::fs::write(dir.path().join("other"), b"w").unwrap();
        std::fs::rename(dir.path().join("other"), &wal).unwrap();
        watch.check();
        assert!(watch.lost().unwrap().contains("replaced"));
        assert!(watch.lost().unwrap().contains("t.db-wal"));
        drop(db);
    }

    #[test]
    fn a_truncated_shm_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, watch) = watch(dir.path());
        let shm = dir.path().join("t.db-shm");
        std::fs::write(&shm, [0u8; 64]).unwrap();
        watch.check();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&shm)
            .unwrap()
            .set_len(0)
            .unwrap();
        watch.check();
        assert!(
            watch.lost().unwrap().contains("SIGBUS"),
            "{:?}",
            watch.lost()
        );
    }

    #[test]
    fn nothing_is_checked_once_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (db, watch) = watch(dir.path());
        watch.stop();
        std::fs::remove_file(&db).unwrap();
        watch.check();
        assert_eq!(watch.lost(), None);
    }
}
