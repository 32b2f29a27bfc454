//! kill -9 under load (#14): a restart must never kill a running job, launch a second runner for
//! a job, leave a registration behind or lose an acknowledged delivery.
//!
//! `cargo bench --bench kill9 -- [--rounds 20] [--slots 3] [--jobs-per-sec 2]` (minutes; not a
//! test, so `cargo nextest run` never runs it). The release-built daemon binary serves a pool of
//! `--slots` runners of the test runner image (real Docker, host network) for the GitHub
//! simulator, which queues `--jobs-per-sec` jobs a second of 1–4 s each and sends their
//! webhooks. `--rounds` times, at a random moment 2–7 s into a round, the daemon is killed with
//! SIGKILL and started again at once. Then the load stops, everything settles (every job done,
//! the reconciliation has run) and it prints, each of which must be 0:
//! - jobs killed mid-run: jobs a runner took that did not complete with `success` (the
//!   simulator, like GitHub before its lost-runner timeout, leaves a job whose runner died
//!   `in_progress`);
//! - second runners: runners launched for a job while a runner launched for it earlier was
//!   alive and not failed;
//! - registrations left at the simulator, containers left in Docker;
//! - acknowledged deliveries lost: deliveries the daemon answered 2xx that its audit log lacks;
//!
//! plus the machine, a 3 s fsync probe of the disk, and the command.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use runnerhub::github::sim::{JobSpec, JobStatus, SimConfig, SimHandle, Simulator};
use serde_json::Value;

#[allow(dead_code)]
#[path = "shared/disk_probe.rs"]
mod disk_probe;
#[path = "shared/docker_bench.rs"]
mod docker_bench;
use docker_bench::{InstanceCleanup, arg, containers_of};

const SECRET: &str = "kill9-secret";
const SIM_TOKEN: &str = "sim-token";
const IMAGE: &str = "runnerhub-test-runner:latest";
const LABELS: &[&str] = &["self-hosted", "linux", "x64"];
const REPOSITORIES: &[&str] = &["acme/api", "acme/web", "acme/docs"];

/// The daemon under test: the release binary, its log appended to `daemon.log`.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(dir: &Path, addr: SocketAddr) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_runnerhub"))
            .args(["serve", "--config"])
            .arg(dir.join("runnerhub.toml"))
            .args(["--listen", &addr.to_string()])
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        Daemon { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    while get(client, &format!("{base}/readyz")).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon did not get ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Every runner record, removed ones included.
async fn runner_records(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let url = format!("{base}/api/runners?all=true&limit=500&offset={}", all.len());
        let page = get(client, &url).await.expect("runner list");
        let runners = page["data"]["runners"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if runners.is_empty() {
            return all;
        }
        all.extend(runners);
    }
}

fn time_of(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str()?.parse().ok()
}

/// Runners launched for a job while an earlier runner launched for it was alive and not failed.
fn second_runners(runners: &[Value]) -> Vec<String> {
    let mut by_job: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for r in runners {
        if let Some(job) = r["launched_for"].as_i64() {
            by_job.entry(job).or_default().push(r);
        }
    }
    let mut found = Vec::new();
    for (job, mut launched) in by_job {
        launched.sort_by_key(|r| time_of(&r["created_at"]));
        for (i, later) in launched.iter().enumerate().skip(1) {
            let created = time_of(&later["created_at"]);
            let overlapping = launched[..i].iter().any(|earlier| {
                earlier["failure_reason"].is_null()
                    && time_of(&earlier["removed_at"]).is_none_or(|gone| Some(gone) > created)
            });
            if overlapping {
                found.push(format!("job {job}: {}", later["name"]));
            }
        }
    }
    found
}

fn config_text(dir: &Path, instance: &str, sim: &SimHandle, slots: u64) -> String {
    format!(
        r#"
        [server]
        instance_id = "{instance}"
        [database]
        url = "sqlite://{db}/runnerhub.db"
        [github]
        api_url = "{api}"
        token = "{SIM_TOKEN}"
        catch_up_interval = "10s"
        [limits]
        max_runners = {slots}
        [[pools]]
        name = "linux"
        labels = {LABELS:?}
        image = "{IMAGE}"
        network = "host"
        cpus = 0.5
        memory = "64m"
        max_runners = {slots}
        "#,
        db = dir.display(),
        api = sim.url(),
    )
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), Linux {}, load average {load}",
        kernel.trim()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; the options are ours.
    let rounds = arg::<u64>("--rounds", 20);
    let slots = arg::<u64>("--slots", 3);
    let rate = arg::<u64>("--jobs-per-sec", 2).max(1);
    let command = format!(
        "cargo bench --bench kill9 -- --rounds {rounds} --slots {slots} --jobs-per-sec {rate}"
    );
    println!("machine: {}", machine());
    disk_probe::flush_system();
    match disk_probe::probe_disk(&std::env::temp_dir(), Duration::from_secs(3)) {
        Ok(probe) => println!("fsync probe (3 s): {}", probe.summary()),
        Err(e) => println!("fsync probe failed: {e}"),
    }
    let built = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/runner-images/build-test-image.sh"
        ))
        .output()
        .expect("build-test-image.sh");
    assert!(
        built.status.success(),
        "the test runner image (Docker must be up)"
    );

    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{addr}");
    let sim = Arc::new(
        Simulator::start(SimConfig {
            webhook_url: Some(format!("{base}/api/webhooks/github")),
            webhook_secret: SECRET.into(),
            ..SimConfig::default()
        })
        .await
        .unwrap(),
    );
    let instance = format!("kill9-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = InstanceCleanup(instance.clone());
    std::fs::write(
        dir.path().join("runnerhub.toml"),
        config_text(dir.path(), &instance, &sim, slots),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut daemon = Daemon::start(dir.path(), addr);
    wait_ready(&client, &base).await;

    // Load: `rate` jobs a second of 1-4 s, across a few repositories, until the rounds end.
    let load_sim = sim.clone();
    let stop_load = tokio_util::sync::CancellationToken::new();
    let stop = stop_load.clone();
    let load = tokio::spawn(async move {
        let mut queued = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
        while !stop.is_cancelled() {
            tick.tick().await;
            let (millis, repo) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_range(1000..=4000),
                    rng.gen_range(0..REPOSITORIES.len()),
                )
            };
            let spec = JobSpec::new(REPOSITORIES[repo], LABELS)
                .with_duration(Duration::from_millis(millis));
            load_sim.enqueue_job(spec).expect("enqueue");
            queued += 1;
        }
        queued
    });

    let started = Instant::now();
    let mut restarts = Vec::new();
    for round in 1..=rounds {
        let wait = rand::thread_rng().gen_range(2000..7000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let starting = sim.runners().len();
        daemon.kill9();
        daemon = Daemon::start(dir.path(), addr);
        let ready = wait_ready(&client, &base).await;
        restarts.push(ready);
        println!(
            "round {round:2}: kill -9 at {:6.1} s ({starting} registrations), ready again in {:.2} s",
            started.elapsed().as_secs_f64(),
            ready.as_secs_f64()
        );
    }
    stop_load.cancel();
    let queued = load.await.unwrap();
    let load_secs = started.elapsed().as_secs_f64();

    // Settle: every job done (catch-up recovers what was sent while the daemon was down), then
    // the reconciliation (every minute) removes what is left at GitHub and in Docker.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(240) {
        let jobs = sim.jobs();
        let open = jobs
            .iter()
            .filter(|j| j.status != JobStatus::Completed)
            .count();
        if open == 0 && sim.runners().is_empty() && containers_of(&instance).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled_secs = settle.elapsed().as_secs_f64();

    let jobs = sim.jobs();
    let killed: Vec<u64> = jobs
        .iter()
        .filter(|j| j.runner.is_some())
        .filter(|j| j.status != JobStatus::Completed || j.conclusion.as_deref() != Some("success"))
        .map(|j| j.id)
        .collect();
    let never_served = jobs.iter().filter(|j| j.runner.is_none()).count();
    let runners = runner_records(&client, &base).await;
    let seconds = second_runners(&runners);
    let registrations_left = sim.runners().len();
    let containers_left = containers_of(&instance).len();
    let acknowledged: Vec<String> = sim
        .deliveries()
        .into_iter()
        .filter(|d| (200..300).contains(&d.status_code))
        .map(|d| d.guid)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut lost = Vec::new();
    for guid in &acknowledged {
        if get(&client, &format!("{base}/api/webhooks/events/{guid}"))
            .await
            .is_none()
        {
            lost.push(guid.clone());
        }
    }
    drop(daemon);

    let mean_ready =
        restarts.iter().map(Duration::as_secs_f64).sum::<f64>() / restarts.len().max(1) as f64;
    println!();
    println!(
        "{rounds} kill -9 rounds in {load_secs:.0} s under {rate} jobs/s of 1-4 s, {slots} slots: \
         {queued} jobs queued, {} runners launched, ready again after a kill in {mean_ready:.2} s \
         on average; settled {settled_secs:.0} s after the load",
        runners.len()
    );
    println!(
        "jobs killed mid-run:            {}  {killed:?}",
        killed.len()
    );
    println!("jobs never served:              {never_served}");
    println!(
        "second runners for a job:       {}  {seconds:?}",
        seconds.len()
    );
    println!("registrations left:             {registrations_left}");
    println!("containers left:                {containers_left}");
    println!(
        "acknowledged deliveries lost:   {}  (of {} acknowledged)  {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    println!("command: {command}");
    let failed = !killed.is_empty()
        || never_served > 0
        || !seconds.is_empty()
        || registrations_left > 0
        || containers_left > 0
        || !lost.is_empty();
    if failed {
        println!(
            "daemon log kept at {}",
            dir.keep().join("daemon.log").display()
        );
        std::process::exit(1);
    }
}
