//! The heartbeat task of a fleet's instance: alive, leading or not, connected or not; and, as
//! the leader, declaring silent instances dead and taking over their work ([`super::takeover`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Fleet, Member, heartbeat_period, lease_length, pool_settings};
use crate::config::Config;
use crate::events::EventBus;
use crate::github::SharedGithub;
use crate::store::fleet::InstanceInfo;
use crate::telemetry::repeats::{self, Repeats};

/// What the heartbeat task needs besides the fleet.
pub struct Membership {
    pub fleet: Fleet,
    pub started_at: DateTime<Utc>,
    pub config: watch::Receiver<Arc<Config>>,
    pub github: Arc<SharedGithub>,
    pub bus: EventBus,
}

/// The instance as its heartbeat describes it.
fn info(member: &Member, config: &Config, started_at: DateTime<Utc>) -> InstanceInfo {
    InstanceInfo {
        id: member.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        pools: config.pools.iter().map(|p| p.name.clone()).collect(),
        pool_settings: pool_settings(config),
        capacity: i64::from(config.limits.max_runners),
    }
}

/// Sends the first heartbeat, so that the instance is listed (and may lead) before it serves.
pub async fn join(fleet: &Fleet, config: &Config, started_at: DateTime<Utc>) -> anyhow::Result<()> {
    let Some(member) = fleet.as_member() else {
        return Ok(());
    };
    let sent = Instant::now();
    let beat = member
        .store
        .heartbeat(
            &info(member, config, started_at),
            lease_length(member.timeout),
        )
        .await?;
    // A start is a rebuild from the database already: nothing to revive.
    member.beat(sent, beat.leader, false);
    tracing::info!(instance = %member.instance, leader = beat.leader, "joined the fleet");
    Ok(())
}

/// Beats until `shutdown`, then gives the lease up.
pub async fn run(mut membership: Membership, shutdown: CancellationToken) {
    let Some(member) = membership.fleet.as_member().cloned() else {
        return;
    };
    let period = heartbeat_period(member.timeout);
    let failures = Repeats::new(repeats::WINDOW);
    let mut was_leader = member.is_leader();
    let mut announced = super::roll_call::Announced::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        let config = membership.config.borrow_and_update().clone();
        let sent = Instant::now();
        let beat = tokio::time::timeout(
            period.max(Duration::from_secs(1)),
            member.store.heartbeat(
                &info(&member, &config, membership.started_at),
                lease_length(member.timeout),
            ),
        )
        .await;
        match beat {
            Ok(Ok(beat)) => {
                member.beat(sent, beat.leader, beat.revived);
                if beat.revived {
                    tracing::warn!(
                        instance = %member.instance,
                        "the fleet had declared this instance dead (silent for database.instance_timeout); \
                         rebuilding its state from the database: runners whose registration survived \
                         are kept, the rest removed"
                    );
                }
            }
            Ok(Err(error)) => {
                if let Some(held) = failures.admit() {
                    tracing::error!(%error, "fleet heartbeat failed{held}");
                }
            }
            Err(_) => {
                if let Some(held) = failures.admit() {
                    tracing::error!("fleet heartbeat timed out: the database did not answer{held}");
                }
            }
        }
        let leader = member.is_leader();
        if leader != was_leader {
            tracing::warn!(instance = %member.instance, leader, "fleet leadership changed");
            was_leader = leader;
        }
        metrics::gauge!(crate::metrics::FLEET_LEADER).set(if leader { 1.0 } else { 0.0 });
        metrics::gauge!(crate::metrics::FLEET_CONNECTED).set(if member.connected() {
            1.0
        } else {
            0.0
        });
        if leader {
            super::takeover::sweep(&member, &membership.github, &membership.bus, &mut announced)
                .await;
        } else {
            super::roll_call::stand_down(&mut announced);
        }
    }
    if member.is_leader() {
        // The next leader takes over at its next heartbeat instead of when the lease expires.
        let _ = member.store.resign(&member.instance).await;
    }
}
