//! Fault switches: make deliveries go missing, twice, out of order or late, and make the REST API
//! fail, either for the next N occurrences or with a probability drawn from a seeded generator
//! (same seed, same faults, so a failing test can be replayed); refuse runner registrations at
//! chosen repositories or organizations, and answer a registration too late for the client.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// When a fault fires: on each of the next `next` occurrences, then with `probability`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    /// Fire on the next N occurrences (counted down).
    pub next: u32,
    /// After those, fire with this probability (0.0 = never, 1.0 = always).
    pub probability: f64,
}

impl FaultRule {
    /// Fires on the next `n` occurrences.
    pub fn next(n: u32) -> Self {
        Self {
            next: n,
            probability: 0.0,
        }
    }

    /// Fires with probability `p`.
    pub fn probability(p: f64) -> Self {
        Self {
            next: 0,
            probability: p,
        }
    }

    fn fire(&mut self, rng: &mut StdRng) -> bool {
        if self.next > 0 {
            self.next -= 1;
            return true;
        }
        self.probability > 0.0 && rng.gen_bool(self.probability.min(1.0))
    }
}

/// All fault switches. `PUT /_sim/faults` replaces them (and reseeds); the default is no faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Seed of the generator behind the probabilities.
    pub seed: u64,
    /// Do not send the delivery; the log records it as not sent (redeliver it through the API).
    pub drop: FaultRule,
    /// Send the delivery twice, same GUID (as a redelivery would).
    pub duplicate: FaultRule,
    /// Hold the delivery back and send it right after the next one.
    pub reorder: FaultRule,
    /// Send the delivery `delay_ms` later, while later deliveries go on.
    pub delay: FaultRule,
    pub delay_ms: u64,
    /// Answer a REST call with a 5xx (`rest_error_status`, default 502).
    pub rest_error: FaultRule,
    pub rest_error_status: Option<u16>,
    /// Answer a REST call with 429 and `retry-after` (a secondary rate limit).
    pub rest_secondary_limit: FaultRule,
    pub retry_after_secs: Option<u64>,
    /// Refuse JIT registrations at these scopes (`owner/name` or an organization), with this
    /// status: 403 as for credentials without access, 404 as for a repository GitHub does
    /// not know (or hides). Every other scope registers as usual.
    pub refuse_registrations: BTreeMap<String, u16>,
    /// Carry a JIT registration out, then answer `jit_answer_late_ms` later: a client that
    /// times out first retries a registration GitHub already holds.
    pub jit_answer_late: FaultRule,
    pub jit_answer_late_ms: u64,
}

/// What to do with one delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryFaults {
    pub drop: bool,
    pub duplicate: bool,
    pub reorder: bool,
    pub delay_ms: Option<u64>,
}

/// What to do with one REST call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestFault {
    None,
    ServerError(u16),
    SecondaryLimit { retry_after_secs: u64 },
}

/// The switches and their generator.
#[derive(Debug)]
pub struct FaultState {
    pub faults: Faults,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self::new(Faults::default())
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        Self { faults, rng }
    }

    pub fn for_delivery(&mut self) -> DeliveryFaults {
        let f = &mut self.faults;
        let rng = &mut self.rng;
        if f.drop.fire(rng) {
            return DeliveryFaults {
                drop: true,
                ..Default::default()
            };
        }
        DeliveryFaults {
            drop: false,
            duplicate: f.duplicate.fire(rng),
            reorder: f.reorder.fire(rng),
            delay_ms: f.delay.fire(rng).then_some(f.delay_ms.max(1)),
        }
    }

    /// How JIT registrations at `scope` (`owner/name` or an organization) are refused, if they
    /// are.
    pub fn registration_refusal(&self, scope: &str) -> Option<u16> {
        self.faults
            .refuse_registrations
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(scope))
            .map(|(_, status)| *status)
    }

    /// How long to hold back the answer to this JIT registration, if at all.
    pub fn jit_answer_delay_ms(&mut self) -> Option<u64> {
        let f = &mut self.faults;
        f.jit_answer_late
            .fire(&mut self.rng)
            .then_some(f.jit_answer_late_ms.max(1))
    }

    pub fn for_rest(&mut self) -> RestFault {
        let f = &mut self.faults;
        if f.rest_error.fire(&mut self.rng) {
            return RestFault::ServerError(f.rest_error_status.unwrap_or(502));
        }
        if f.rest_secondary_limit.fire(&mut self.rng) {
            return RestFault::SecondaryLimit {
                retry_after_secs: f.retry_after_secs.unwrap_or(60),
            };
        }
        RestFault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_refused_by_scope_and_answered_late_once() {
        let mut s = FaultState::new(Faults {
            refuse_registrations: [("acme/locked".to_owned(), 403)].into(),
            jit_answer_late: FaultRule::next(1),
            jit_answer_late_ms: 1500,
            ..Default::default()
        });
        assert_eq!(s.registration_refusal("Acme/Locked"), Some(403));
        assert_eq!(s.registration_refusal("acme/open"), None);
        assert_eq!(s.jit_answer_delay_ms(), Some(1500));
        assert_eq!(s.jit_answer_delay_ms(), None);
    }

    #[test]
    fn next_n_counts_down_and_probabilities_replay_with_the_seed() {
        let mut s = FaultState::new(Faults {
            drop: FaultRule::next(2),
            ..Default::default()
        });
        assert!(s.for_delivery().drop);
        assert!(s.for_delivery().drop);
        assert!(!s.for_delivery().drop);

        let faults = Faults {
            seed: 7,
            duplicate: FaultRule::probability(0.5),
            ..Default::default()
        };
        let draw = |mut s: FaultState| {
            (0..32)
                .map(|_| s.for_delivery().duplicate)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            draw(FaultState::new(faults.clone())),
            draw(FaultState::new(faults))
        );
    }
}
