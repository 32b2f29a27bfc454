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
//! it is seen, so that the log says why if the signal comes. So is a `-wal` or `-shm` this
//! process may not write (its owner or mode changed behind it): at start that refuses the
//! database naming the file, while running it makes the store lost, before SQLite maps or
//! extends the file and dies of SIGBUS with no log line (#14).

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

/// Who this process is, for the write-permission check (read from `/proc/self`'s owner, no
/// `unsafe` needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ProcessIds {
    uid: u32,
    gid: u32,
}

impl ProcessIds {
    fn current() -> ProcessIds {
        std::fs::metadata("/proc/self").map_or(ProcessIds { uid: 0, gid: 0 }, |m| ProcessIds {
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    /// Whether the mode bits let this process write a file (root writes anything; ACLs and
    /// supplementary groups are not looked at).
    fn may_write(self, meta: &std::fs::Metadata) -> bool {
        let mode = meta.mode();
        self.uid == 0
            || if meta.uid() == self.uid {
                mode & 0o200 != 0
            } else if meta.gid() == self.gid {
                mode & 0o020 != 0
            } else {
                mode & 0o002 != 0
            }
    }
}

#[derive(Default)]
pub(super) struct DatabaseWatch {
    files: Mutex<Vec<Watched>>,
    lost: OnceLock<String>,
    /// `None`: this process as it is (tests pose as another user).
    process: Option<ProcessIds>,
}

/// Why `path` (a `-wal` or `-shm`) cannot serve, if this process may not write it.
fn unwritable(path: &Path, process: ProcessIds) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (!process.may_write(&meta)).then(|| {
        format!(
            "not writable by this process (uid {}; the file is owned by {} with mode {:o}): \
             SQLite would die of SIGBUS on its shared memory; give it back to the daemon's user",
            process.uid,
            meta.uid(),
            meta.mode() & 0o7777
        )
    })
}

impl DatabaseWatch {
    /// Starts watching `database` (its canonical path) as it is now.
    pub(super) fn start(&self, database: &Path) -> std::io::Result<()> {
        let (id, len) = FileId::of(database)?;
        let process = self.process();
        for suffix in ["-wal", "-shm"] {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            let path = PathBuf::from(path);
            if let Some(cause) = unwritable(&path, process) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{}: {cause}", path.display()),
                ));
            }
        }
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

    fn process(&self) -> ProcessIds {
        self.process.unwrap_or_else(ProcessIds::current)
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
        let process = self.process();
        let mut files = self.files.lock().expect("not poisoned");
        for (index, file) in files.iter_mut().enumerate() {
            let cause = file.check(index == 2).or_else(|| {
                (index > 0)
                    .then(|| unwritable(&file.path, process))
                    .flatten()
            });
            if let Some(cause) = cause {
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

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A user that owns none of the files: what the daemon's service user is to a file
    /// another user (root, say) created or took over.
    const OTHER_USER: ProcessIds = ProcessIds {
        uid: 65_000,
        gid: 65_000,
    };

    #[test]
    fn an_unwritable_shm_while_serving_is_lost_before_sqlite_touches_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        std::fs::write(&db, b"x").unwrap();
        let shm = dir.path().join("t.db-shm");
        std::fs::write(&shm, [0u8; 64]).unwrap();
        set_mode(&shm, 0o666);
        let watch = DatabaseWatch {
            process: Some(OTHER_USER),
            ..DatabaseWatch::default()
        };
        watch.start(&db).unwrap();
        watch.check();
        assert_eq!(watch.lost(), None, "world-writable: fine");
        set_mode(&shm, 0o644);
        watch.check();
        let lost = watch.lost().expect("lost");
        assert!(
            lost.contains("t.db-shm") && lost.contains("SIGBUS"),
            "{lost}"
        );
        assert!(lost.contains("uid 65000") && lost.contains("644"), "{lost}");
    }

    #[test]
    fn an_unwritable_wal_refuses_the_database_at_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        std::fs::write(&db, b"x").unwrap();
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&wal, b"w").unwrap();
        set_mode(&wal, 0o444);
        let watch = DatabaseWatch {
            process: Some(OTHER_USER),
            ..DatabaseWatch::default()
        };
        let error = watch.start(&db).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("t.db-wal"), "{error}");
        // The same files are fine for their owner.
        assert!(DatabaseWatch::default().start(&db).is_ok());
    }

    #[test]
    fn write_permission_follows_owner_group_and_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        set_mode(&file, 0o600);
        let meta = std::fs::metadata(&file).unwrap();
        let owner = ProcessIds {
            uid: meta.uid(),
            gid: 65_000,
        };
        let group = ProcessIds {
            uid: 65_000,
            gid: meta.gid(),
        };
        let root = ProcessIds { uid: 0, gid: 0 };
        assert!(owner.may_write(&meta));
        assert!(!group.may_write(&meta));
        assert!(root.may_write(&meta));
        set_mode(&file, 0o460);
        let meta = std::fs::metadata(&file).unwrap();
        if meta.uid() != 0 {
            // (As root the owner is root, who writes anything.)
            assert!(!owner.may_write(&meta), "the owner's bits decide");
        }
        assert!(group.may_write(&meta));
        assert!(!OTHER_USER.may_write(&meta));
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
