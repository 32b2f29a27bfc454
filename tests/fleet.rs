//! A fleet (DESIGN §9): three instances of the real binary on one real PostgreSQL database,
//! each launching runner containers on the real Docker engine (shared here; each reconciles only
//! its own), the GitHub simulator delivering webhooks to them in turn through a round-robin
//! forwarder like a load balancer's. A stream of jobs; kill -9 of one instance midway, then of
//! the leader; every job completes, no job runs on two runners, nothing acknowledged is lost,
//! another instance leads within seconds, and nothing is left behind once all have restarted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use common::daemon::Daemon;
use common::e2e::{self, SIM_TOKEN, TEST_RUNNER_IMAGE};
use common::until;
use runnerhub::github::sim::{JobSpec, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;

const LINUX: &[&str] = &["self-hosted", "linux"];

/// Forwards each webhook POST to the next instance in turn, skipping those that do not answer,
/// as a load balancer with health checks would.
#[derive(Clone, Default)]
struct Forwarder {
    targets: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    next: Arc<Mutex<usize>>,
}

impl Forwarder {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let me = me.clone();
            async move { me.forward(request).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn set(&self, index: usize, addr: Option<SocketAddr>) {
        let mut targets = self.targets.lock().unwrap();
        if targets.len() <= index {
            targets.resize(index + 1, None);
        }
        targets[index] = addr;
    }

    async fn forward(&self, request: axum::extract::Request) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 32 << 20).await.unwrap();
        let client = reqwest::Client::new();
        let targets: Vec<SocketAddr> = self
            .targets
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect();
        let start = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        for i in 0..targets.len() {
            let target = targets[(start + i) % targets.len()];
            let mut forwarded = client.post(format!("http://{target}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forwarded = forwarded.header(name, value);
                }
            }
            if let Ok(answer) = forwarded.body(body.clone()).send().await {
                let status = answer.status();
                let text = answer.bytes().await.unwrap_or_default();
                return (status, text).into_response();
            }
        }
        (axum::http::StatusCode::BAD_GATEWAY, "no instance answers").into_response()
    }
}

struct Fleet {
    database: String,
    sim_url: String,
    ids: Vec<String>,
    daemons: Vec<Option<Daemon>>,
    forwarder: Forwarder,
}

impl Fleet {
    fn config(&self, index: usize) -> String {
        format!(
            r#"
            [server]
            instance_id = "{id}"
            [database]
            url = "{db}"
            fleet = true
            instance_timeout = "6s"
            [github]
            api_url = "{api}"
            token = "{SIM_TOKEN}"
            catch_up_interval = "3s"
            [limits]
            max_runners = 2
            [[pools]]
            name = "linux"
            labels = ["self-hosted", "linux"]
            image = "{TEST_RUNNER_IMAGE}"
            network = "host"
            cpus = 0.5
            memory = "64m"
            max_runners = 2
            idle_timeout = "20s"
            "#,
            id = self.ids[index],
            db = self.database,
            api = self.sim_url,
        )
    }

    fn start(&mut self, index: usize) {
        let daemon = Daemon::start(
            &self.config(index),
            &[
                ("GITHUB_WEBHOOK_SECRET", common::SECRET),
                ("RUST_LOG", "info"),
            ],
            &[],
        );
        self.forwarder.set(index, Some(daemon.addr));
        if self.daemons.len() <= index {
            self.daemons.resize_with(index + 1, || None);
        }
        self.daemons[index] = Some(daemon);
    }

    fn kill(&mut self, index: usize) -> Daemon {
        self.forwarder.set(index, None);
        let daemon = self.daemons[index].take().expect("running");
        daemon.signal("KILL");
        daemon
    }

    fn any(&self) -> &Daemon {
        self.daemons
            .iter()
            .flatten()
            .next()
            .expect("one instance runs")
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let answer = reqwest::get(self.any().url(path)).await.ok()?;
        answer.status().is_success().then_some(())?;
        answer.json::<Value>().await.ok().map(|v| v["data"].clone())
    }

    async fn leader(&self) -> Option<String> {
        let instances = self.api("/api/instances").await?;
        instances["instances"]
            .as_array()?
            .iter()
            .find(|i| i["leader"] == true && i["alive"] == true)
            .and_then(|i| i["id"].as_str().map(str::to_owned))
    }
}

/// Whether GitHub has completed every one of `jobs`.
fn all_completed(sim: &SimHandle, jobs: &[u64]) -> bool {
    jobs.iter()
        .all(|id| sim.job(*id).is_some_and(|j| j.completed_at.is_some()))
}

fn enqueue(sim: &SimHandle, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            sim.enqueue_job(
                JobSpec::new(&format!("acme/app{}", i % 3), LINUX)
                    .with_duration(Duration::from_secs(2)),
            )
            .unwrap()
            .job_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_work_and_survive_the_death_of_one_and_of_the_leader() {
    tokio::task::spawn_blocking(e2e::ensure_runner_image)
        .await
        .unwrap();
    let database = TestDatabase::create().await;
    let forwarder = Forwarder::default();
    let entry = forwarder.start().await;
    let sim = Simulator::start(SimConfig {
        webhook_url: Some(format!("http://{entry}/api/webhooks/github")),
        webhook_secret: common::SECRET.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut fleet = Fleet {
        database: database.url.clone(),
        sim_url: sim.url(),
        ids: ["a", "b", "c"].map(|s| format!("fleet-{tag}-{s}")).to_vec(),
        daemons: Vec::new(),
        forwarder: forwarder.clone(),
    };
    for i in 0..3 {
        fleet.start(i);
    }
    let instances = until(30, "three live instances and a leader", async || {
        let list = fleet.api("/api/instances").await?;
        let list = list["instances"].as_array()?.clone();
        let alive = list.iter().filter(|i| i["alive"] == true).count();
        let leaders = list.iter().filter(|i| i["leader"] == true).count();
        (alive == 3 && leaders == 1).then_some(list)
    })
    .await;
    assert!(
        instances
            .iter()
            .all(|i| i["pools"] == serde_json::json!(["linux"]))
    );

    // A stream of jobs; one non-leading instance killed while they run.
    let mut jobs = enqueue(&sim, 6);
    until(60, "runners at work", async || {
        let busy = sim.jobs().iter().filter(|j| j.started_at.is_some()).count();
        (busy >= 2).then_some(())
    })
    .await;
    let leader = fleet.leader().await.expect("a leader");
    let victim = (0..3).find(|i| fleet.ids[*i] != leader).unwrap();
    let killed = fleet.kill(victim);
    jobs.extend(enqueue(&sim, 6));
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
    let more = enqueue(&sim, 3);
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
    let acknowledged: Vec<String> = sim
        .deliveries()
        .into_iter()
        .filter(|d| (200..300).contains(&d.status_code))
        .map(|d| d.guid)
        .collect();
    for guid in &acknowledged {
        assert!(
            fleet
                .api(&format!("/api/webhooks/events/{guid}"))
                .await
                .is_some(),
            "acknowledged delivery {guid} is not in the audit log"
        );
    }
    let runners = fleet.api("/api/runners?all=true&limit=500").await.unwrap();
    let runners = runners["runners"].as_array().unwrap().clone();
    // A job's runners come from the one instance that claimed it (a runner GitHub handed
    // another job leaves its own to a second launch there), unless its instance died and the
    // job went back to the fleet; and no job ran on two runners.
    let mut launched: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut ran: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runners {
        let given_up = r["failure_reason"]
            .as_str()
            .is_some_and(|f| f.contains("died: deregistered by the leader"));
        if let (Some(job), false) = (r["launched_for"].as_i64(), given_up) {
            launched
                .entry(job)
                .or_default()
                .insert(r["instance"].as_str().unwrap_or_default().to_owned());
        }
        if let Some(job) = r["job_id"].as_i64() {
            *ran.entry(job).or_default() += 1;
        }
    }
    for (job, times) in &ran {
        assert_eq!(*times, 1, "job {job} ran on {times} runners");
    }
    eprintln!(
        "jobs {}, acknowledged deliveries {}, runners {}, killed {} then leader {leader} (now {new_leader})",
        jobs.len(),
        acknowledged.len(),
        runners.len(),
        fleet.ids[victim]
    );
    for r in &runners {
        eprintln!(
            "  runner {} {} for {} ran {} {} {}",
            r["instance"], r["state"], r["launched_for"], r["job_id"], r["failure_reason"], r["id"]
        );
    }
    for (job, by) in &launched {
        assert!(by.len() <= 1, "job {job} got runners from instances {by:?}");
    }
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
    let ids = fleet.ids.clone();
    until(90, "no container and no registration left", async || {
        let registrations = sim.runners();
        let containers: Vec<String> = ids.iter().flat_map(|id| containers_of(id)).collect();
        (registrations.is_empty() && containers.is_empty()).then_some(())
    })
    .await;
    assert!(!logs.is_empty());
    for i in 0..3 {
        if let Some(d) = fleet.daemons[i].take() {
            d.signal("TERM");
        }
    }
    for id in &fleet.ids {
        e2e::remove_instance_containers(id);
    }
    sim.shutdown().await;
    database.drop_now().await;
}

fn containers_of(instance: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=runnerhub.instance={instance}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
