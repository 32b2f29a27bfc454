//! The whole flow with the real Docker engine and the GitHub simulator: jobs queued by webhook,
//! runner containers launched in priority order, jobs run, containers removed, runners
//! deregistered.

mod common;

use std::time::Duration;

use common::e2e::{self, E2e, pool};
use runnerhub::github::sim::JobSpec;

const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

async fn runner_states(e: &E2e) -> Vec<String> {
    e.runners()
        .await
        .iter()
        .map(|r| r["state"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_from_queued_to_removed_container() {
    let e = e2e::start(&pool("linux", LINUX, ""), "").await;
    let job = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", LINUX).with_duration(Duration::from_secs(1)))
        .unwrap();
    e.until(60, "job completed", async |e| {
        (e.job_status(job.job_id).await? == "completed").then_some(())
    })
    .await;
    let record = e.job(job.job_id).await.unwrap();
    assert_eq!(record["pool"], "linux");
    assert_eq!(record["conclusion"], "success");
    let runner_name = record["runner_name"].as_str().unwrap().to_owned();
    let prefix = format!("{}-linux-", e.runner_prefix);
    assert!(runner_name.starts_with(&prefix), "{runner_name}");
    // The runner that took it is torn down: removed here, gone at GitHub and in Docker.
    e.until(30, "runner removed", async |e| {
        let runners = e.runners().await;
        runners
            .iter()
            .all(|r| r["state"] == "removed")
            .then_some(())
    })
    .await;
    let runners = e.runners().await;
    assert_eq!(
        runners.len(),
        1,
        "exactly one runner for one job: {runners:?}"
    );
    assert_eq!(runners[0]["name"], runner_name.as_str());
    assert_eq!(runners[0]["job_id"], job.job_id);
    assert!(e.sim.runners().is_empty(), "deregistered at the simulator");
    assert!(e.containers().is_empty(), "container removed");
    e.stop().await;
}

/// A half-second job with the linux labels plus `extra`.
fn short_job(e: &E2e, extra: &str) -> runnerhub::github::sim::EnqueuedJob {
    let spec = JobSpec::new("acme/api", &["self-hosted", "linux", "x64", extra]);
    e.sim
        .enqueue_job(spec.with_duration(Duration::from_millis(500)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_scarcity_jobs_start_in_priority_order() {
    // One slot. Label sets are not subsets of each other, so a runner registered with one job's
    // labels can only take that job (GitHub picks the job, not us).
    let labels = ["self-hosted", "linux", "x64", "large", "deploy", "critical"];
    let e = e2e::start(&pool("linux", &labels, "max_runners = 1"), "").await;
    let blocker = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", LINUX).with_duration(Duration::from_secs(3)))
        .unwrap();
    e.until(60, "blocker running", async |e| {
        (e.job_status(blocker.job_id).await? == "in_progress").then_some(())
    })
    .await;
    let low = short_job(&e, "large");
    let high = short_job(&e, "deploy");
    let mid = short_job(&e, "critical");
    let ids = [low.job_id, high.job_id, mid.job_id];
    e.until(120, "all three completed", async |e| {
        for id in ids {
            if e.job_status(id).await? != "completed" {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut started = Vec::new();
    for (name, id) in [
        ("low", low.job_id),
        ("high", high.job_id),
        ("mid", mid.job_id),
    ] {
        // The simulator's own clock: payload timestamps have whole seconds, like GitHub's,
        // and two jobs a few hundred ms apart would tie.
        let at_sim = e.sim.job(id).unwrap();
        started.push((at_sim.started_at.unwrap(), name));
    }
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, ["high", "mid", "low"]);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_hosted_jobs_are_recorded_and_left_alone_and_labels_match_case_insensitively() {
    let e = e2e::start(&pool("linux", LINUX, ""), "").await;
    let hosted = e
        .sim
        .enqueue_job(
            JobSpec::new("acme/api", &["ubuntu-latest"]).with_duration(Duration::from_millis(200)),
        )
        .unwrap();
    let shouting = e
        .sim
        .enqueue_job(
            JobSpec::new("acme/api", &["Self-Hosted", "LINUX"])
                .with_duration(Duration::from_millis(200)),
        )
        .unwrap();
    e.until(60, "both completed", async |e| {
        let a = e.job_status(hosted.job_id).await?;
        let b = e.job_status(shouting.job_id).await?;
        (a == "completed" && b == "completed").then_some(())
    })
    .await;
    let hosted = e.job(hosted.job_id).await.unwrap();
    assert_eq!(hosted["pool"], serde_json::Value::Null);
    assert_eq!(hosted["runner_group_name"], "GitHub Actions");
    let shouting = e.job(shouting.job_id).await.unwrap();
    assert_eq!(shouting["pool"], "linux");
    assert!(
        shouting["runner_name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-linux-", e.runner_prefix))
    );
    assert_eq!(
        e.runners().await.len(),
        1,
        "one runner, for the self-hosted job only"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_keeps_an_idle_runner_and_idle_timeout_recycles_it() {
    let e = e2e::start(
        &pool(
            "warm",
            LINUX,
            "min_idle = 1\nidle_timeout = \"3s\"\nrepository = \"acme/api\"",
        ),
        "",
    )
    .await;
    let first = e
        .until(60, "a warm idle runner", async |e| {
            let runners = e.runners().await;
            runners
                .iter()
                .find(|r| r["state"] == "idle")
                .map(|r| r["id"].as_str().unwrap().to_owned())
        })
        .await;
    // Idle past the timeout: deregistered and removed, and a fresh one replaces it.
    e.until(
        60,
        "the first warm runner recycled and replaced",
        async |e| {
            let runners = e.runners().await;
            let gone = runners
                .iter()
                .any(|r| r["id"] == first.as_str() && r["state"] == "removed");
            let fresh = runners.iter().any(|r| {
                r["id"] != first.as_str()
                    && matches!(r["state"].as_str(), Some("idle" | "creating" | "requested"))
            });
            (gone && fresh).then_some(())
        },
    )
    .await;
    // A job is taken by a warm runner without waiting for a launch: within the simulator's
    // own assignment latency (the idle runner is long-polling it).
    e.until(60, "a warm runner idle again", async |e| {
        e.runners()
            .await
            .iter()
            .any(|r| r["state"] == "idle")
            .then_some(())
    })
    .await;
    let job = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", LINUX).with_duration(Duration::from_millis(200)))
        .unwrap();
    e.until(60, "job completed", async |e| {
        (e.job_status(job.job_id).await? == "completed").then_some(())
    })
    .await;
    let at_sim = e.sim.job(job.job_id).unwrap();
    let taken_after = at_sim.started_at.unwrap() - at_sim.created_at;
    assert!(
        taken_after < chrono::Duration::milliseconds(500),
        "a warm runner took the job after {taken_after}"
    );
    eprintln!(
        "warm pool: job taken {} ms after it was queued",
        taken_after.num_milliseconds()
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_never_comes_online_fails_on_bootstrap_timeout_and_is_replaced() {
    // The busybox test image sleeps instead of connecting: never online.
    let busybox = common::test_image::ensure_test_image();
    let pools = format!(
        "[[pools]]\nname = \"stuck\"\nlabels = [\"self-hosted\", \"stuck\"]\nimage = \"{busybox}\"\ncommand = [\"sleep\", \"600\"]\nnetwork = \"host\"\nbootstrap_timeout = \"2s\"\nmax_runners = 1\n"
    );
    let e = e2e::start(&pools, "").await;
    e.sim
        .enqueue_job(JobSpec::new("acme/api", &["self-hosted", "stuck"]))
        .unwrap();
    e.until(60, "two failed runners (the first replaced)", async |e| {
        let runners = e.runners().await;
        let failed: Vec<_> = runners
            .iter()
            .filter(|r| {
                r["failure_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("bootstrap_timeout")
            })
            .collect();
        (failed.len() >= 2).then_some(())
    })
    .await;
    e.until(30, "failed runners' containers removed", async |e| {
        let live = runner_states(e)
            .await
            .iter()
            .filter(|s| *s != "removed")
            .count();
        (e.containers().len() <= live).then_some(())
    })
    .await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_fails_with_its_exit_code_and_the_job_stays_queued() {
    let busybox = common::test_image::ensure_test_image();
    let pools = format!(
        "[[pools]]\nname = \"crash\"\nlabels = [\"self-hosted\", \"crash\"]\nimage = \"{busybox}\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\nnetwork = \"host\"\nmax_runners = 1\n"
    );
    let e = e2e::start(&pools, "").await;
    let job = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", &["self-hosted", "crash"]))
        .unwrap();
    let reason = e
        .until(60, "a crashed runner", async |e| {
            let runners = e.runners().await;
            runners.iter().find_map(|r| {
                r["failure_reason"]
                    .as_str()
                    .filter(|s| s.contains("code 3"))
                    .map(str::to_owned)
            })
        })
        .await;
    assert!(reason.contains("before taking a job"), "{reason}");
    assert_eq!(e.job_status(job.job_id).await.as_deref(), Some("queued"));
    let status = e.pool_status().await;
    assert!(
        status["pools"][0]["consecutive_failures"].as_u64().unwrap() >= 1,
        "{status}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_runner_clearly_and_the_daemon_keeps_working() {
    let pools =
        pool("linux", LINUX, "").replace(e2e::TEST_RUNNER_IMAGE, "runnerhub-no-such-image:latest");
    let e = e2e::start(&pools, "").await;
    let job = e.sim.enqueue_job(JobSpec::new("acme/api", LINUX)).unwrap();
    let reason = e
        .until(60, "a failed runner", async |e| {
            let runners = e.runners().await;
            runners
                .iter()
                .find_map(|r| r["failure_reason"].as_str().map(str::to_owned))
        })
        .await;
    assert!(reason.contains("runnerhub-no-such-image"), "{reason}");
    assert_eq!(e.job_status(job.job_id).await.as_deref(), Some("queued"));
    // The JIT registration made before the failure is deleted again.
    e.until(30, "registration deleted", async |e| {
        e.sim.runners().is_empty().then_some(())
    })
    .await;
    let r = e
        .app
        .deliver(
            "ping",
            "still-alive",
            &common::webhook_fixture("ping.payload.json"),
        )
        .await;
    assert_eq!(r.status(), 200);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_prewarms_a_runner_in_pools_that_ask_for_it() {
    let pools = pool(
        "warm",
        LINUX,
        "prewarm_on = [\"push\"]\nrepository = \"acme/api\"",
    ) + &pool("cold", &["self-hosted", "gpu"], "");
    let e = e2e::start(&pools, "").await;
    e.sim.send_push("acme/api", "main");
    let runner = e
        .until(60, "a pre-warmed runner idle", async |e| {
            e.runners().await.into_iter().find(|r| r["state"] == "idle")
        })
        .await;
    assert_eq!(runner["pool"], "warm", "only the pool with prewarm_on");
    assert_eq!(
        runner["launched_for"],
        serde_json::Value::Null,
        "a warm runner, not launched for a job"
    );
    assert_eq!(e.runners().await.len(), 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unavailable_fails_launches_clearly_and_the_daemon_keeps_working() {
    let e = e2e::start(
        &pool("linux", LINUX, ""),
        "[docker]\nhost = \"unix:///var/tmp/runnerhub-no-docker.sock\"",
    )
    .await;
    let job = e.sim.enqueue_job(JobSpec::new("acme/api", LINUX)).unwrap();
    let reason = e
        .until(60, "a failed runner", async |e| {
            e.runners()
                .await
                .iter()
                .find_map(|r| r["failure_reason"].as_str().map(str::to_owned))
        })
        .await;
    assert!(
        reason.contains("runnerhub-no-docker.sock") || reason.to_lowercase().contains("docker"),
        "{reason}"
    );
    assert_eq!(e.job_status(job.job_id).await.as_deref(), Some("queued"));
    let status = e.pool_status().await;
    assert!(
        status["pools"][0]["consecutive_failures"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let r = e
        .app
        .deliver(
            "ping",
            "still-alive",
            &common::webhook_fixture("ping.payload.json"),
        )
        .await;
    assert_eq!(r.status(), 200, "webhooks are still taken");
    e.stop().await;
}
