//! A fleet (DESIGN §9): three instances of the real binary on one real PostgreSQL database,
//! each launching runner containers on the real Docker engine (shared here; each reconciles only
//! its own), the GitHub simulator delivering webhooks to them in turn through a round-robin
//! forwarder like a load balancer's. A stream of jobs; kill -9 of one instance midway, then of
//! the leader; every job completes, no job runs on two runners, nothing acknowledged is lost,
//! another instance leads within seconds, and nothing is left behind once all have restarted.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fleet::*;
use common::until;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_work_and_survive_the_death_of_one_and_of_the_leader() {
    let database = TestDatabase::create().await;
    let databases = vec![database.url.clone(); 3];
    let (mut fleet, sim) = Fleet::launch("fleet", databases, &["a", "b", "c"]).await;
    let instances = fleet.api("/api/instances").await.unwrap();
    assert!(
        instances["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["pools"] == serde_json::json!(["linux"]))
    );

    // A stream of jobs; one non-leading instance killed while they run.
    let mut jobs = enqueue(&sim, 6, Duration::from_secs(2));
    until(60, "runners at work", async || {
        let busy = sim.jobs().iter().filter(|j| j.started_at.is_some()).count();
        (busy >= 2).then_some(())
    })
    .await;
    let leader = fleet.leader().await.expect("a leader");
    let victim = (0..3).find(|i| fleet.ids[*i] != leader).unwrap();
    let killed = fleet.kill(victim);
    jobs.extend(enqueue(&sim, 6, Duration::from_secs(2)));
    until(180, "every job completed at GitHub", async || {
        all_completed(&sim, &jobs).then_some(())
    })
    .await;
    let logs = killed.logs();
    drop(killed);

    // The leader killed: another leads within seconds, and catches up.
    let leader = fleet.leader().await.expect("a leader");
    let leader_index = fleet.ids.iter().position(|id| *id == leader).unwrap();
    let old_leader = fleet.kill(leader_index);
    drop(old_leader);
    let killed_at = std::time::Instant::now();
    let new_leader = until(20, "a new leader", async || {
        fleet.leader().await.filter(|id| *id != leader)
    })
    .await;
    eprintln!(
        "a new leader {:.1} s after kill -9 of the leader (instance_timeout 6 s: lease 2 s)",
        killed_at.elapsed().as_secs_f64()
    );
    let more = enqueue(&sim, 3, Duration::from_secs(2));
    jobs.extend(more);
    until(120, "jobs after the leader died completed", async || {
        all_completed(&sim, &jobs).then_some(())
    })
    .await;

    // Both come back; then every job is recorded completed, and nothing is left behind.
    fleet.start(victim);
    fleet.start(leader_index);
    until(60, "every job recorded completed", async || {
        for id in &jobs {
            let job = fleet.api(&format!("/api/jobs/{id}")).await?;
            (job["status"] == "completed").then_some(())?;
        }
        Some(())
    })
    .await;
    let acknowledged = assert_acknowledged_stored(&fleet, &sim).await;
    eprintln!(
        "jobs {}, acknowledged deliveries {acknowledged}, killed {} then leader {leader} (now {new_leader})",
        jobs.len(),
        fleet.ids[victim]
    );
    let runners = checked_runners(&fleet).await;
    let instances_used: BTreeSet<&str> = runners
        .iter()
        .filter_map(|r| r["instance"].as_str())
        .collect();
    assert!(
        instances_used.len() >= 2,
        "the work was shared: {instances_used:?}"
    );
    let catch_up = reqwest::get(
        fleet.daemons[fleet.ids.iter().position(|id| *id == new_leader).unwrap()]
            .as_ref()
            .unwrap()
            .url("/metrics"),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        catch_up.lines().any(|l| l
            .starts_with("runnerhub_catch_up_passes_total{result=\"success\"}")
            && !l.ends_with(" 0")),
        "the new leader catches up"
    );
    until(90, "no container and no registration left", async || {
        nothing_left(&fleet, &sim).then_some(())
    })
    .await;
    assert!(!logs.is_empty());
    fleet.stop(sim).await;
    database.drop_now().await;
}
