//! A fleet instance cut off from PostgreSQL in the middle of a stream of jobs (a TCP proxy the
//! test puts between it and the server, then cuts), with the real binary, the real Docker
//! engine and the GitHub simulator: the cut-off instance stops answering ready and launches
//! nothing, the other serves the jobs that arrive meanwhile (the forwarder, like a load
//! balancer, sends webhooks past an instance that answers 5xx), and when the cut heals nothing
//! is launched twice, nothing acknowledged is lost and nothing is left behind.

mod common;

use std::time::Duration;

use common::db_cut::Cut;
use common::fleet::*;
use common::until;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_instance_launches_nothing_the_other_serves_and_after_the_heal_nothing_runs_twice()
 {
    let database = TestDatabase::create().await;
    let (cut, cut_url) = Cut::start(&database.url).await;
    let databases = vec![database.url.clone(), cut_url];
    let (fleet, sim) = Fleet::launch("cut", databases, &["steady", "cut"]).await;

    // Work for both; the cut comes while the cut-off instance's runners are at work.
    let mut jobs = enqueue(&sim, 4, Duration::from_secs(4));
    let cut_id = fleet.ids[1].clone();
    until(60, "the instance to be cut off runs a job", async || {
        let runners = fleet.api("/api/runners").await?;
        runners["runners"]
            .as_array()?
            .iter()
            .any(|r| r["instance"] == cut_id.as_str() && !r["job_id"].is_null())
            .then_some(())
    })
    .await;
    cut.cut();
    let cut_at = std::time::Instant::now();
    let cut_off = fleet.daemons[1].as_ref().unwrap();
    until(10, "the cut-off instance not ready", async || {
        let answer = reqwest::get(cut_off.url("/readyz")).await.ok()?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.ok()?;
        (status == 503 && body["status"] == "fleet_disconnected").then_some(())
    })
    .await;
    eprintln!(
        "not ready {:.1} s after the cut (instance_timeout 6 s)",
        cut_at.elapsed().as_secs_f64()
    );
    // Jobs that come while it is cut off: the other instance serves every one.
    jobs.extend(enqueue(&sim, 4, Duration::from_secs(1)));
    until(120, "every job completed at GitHub", async || {
        all_completed(&sim, &jobs).then_some(())
    })
    .await;
    let leader = fleet.leader().await;
    assert_eq!(leader.as_deref(), Some(fleet.ids[0].as_str()));

    cut.heal();
    until(30, "back: alive and ready", async || {
        let ready = reqwest::get(fleet.daemons[1].as_ref()?.url("/readyz"))
            .await
            .ok()?
            .status()
            == 200;
        let list = fleet.api("/api/instances").await?;
        let back = list["instances"]
            .as_array()?
            .iter()
            .find(|i| i["id"] == cut_id.as_str())?
            .clone();
        (ready && back["alive"] == true).then_some(())
    })
    .await;
    until(60, "every job recorded completed", async || {
        for id in &jobs {
            let job = fleet.api(&format!("/api/jobs/{id}")).await?;
            (job["status"] == "completed").then_some(())?;
        }
        Some(())
    })
    .await;
    let acknowledged = assert_acknowledged_stored(&fleet, &sim).await;
    let runners = checked_runners(&fleet).await;
    eprintln!(
        "jobs {}, acknowledged deliveries {acknowledged}, runners {}",
        jobs.len(),
        runners.len()
    );
    until(90, "no container and no registration left", async || {
        nothing_left(&fleet, &sim).then_some(())
    })
    .await;
    fleet.stop(sim).await;
    database.drop_now().await;
}
