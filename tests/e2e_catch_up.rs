//! Deliveries GitHub never sent (or that never arrived) are caught up by asking GitHub: the
//! job is found, a runner runs it, its completion is recorded, and the container goes away.

mod common;

use std::time::Duration;

use common::e2e::{self, pool};
use runnerhub::github::sim::{FaultRule, Faults, JobSpec};

const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_deliveries_were_all_lost_is_found_run_and_completed() {
    // Redelivery off: this test is about what catch-up alone recovers.
    let e = e2e::start(
        &pool("linux", LINUX, ""),
        "catch_up_interval = \"1s\"\nredeliver_interval = \"0s\"",
    )
    .await;
    // A first job announced normally: runnerhub now knows the repository.
    let spec = || JobSpec::new("acme/api", LINUX).with_duration(Duration::from_millis(500));
    let first = e.sim.enqueue_job(spec()).unwrap();
    e.until(60, "first job completed", async |e| {
        (e.job_status(first.job_id).await? == "completed").then_some(())
    })
    .await;

    // From here on GitHub's deliveries never reach the daemon.
    e.sim.set_faults(Faults {
        drop: FaultRule::probability(1.0),
        ..Faults::default()
    });
    let lost = e.sim.enqueue_job(spec()).unwrap();
    e.until(
        60,
        "the lost job run and recorded as completed",
        async |e| (e.job_status(lost.job_id).await? == "completed").then_some(()),
    )
    .await;

    let at_github = e.sim.job(lost.job_id).unwrap();
    let runner = at_github.runner.expect("ran on a runner").name;
    let prefix = format!("{}-linux-", e.runner_prefix);
    assert!(runner.starts_with(&prefix), "{runner}");
    let record = e.job(lost.job_id).await.unwrap();
    assert_eq!(record["runner_name"], runner.as_str(), "{record}");
    assert_eq!(record["conclusion"], "success", "{record}");
    let of_lost_job: Vec<_> = e
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
            body["workflow_job"]["id"] == lost.job_id
        })
        .collect();
    assert!(
        !of_lost_job.is_empty() && of_lost_job.iter().all(|d| !d.sent),
        "the simulator was to lose every delivery of the job: {of_lost_job:?}"
    );

    // The audit log says where runnerhub learned it.
    let events = e.app.get_json("/api/webhooks/events?limit=200").await;
    let guids: Vec<&str> = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["delivery_id"].as_str())
        .collect();
    for status in ["queued", "completed"] {
        let guid = format!("catch-up:{}:{status}", lost.job_id);
        assert!(guids.contains(&guid.as_str()), "{guid} not in {guids:?}");
    }
    // And so do the metrics (the recorder is per process; this binary has this test alone).
    let metrics = e
        .app
        .client
        .get(e.app.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    let recorded: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("runnerhub_catch_up_deliveries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no catch-up counter in:\n{text}"));
    assert!(recorded >= 2.0, "queued and completed at least: {recorded}");
    e.until(30, "the runner's container removed", async |e| {
        e.containers().is_empty().then_some(())
    })
    .await;
    e.stop().await;
}
