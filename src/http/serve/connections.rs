//! The open connections, bounded: at the limit the longest-idle one is closed to make room.
//!
//! Why shed rather than stop accepting: a listener that stops accepting leaves new connections
//! in the kernel's backlog, where GitHub's deliveries and `/healthz` wait until they time out,
//! for as long as an attacker holds idle connections open. Idle connections (no request in
//! progress: freshly opened, between requests, or still sending a request head) cost the
//! attacker nothing to reopen but hold a file descriptor each, so they go first; a connection
//! whose request is being handled is never shed (its body has its own deadline).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// How many connections beyond the limit may exist while shed ones are closing: each shed one
/// is gone within milliseconds, and the reserve below the file limit absorbs these.
const SHED_SURGE: usize = 64;

/// One connection as the registry sees it.
pub struct Connection {
    id: u64,
    /// Requests being handled now; 0 = idle.
    in_flight: AtomicUsize,
    /// When the connection last became idle (or opened).
    idle_since: Mutex<Instant>,
    /// Cancelled to close the connection gracefully (after any response in progress).
    pub shed: CancellationToken,
    /// Set once hyper handed the socket over (a WebSocket): no longer hyper's to close.
    handed_over: AtomicBool,
}

impl Connection {
    /// Marks a request in progress until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    fn idle_since(&self) -> Option<Instant> {
        let idle = self.in_flight.load(Ordering::Acquire) == 0
            && !self.handed_over.load(Ordering::Acquire)
            && !self.shed.is_cancelled();
        idle.then(|| *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A request in progress on a connection.
pub struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

/// The registry of open connections.
pub struct Connections {
    max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    by_id: HashMap<u64, Arc<Connection>>,
}

/// What [`Connections::admit`] decided.
pub enum Admission {
    /// Serve it; the slot counts it until dropped (with the socket).
    Admitted(Slot),
    /// At the limit with nothing idle to shed: refuse the new connection.
    Full,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max: max.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn count(&self) -> usize {
        self.lock().by_id.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection, shedding the longest-idle one when at the limit.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut open = self.lock();
        let count = open.by_id.len();
        if count >= self.max {
            let shed = Self::shed_oldest_idle(&open);
            if !shed || count >= self.max + SHED_SURGE {
                return Admission::Full;
            }
        }
        open.next_id += 1;
        let connection = Arc::new(Connection {
            id: open.next_id,
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            shed: CancellationToken::new(),
            handed_over: AtomicBool::new(false),
        });
        open.by_id.insert(connection.id, connection.clone());
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).increment(1.0);
        Admission::Admitted(Slot {
            connection,
            registry: self.clone(),
        })
    }

    /// Sheds the longest-idle connection (when file descriptors ran out); false if none is idle.
    pub fn shed_one(&self) -> bool {
        Self::shed_oldest_idle(&self.lock())
    }

    fn shed_oldest_idle(open: &Open) -> bool {
        let oldest = open
            .by_id
            .values()
            .filter_map(|c| c.idle_since().map(|at| (at, c)))
            .min_by_key(|(at, _)| *at);
        match oldest {
            Some((_, connection)) => {
                connection.shed.cancel();
                metrics::counter!(crate::metrics::HTTP_CONNECTIONS_SHED_TOTAL).increment(1);
                true
            }
            None => false,
        }
    }

    /// Asks every connection to close after its response in progress (shutdown).
    pub fn close_all(&self) {
        for connection in self.lock().by_id.values() {
            connection.shed.cancel();
        }
    }
}

/// A counted connection; dropped with its socket, which for a WebSocket is after the upgrade.
pub struct Slot {
    pub connection: Arc<Connection>,
    registry: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().by_id.remove(&self.connection.id);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(registry: &Arc<Connections>) -> Slot {
        match registry.admit() {
            Admission::Admitted(slot) => slot,
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn at_the_limit_the_longest_idle_is_shed_and_busy_ones_never() {
        let registry = Connections::new(2);
        let first = admitted(&registry);
        let second = admitted(&registry);
        let _busy = second.connection.busy();
        let third = admitted(&registry);
        assert!(first.connection.shed.is_cancelled(), "the idle one goes");
        assert!(!second.connection.shed.is_cancelled());
        drop(first);
        assert_eq!(registry.count(), 2);
        // `third` is idle and newest; with it busy too, nothing can be shed.
        let _busy3 = third.connection.busy();
        assert!(matches!(registry.admit(), Admission::Full));
        drop(third);
        assert_eq!(registry.count(), 1);
    }

    #[test]
    fn a_handed_over_connection_is_not_shed() {
        let registry = Connections::new(1);
        let socket = admitted(&registry);
        socket.connection.hand_over();
        assert!(matches!(registry.admit(), Admission::Full));
        assert!(!registry.shed_one());
    }
}
