//! Burst launches (issue #13, item 6): how close runnerhub gets to what the Docker engine itself
//! can do when many jobs are queued at once.
//!
//! `cargo bench --bench burst -- [--jobs 30] [--rounds 3]`. Rounds alternate:
//! - **runnerhub**: `--jobs` jobs queued at once at the GitHub simulator, which sends the
//!   webhooks to an in-process daemon (SQLite, real Docker, the test runner image on the host
//!   network); timed from the queueing until each runner process reaches the network: its first
//!   request to the simulator (`POST /_sim/runner/connect`, stamped by the simulator), not the
//!   daemon's once-a-second poll of GitHub.
//! - **baseline**: the same number of containers of the same image and spec (JIT configs
//!   registered beforehand, outside the timing), created and started straight through the
//!   Docker API (bollard), 8 at a time; timed from the first create to the same event.
//!
//! Prints each round, the min and median of both, their ratio (target ≤ 1.15) and a 3 s fsync
//! probe of the disk. Every container it makes carries a per-round instance label and is removed
//! at the end of the round, or by a guard if the bench panics.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{ListContainersOptions, RemoveContainerOptions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use runnerhub::config::{Config, Secret};
use runnerhub::docker::{LABEL_INSTANCE, RunnerContainerSpec, create_request};
use runnerhub::github::sim::{JobSpec, SimConfig, SimHandle, Simulator};
use tokio_util::sync::CancellationToken;

/// Only the summary is printed here; the module has more for the fsync and ingest benches.
#[allow(dead_code)]
#[path = "shared/disk_probe.rs"]
mod disk_probe;
#[path = "shared/docker_bench.rs"]
mod docker_bench;
use docker_bench::{InstanceCleanup, arg};

const SECRET: &str = "burst-secret";
const SIM_TOKEN: &str = "sim-token";
const IMAGE: &str = "runnerhub-test-runner:latest";
const LABELS: &[&str] = &["self-hosted", "linux", "burst"];
const REPO: &str = "acme/burst";
/// Create+start calls in flight in the baseline, as the daemon's `LAUNCH_CONCURRENCY`.
const BASELINE_CONCURRENCY: usize = 8;
/// Jobs outlast a round, so that no runner finishes (and is torn down) while others launch.
const JOB_SECS: u64 = 600;

/// One round's result: when each runner first reached the simulator, after the start.
struct Round {
    connected_ms: Vec<f64>,
    /// Only for runnerhub: (phase, ms after the start when the last runner reached it).
    phases: Vec<(&'static str, f64)>,
}

impl Round {
    fn total_ms(&self) -> f64 {
        self.connected_ms.iter().copied().fold(0.0, f64::max)
    }

    fn median_ms(&self) -> f64 {
        let mut v = self.connected_ms.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

fn ms_since(start: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - start).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Waits until `count` runners have connected to `sim`; returns their connect times.
async fn connected(sim: &SimHandle, count: usize, start: DateTime<Utc>) -> Vec<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let times: Vec<f64> = sim
            .runners()
            .iter()
            .filter_map(|r| r.connected_at)
            .map(|at| ms_since(start, at))
            .collect();
        if times.len() >= count {
            return times;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} runners connected within 180 s",
            times.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes the containers of `instance`, 8 at a time.
async fn remove_instance(docker: &Docker, instance: &str) {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )]);
    let listed = docker
        .list_containers(Some(ListContainersOptions::<String> {
            all: true,
            filters,
            ..Default::default()
        }))
        .await
        .expect("list containers");
    futures::stream::iter(listed.into_iter().filter_map(|c| c.id))
        .for_each_concurrent(BASELINE_CONCURRENCY, |id| async move {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = docker.remove_container(&id, Some(options)).await;
        })
        .await;
}

fn pool_toml() -> String {
    format!(
        "[[pools]]\nname = \"burst\"\nlabels = {LABELS:?}\nimage = \"{IMAGE}\"\nnetwork = \"host\"\n"
    )
}

/// A GitHub simulator that sends its webhooks to `webhook_url` (if any), with no rate limit
/// worth the name (a round makes a few hundred calls).
async fn simulator(webhook_url: Option<String>) -> SimHandle {
    let config = SimConfig {
        webhook_url,
        webhook_secret: SECRET.into(),
        tokens: vec![SIM_TOKEN.into()],
        rate_limit: 1_000_000,
        ..SimConfig::default()
    };
    Simulator::start(config)
        .await
        .expect("the simulator starts")
}

/// runnerhub's burst: `jobs` jobs queued at once → `jobs` runners connected.
async fn runnerhub_round(docker: &Docker, jobs: usize, instance: &str) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = simulator(Some(format!("http://{addr}/api/webhooks/github"))).await;
    let text = format!(
        "[server]\ninstance_id = \"{instance}\"\nshutdown_grace = \"0s\"\n\
         [database]\nurl = \"sqlite://{}/runnerhub.db\"\n\
         [github]\napi_url = \"{}\"\ntoken = \"{SIM_TOKEN}\"\n\
         [limits]\nmax_runners = {jobs}\n{}max_runners = {jobs}\n",
        dir.path().display(),
        sim.url(),
        pool_toml()
    );
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let config = Config::from_toml_with_env(&text, Path::new("burst.toml"), &env).unwrap();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(runnerhub::app::run(config, listener, shutdown.clone()));
    let client = reqwest::Client::new();
    let ready = format!("http://{addr}/readyz");
    while !client
        .get(&ready)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Start-up reconciliation and the first polls are over before the burst.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let start = Utc::now();
    for _ in 0..jobs {
        let spec = JobSpec::new(REPO, LABELS).with_duration(Duration::from_secs(JOB_SECS));
        sim.enqueue_job(spec).unwrap();
    }
    let connected_ms = connected(&sim, jobs, start).await;
    let runners = json(client.get(format!("http://{addr}/api/runners?all=true&limit=500"))).await;
    let decided = runners["data"]["runners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["created_at"].as_str()?.parse::<DateTime<Utc>>().ok())
        .map(|at| ms_since(start, at));
    let registered = sim
        .runners()
        .into_iter()
        .map(|r| ms_since(start, r.created_at));
    let first = |it: &mut dyn Iterator<Item = f64>| it.fold(f64::MAX, f64::min);
    let last = |it: &mut dyn Iterator<Item = f64>| it.fold(0.0, f64::max);
    let decided: Vec<f64> = decided.collect();
    let registered: Vec<f64> = registered.collect();
    let phases = vec![
        ("first runner decided", first(&mut decided.iter().copied())),
        ("last decided", last(&mut decided.iter().copied())),
        (
            "first registered (JIT)",
            first(&mut registered.iter().copied()),
        ),
        ("last registered", last(&mut registered.iter().copied())),
        ("first connected", first(&mut connected_ms.iter().copied())),
    ];
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    remove_instance(docker, instance).await;
    sim.shutdown().await;
    Round {
        connected_ms,
        phases,
    }
}

/// The engine alone: the same containers, created and started 8 at a time.
async fn baseline_round(docker: &Docker, jobs: usize, instance: &str) -> Round {
    let sim = simulator(None).await;
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let config = Config::from_toml_with_env(
        &format!("[database]\nurl = \"sqlite://unused.db\"\n{}", pool_toml()),
        Path::new("burst.toml"),
        &env,
    )
    .unwrap();
    let pool = config.pools[0].clone();
    let client = reqwest::Client::new();
    let mut specs = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let runner_id = format!("{i:08}-baseline");
        let name = runnerhub::domain::Runner::name_for(
            &config.runner_name_prefix(),
            &pool.name,
            &runner_id,
        );
        let url = format!(
            "{}/repos/{REPO}/actions/runners/generate-jitconfig",
            sim.url()
        );
        let body = serde_json::json!({
            "name": name, "runner_group_id": 1, "labels": LABELS, "work_folder": "_work"
        });
        let registered = json(client.post(url).bearer_auth(SIM_TOKEN).json(&body)).await;
        let jit = Secret::new(registered["encoded_jit_config"].as_str().unwrap());
        specs.push(RunnerContainerSpec::for_runner(
            &pool, instance, &runner_id, &jit,
        ));
    }

    let start = Utc::now();
    futures::stream::iter(specs)
        .for_each_concurrent(BASELINE_CONCURRENCY, |spec| async move {
            create_and_start(docker, &spec).await
        })
        .await;
    let connected_ms = connected(&sim, jobs, start).await;
    remove_instance(docker, instance).await;
    sim.shutdown().await;
    Round {
        connected_ms,
        phases: Vec::new(),
    }
}

/// The two Engine API calls, with the request runnerhub makes from `spec`.
async fn create_and_start(docker: &Docker, spec: &RunnerContainerSpec) {
    let (options, config) = create_request(spec);
    let created = docker
        .create_container(Some(options), config)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
    docker
        .start_container::<String>(&created.id, None)
        .await
        .unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
}

/// Sends `request` and reads its JSON answer.
async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn stats(name: &str, rounds: &[Round]) -> (f64, f64) {
    let mut totals: Vec<f64> = rounds.iter().map(Round::total_ms).collect();
    totals.sort_by(f64::total_cmp);
    let (min, median) = (totals[0], totals[totals.len() / 2]);
    println!(
        "{name:9}: all connected min {min:.0} ms, median {median:.0} ms (rounds: {})",
        rounds
            .iter()
            .map(|r| format!("{:.0}", r.total_ms()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (min, median)
}

#[tokio::main]
async fn main() {
    let (jobs, rounds) = (arg::<usize>("--jobs", 30), arg::<usize>("--rounds", 3));
    let build = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/runner-images/build-test-image.sh"
        ))
        .output()
        .expect("run build-test-image.sh");
    assert!(
        build.status.success(),
        "build-test-image.sh: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    disk_probe::flush_system();
    match disk_probe::probe_disk(&std::env::temp_dir(), Duration::from_secs(3)) {
        Ok(probe) => println!("fsync probe (3 s): {}", probe.summary()),
        Err(e) => println!("fsync probe failed: {e}"),
    }
    let docker = Arc::new(Docker::connect_with_local_defaults().expect("Docker socket"));
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (mut ours, mut engine) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for baseline in [false, true] {
            let instance = format!(
                "burst-{run}-{round}-{}",
                if baseline { "engine" } else { "runnerhub" }
            );
            let _guard = InstanceCleanup(instance.clone());
            let result = if baseline {
                baseline_round(&docker, jobs, &instance).await
            } else {
                runnerhub_round(&docker, jobs, &instance).await
            };
            println!(
                "round {} {:9}: {jobs} runners connected after {:.0} ms (median runner {:.0} ms){}",
                round + 1,
                if baseline { "baseline" } else { "runnerhub" },
                result.total_ms(),
                result.median_ms(),
                result
                    .phases
                    .iter()
                    .map(|(phase, ms)| format!("; {phase} {ms:.0}"))
                    .collect::<String>()
            );
            if baseline {
                engine.push(result)
            } else {
                ours.push(result)
            }
        }
    }
    let (ours_min, ours_median) = stats("runnerhub", &ours);
    let (engine_min, engine_median) = stats("baseline", &engine);
    println!(
        "ratio runnerhub / baseline: median {:.2}, min {:.2} (target ≤ 1.15)",
        ours_median / engine_median,
        ours_min / engine_min
    );
}
