//! One serving daemon per database.
//!
//! Two daemons on one database would both process every delivery and both launch a runner for
//! every job. Until instances share the work (claims on jobs, DESIGN.md §9), the second one
//! refuses to start and says who holds the database. The lock belongs to the process: the
//! kernel (SQLite's lock file) or the server (PostgreSQL's session advisory lock) lets go of it
//! when the process dies, `kill -9` included, so a restart never waits for a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::sqlite_identity::FileId;
use super::{StoreError, StoreResult};

/// The key of the PostgreSQL advisory lock ("runh"); advisory locks are per database, so
/// other databases on the same server are not affected. A lone daemon holds it exclusively;
/// each instance of a fleet holds it shared, so the two kinds never serve one database at once.
const ADVISORY_KEY: i64 = 0x7275_6e68;
/// The class of the per-instance locks of a fleet (`pg_advisory_lock(class, hashtext(id))`):
/// one running process per `server.instance_id`, freed with its session when it dies.
const INSTANCE_LOCK_CLASS: i32 = 0x7275_6e69;

/// How a daemon holds a PostgreSQL database (`database.fleet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// The one serving daemon.
    Alone,
    /// One instance of a fleet: the database shared, the instance id exclusive.
    Fleet,
}

/// Holds `<database>.lock` locked for the life of the process, and returns it with the
/// database's canonical path.
///
/// The lock is named after the canonical path (symlinks resolved, as SQLite does for its
/// `-wal`): keyed on the configured path, a symlink to the file let a second daemon serve it.
/// After locking, the configured path must still name the same file (device + inode) as the
/// canonical one, or a rename in between could have the lock name another file.
pub(super) fn lock_sqlite_file(database: &Path, instance: &str) -> StoreResult<(File, PathBuf)> {
    let in_use =
        |detail: String| StoreError::InUse(format!("database {}: {detail}", database.display()));
    let canonical = database
        .canonicalize()
        .map_err(|e| in_use(format!("cannot resolve its path: {e}")))?;
    let path = lock_path(&canonical);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| in_use(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(in_use(format!(
                "in use: another runnerhub serves from it ({})",
                holder.trim()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(in_use(format!("cannot lock {}: {e}", path.display())));
        }
    }
    let same = FileId::of(database)
        .and_then(|(configured, _)| Ok(configured == FileId::of(&canonical)?.0))
        .map_err(|e| in_use(format!("cannot examine it: {e}")))?;
    if !same {
        return Err(in_use(format!(
            "{} was replaced while it was being locked; try again",
            canonical.display()
        )));
    }
    // Who holds it, for the message the next one prints; the lock is what counts.
    let holder = format!("instance {instance}, pid {}\n", std::process::id());
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "cannot note the holder in the lock file");
    }
    Ok((file, canonical))
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the advisory lock on a connection of its own, which must stay open: the lock lives
/// as long as that session.
pub(super) async fn lock_postgres(
    options: &PgConnectOptions,
    instance: &str,
    mode: LockMode,
) -> StoreResult<PgConnection> {
    // The application name is how the next instance learns who holds the lock.
    let name = match mode {
        LockMode::Alone => format!("runnerhub {instance}"),
        LockMode::Fleet => format!("runnerhub fleet {instance}"),
    };
    let mut conn = options.clone().application_name(&name).connect().await?;
    let take = match mode {
        LockMode::Alone => "SELECT pg_try_advisory_lock($1)",
        LockMode::Fleet => "SELECT pg_try_advisory_lock_shared($1)",
    };
    let locked: bool = sqlx::query_scalar(take)
        .bind(ADVISORY_KEY)
        .fetch_one(&mut conn)
        .await?;
    if locked && mode == LockMode::Fleet {
        let own: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(INSTANCE_LOCK_CLASS)
            .bind(instance)
            .fetch_one(&mut conn)
            .await?;
        if !own {
            let _ = conn.close().await;
            return Err(StoreError::InUse(format!(
                "server.instance_id `{instance}` is held by another running instance of the \
                 fleet: each instance needs its own id"
            )));
        }
    }
    if locked {
        return Ok(conn);
    }
    let holder: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT a.application_name, host(a.client_addr) \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(ADVISORY_KEY)
    .fetch_optional(&mut conn)
    .await?;
    let _ = conn.close().await;
    let holder = match holder {
        Some((name, address)) => format!(
            "{} from {}",
            name.filter(|n| !n.is_empty())
                .unwrap_or_else(|| "an unnamed session".into()),
            address.unwrap_or_else(|| "a local socket".into())
        ),
        None => "a session that has just let go; try again".into(),
    };
    let hint = match mode {
        LockMode::Alone => {
            "; several instances share one database only with database.fleet = true on each"
        }
        LockMode::Fleet => {
            "; an instance with database.fleet = true cannot join a database served without it"
        }
    };
    Err(StoreError::InUse(format!(
        "database {}: in use: another runnerhub serves from it ({holder}){hint}",
        options.get_database().unwrap_or("(default)")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("runnerhub.db");
        std::fs::write(&db, b"").unwrap();
        let (first, _) = lock_sqlite_file(&db, "alpha").unwrap();
        let refused = lock_sqlite_file(&db, "beta").unwrap_err().to_string();
        assert!(refused.contains("instance alpha"), "{refused}");
        assert!(
            refused.contains(&std::process::id().to_string()),
            "{refused}"
        );
        drop(first);
        lock_sqlite_file(&db, "beta").expect("free once the first let go");
    }

    #[test]
    fn a_symlink_to_a_held_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("runnerhub.db");
        std::fs::write(&db, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let (_first, canonical) = lock_sqlite_file(&link, "alpha").unwrap();
        assert_eq!(canonical, db.canonicalize().unwrap());
        let refused = lock_sqlite_file(&db, "beta").unwrap_err().to_string();
        assert!(refused.contains("instance alpha"), "{refused}");
    }
}
