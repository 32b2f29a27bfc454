//! The open-file limit: raised to its hard maximum at start, and the share of it that
//! connections may take.
//!
//! Every connection is a file descriptor, and so are the database's files and connections,
//! the Docker socket's connections and GitHub's. Under the default soft limit of 1,024, idle
//! connections alone took them all (issue #15): connections are bounded below the limit, with
//! a reserve kept for the rest.

/// Descriptors kept for everything but connections, at least: the SQLite pool (database,
/// `-wal`, `-shm` per connection) or PostgreSQL's, Docker's and GitHub's HTTP pools, the
/// metrics listener, the runtime's own.
const RESERVED_FDS: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the soft one is what binds; the hard one
/// is the ceiling an unprivileged process may raise it to). Returns the soft limit in force.
/// Failure is not fatal: the connection bound follows whatever limit there is. Under the
/// systemd unit `LimitNOFILE=` has already set both, and its syscall filter refuses
/// `setrlimit`, so nothing is asked then.
pub fn raise_open_file_limit() -> Option<u64> {
    use rlimit::Resource;
    let (soft, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match Resource::NOFILE.set(hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit; keeping it");
            Some(soft)
        }
    }
}

/// The connections the listener may hold: `configured` (0 = no choice made) but at most the
/// soft open-file limit less a reserve of an eighth (at least [`RESERVED_FDS`]).
pub fn connection_limit(configured: u32) -> usize {
    let soft = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let ceiling = ceiling_for(soft);
    match configured {
        0 => ceiling,
        n if n as usize > ceiling => {
            tracing::warn!(
                configured = n,
                used = ceiling,
                open_file_limit = soft,
                "server.max_connections is above what the open-file limit allows; lowered"
            );
            ceiling
        }
        n => n as usize,
    }
}

fn ceiling_for(soft: u64) -> usize {
    let reserve = (soft / 8).max(RESERVED_FDS);
    usize::try_from(soft.saturating_sub(reserve).max(16)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_a_reserve_below_the_limit() {
        assert_eq!(ceiling_for(1024), 896);
        assert_eq!(ceiling_for(65536), 57344);
        assert_eq!(ceiling_for(100), 16, "a tiny limit still serves a few");
    }
}
