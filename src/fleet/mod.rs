//! A fleet: several instances, one per build host, serving from one PostgreSQL database
//! (DESIGN §9, `database.fleet`).
//!
//! Every instance takes webhooks into the shared log and launches runners on its own Docker
//! engine for the jobs it claims. One instance at a time leads — it holds a lease in the
//! database, renewed by its heartbeats — and the leader alone processes deliveries, catches up,
//! asks for redeliveries, prunes, and takes over the work of dead instances ([`membership`]).
//! [`Fleet`] is how the rest of the daemon asks "may I lead?" and "may I launch?"; a daemon
//! without `fleet` is a fleet of one that always may.

pub mod doorbell;
pub mod membership;
mod roll_call;
mod takeover;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::fleet::{FleetStore, PoolSetting};

/// How often an instance beats, for `database.instance_timeout`: ten beats per timeout, so a
/// beat or two lost to a slow database do not make an instance look dead.
pub fn heartbeat_period(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(300), Duration::from_secs(5))
}

/// How long a leader's lease lasts: a third of the timeout, so a dead leader is replaced well
/// before its instance is declared dead (catch-up and processing resume within seconds).
pub fn lease_length(timeout: Duration) -> Duration {
    (timeout / 3).max(Duration::from_secs(1))
}

/// This instance's pools as its heartbeat describes them to the fleet (and `GET /api/instances`).
pub fn pool_settings(config: &crate::config::Config) -> Vec<PoolSetting> {
    config
        .pools
        .iter()
        .map(|p| PoolSetting {
            name: p.name.clone(),
            labels: p.labels.clone(),
            max_runners: p.max_runners,
            min_idle: p.min_idle,
        })
        .collect()
}

/// This instance's place in the fleet, shared by the tasks that need it.
#[derive(Clone)]
pub struct Fleet(Option<Arc<Member>>);

/// An instance of a fleet.
pub struct Member {
    pub store: Arc<dyn FleetStore>,
    pub instance: String,
    pub timeout: Duration,
    state: Mutex<MemberState>,
    /// Counts the times the leader declared this instance dead and it was heard from again.
    revivals: watch::Sender<u64>,
}

#[derive(Default)]
struct MemberState {
    /// When the last heartbeat that the database took was sent.
    last_beat: Option<Instant>,
    /// Until when this instance may act as the leader (its lease, less a margin, measured
    /// from when the heartbeat that renewed it was sent: the database's clock is not ours).
    leader_until: Option<Instant>,
}

impl Fleet {
    /// A daemon without `database.fleet`: it leads and launches alone.
    pub fn alone() -> Self {
        Fleet(None)
    }

    pub fn member(store: Arc<dyn FleetStore>, instance: &str, timeout: Duration) -> Self {
        Fleet(Some(Arc::new(Member {
            store,
            instance: instance.to_owned(),
            timeout,
            state: Mutex::new(MemberState::default()),
            revivals: watch::Sender::new(0),
        })))
    }

    pub fn as_member(&self) -> Option<&Arc<Member>> {
        self.0.as_ref()
    }

    pub fn is_fleet(&self) -> bool {
        self.0.is_some()
    }

    /// Whether this instance may do the leader's work now (always, alone).
    pub fn is_leader(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_leader())
    }

    /// Whether this instance reaches the database: when it has not for half the instance
    /// timeout it stops launching and answers `/readyz` 503, before the others give it up.
    pub fn connected(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.connected())
    }

    /// Changes each time this instance comes back after being declared dead.
    pub fn revivals(&self) -> Option<watch::Receiver<u64>> {
        self.0.as_ref().map(|m| m.revivals.subscribe())
    }
}

impl Member {
    fn is_leader(&self) -> bool {
        let state = self.state.lock().expect("fleet state lock");
        state
            .leader_until
            .is_some_and(|until| Instant::now() < until)
    }

    fn connected(&self) -> bool {
        let state = self.state.lock().expect("fleet state lock");
        state
            .last_beat
            .is_some_and(|at| at.elapsed() < self.timeout / 2)
    }

    /// Takes the answer to a heartbeat sent at `sent`.
    fn beat(&self, sent: Instant, leader: bool, revived: bool) {
        let lease = lease_length(self.timeout);
        let mut state = self.state.lock().expect("fleet state lock");
        state.last_beat = Some(sent);
        state.leader_until = leader.then(|| sent + lease * 3 / 4);
        drop(state);
        if revived {
            self.revivals.send_modify(|n| *n += 1);
        }
    }
}
