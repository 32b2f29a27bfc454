//! What the leader tells about the fleet's instances: the fleet-wide gauges, and an `instance`
//! event whenever one joins, dies, comes back or begins to lead, so that every instance's
//! dashboard marks a down host within a sweep instead of at its next snapshot.
//!
//! Only the leader counts the fleet; the others report 0 on the fleet-wide gauges, so that
//! `max` (or `sum`) over the fleet's scrapes is the leader's figure and an instance that led
//! once never keeps reporting a stale one.

use std::collections::HashMap;

use crate::events::{EventBus, EventKind, LiveEvent};
use crate::metrics::{FLEET_CAPACITY, FLEET_INSTANCES, FLEET_RUNNERS};
use crate::store::fleet::InstanceRecord;

/// What the leader last announced of each instance: alive, leading.
pub(super) type Announced = HashMap<String, (bool, bool)>;

/// Leader: sets the fleet-wide gauges and announces the instances whose state changed.
pub(super) fn report(instances: &[InstanceRecord], announced: &mut Announced, bus: &EventBus) {
    for (state, alive) in [("alive", true), ("dead", false)] {
        let of = || instances.iter().filter(move |i| i.alive == alive);
        metrics::gauge!(FLEET_INSTANCES, "state" => state).set(of().count() as f64);
        metrics::gauge!(FLEET_RUNNERS, "state" => state)
            .set(of().map(|i| i.runners).sum::<i64>() as f64);
    }
    let capacity: i64 = instances
        .iter()
        .filter(|i| i.alive)
        .map(|i| i.capacity)
        .sum();
    metrics::gauge!(FLEET_CAPACITY).set(capacity as f64);
    for instance in instances {
        let now = (instance.alive, instance.leader);
        if announced.insert(instance.id.clone(), now) != Some(now) {
            bus.publish(LiveEvent {
                kind: EventKind::Instance,
                repository: None,
                data: serde_json::to_value(instance).unwrap_or_default(),
            });
        }
    }
}

/// Not leading (any more): the fleet-wide gauges are the leader's to report.
pub(super) fn stand_down(announced: &mut Announced) {
    announced.clear();
    for state in ["alive", "dead"] {
        metrics::gauge!(FLEET_INSTANCES, "state" => state).set(0.0);
        metrics::gauge!(FLEET_RUNNERS, "state" => state).set(0.0);
    }
    metrics::gauge!(FLEET_CAPACITY).set(0.0);
}
