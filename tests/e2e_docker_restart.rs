//! The Docker engine restarts under runnerhub: the runner containers it killed are noticed,
//! torn down and replaced, and jobs run again once the engine is back.
//!
//! This test restarts the host's `dockerd`, which kills every container on the host, so it
//! runs only when `RUNNERHUB_TEST_RESTART_DOCKER=1`: `.ci/run` sets it and runs this test alone,
//! after the rest of the suite. Run it by hand the same way:
//! `RUNNERHUB_TEST_RESTART_DOCKER=1 cargo nextest run --test e2e_docker_restart`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::e2e::{self, pool};
use runnerhub::github::sim::JobSpec;

const LINUX: &[&str] = &["self-hosted", "linux"];

fn dockerd_pid() -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-x", "dockerd"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stops dockerd with SIGTERM and starts it again with the same command line, detached.
fn restart_dockerd() {
    let pid = dockerd_pid().expect("dockerd is not running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd command line");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::File::create("/var/tmp/runnerhub-test-dockerd.log").unwrap();
    Command::new("setsid")
        .arg("-f")
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd again")
        .wait()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker_answers() {
        assert!(
            Instant::now() < deadline,
            "dockerd did not come back; see /var/tmp/runnerhub-test-dockerd.log"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_killed_by_a_docker_restart_are_replaced_and_jobs_run_again() {
    if std::env::var("RUNNERHUB_TEST_RESTART_DOCKER").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: restarts the host's Docker engine; set RUNNERHUB_TEST_RESTART_DOCKER=1 (.ci/run does)"
        );
        return;
    }
    let e = e2e::start(
        &pool("warm", LINUX, "min_idle = 1\nrepository = \"acme/api\""),
        "",
    )
    .await;
    let before = e
        .until(60, "a warm idle runner", async |e| {
            let runners = e.runners().await;
            runners
                .iter()
                .find(|r| r["state"] == "idle")
                .map(|r| r["id"].as_str().unwrap().to_owned())
        })
        .await;

    tokio::task::spawn_blocking(restart_dockerd).await.unwrap();

    // The killed runner is noticed and torn down; a new warm runner comes up.
    e.until(
        90,
        "the killed runner removed and a new one idle",
        async |e| {
            let runners = e.runners().await;
            let old_gone = runners
                .iter()
                .any(|r| r["id"] == before.as_str() && r["state"] == "removed");
            let fresh = runners
                .iter()
                .any(|r| r["id"] != before.as_str() && r["state"] == "idle");
            (old_gone && fresh).then_some(())
        },
    )
    .await;
    let job = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", LINUX).with_duration(Duration::from_millis(300)))
        .unwrap();
    e.until(60, "a job runs after the restart", async |e| {
        (e.job_status(job.job_id).await? == "completed").then_some(())
    })
    .await;
    e.stop().await;
}
