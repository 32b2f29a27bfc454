//! The pools of a fleet's snapshot: this instance's live counters, and every other instance's
//! pools as its heartbeat describes them, counted from the runners it recorded in the database.
//! One entry per pool and instance (the `pool` event's shape, with `instance`): a pool served
//! by several hosts is several entries, and the dashboard sums them with each host named.

use serde_json::{Value, json};

use crate::domain::{Job, Runner, RunnerState};
use crate::store::fleet::InstanceRecord;

/// `own`: this instance's `pool` event data; `runners`: every instance's live runners.
pub fn fleet_pools(
    me: &str,
    own: Vec<Value>,
    instances: &[InstanceRecord],
    runners: &[Runner],
    queue: &[Job],
) -> Vec<Value> {
    let mut pools = own;
    for instance in instances.iter().filter(|i| i.id != me) {
        for pool in &instance.pool_settings {
            let count = |states: &[RunnerState]| {
                runners
                    .iter()
                    .filter(|r| r.instance == instance.id && r.pool == pool.name)
                    .filter(|r| states.contains(&r.state))
                    .count()
            };
            let queued = queue
                .iter()
                .filter(|j| j.pool.as_deref() == Some(pool.name.as_str()))
                .count();
            pools.push(json!({
                "name": pool.name,
                "labels": pool.labels,
                "max_runners": pool.max_runners,
                "min_idle": pool.min_idle,
                "starting": count(&[RunnerState::Requested, RunnerState::Creating]),
                "idle": count(&[RunnerState::Idle]),
                "busy": count(&[RunnerState::Busy]),
                "queued": queued,
                "instance": instance.id,
            }));
        }
    }
    pools
}
