//! A fleet of real daemons on one PostgreSQL database behind a round-robin forwarder, for the
//! fleet's end-to-end tests (tests/fleet.rs, tests/fleet_cut_off.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use runnerhub::github::sim::{JobSpec, SimConfig, SimHandle, Simulator};
use serde_json::Value;

use super::daemon::Daemon;
use super::e2e::{self, SIM_TOKEN, TEST_RUNNER_IMAGE};
use super::until;

pub const LINUX: &[&str] = &["self-hosted", "linux"];

/// Forwards each webhook POST to the next instance in turn, skipping those that do not answer
/// or answer 5xx (one that cannot reach the database), as a load balancer with health checks
/// would.
#[derive(Clone, Default)]
pub struct Forwarder {
    targets: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    next: Arc<Mutex<usize>>,
}

impl Forwarder {
    pub async fn start(&self) -> SocketAddr {
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

    pub fn set(&self, index: usize, addr: Option<SocketAddr>) {
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
            if let Ok(answer) = forwarded.body(body.clone()).send().await
                && !answer.status().is_server_error()
            {
                let status = answer.status();
                let text = answer.bytes().await.unwrap_or_default();
                return (status, text).into_response();
            }
        }
        (axum::http::StatusCode::BAD_GATEWAY, "no instance answers").into_response()
    }
}

/// How a fleet's instances are configured beyond their database: every instance with the same
/// `linux` pool unless `pools` says otherwise (one `[[pools]]` TOML text per instance).
pub struct Shape {
    pub instance_timeout: &'static str,
    pub pools: Option<Vec<String>>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            instance_timeout: "6s",
            pools: None,
        }
    }
}

/// One `[[pools]]` section of the test image's runners, at most two of them on an instance.
pub fn pool(name: &str, labels: &[&str]) -> String {
    format!(
        r#"
            [[pools]]
            name = "{name}"
            labels = {labels:?}
            image = "{TEST_RUNNER_IMAGE}"
            network = "host"
            cpus = 0.5
            memory = "64m"
            max_runners = 2
            idle_timeout = "20s"
            "#
    )
}

pub struct Fleet {
    /// Each instance's database URL (one database; some perhaps through a proxy).
    pub databases: Vec<String>,
    pub shape: Shape,
    pub sim_url: String,
    pub ids: Vec<String>,
    pub daemons: Vec<Option<Daemon>>,
    pub forwarder: Forwarder,
}

impl Fleet {
    /// The simulator, delivering through a new forwarder, and a fleet of one instance per
    /// database URL (named `<prefix>-<tag>-<name>`), each started, all alive with one leader.
    pub async fn launch(
        prefix: &str,
        databases: Vec<String>,
        names: &[&str],
    ) -> (Fleet, SimHandle) {
        Self::launch_shaped(prefix, databases, names, Shape::default()).await
    }

    /// [`Fleet::launch`] with instances configured as `shape` says.
    pub async fn launch_shaped(
        prefix: &str,
        databases: Vec<String>,
        names: &[&str],
        shape: Shape,
    ) -> (Fleet, SimHandle) {
        tokio::task::spawn_blocking(e2e::ensure_runner_image)
            .await
            .unwrap();
        let forwarder = Forwarder::default();
        let entry = forwarder.start().await;
        let sim = Simulator::start(SimConfig {
            webhook_url: Some(format!("http://{entry}/api/webhooks/github")),
            webhook_secret: super::SECRET.into(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut fleet = Fleet {
            databases,
            shape,
            sim_url: sim.url(),
            ids: names
                .iter()
                .map(|s| format!("{prefix}-{tag}-{s}"))
                .collect(),
            daemons: Vec::new(),
            forwarder,
        };
        for i in 0..names.len() {
            fleet.start(i);
        }
        let expected = names.len();
        until(30, "every instance alive and one leader", async || {
            let list = fleet.api("/api/instances").await?;
            let list = list["instances"].as_array()?.clone();
            let alive = list.iter().filter(|i| i["alive"] == true).count();
            let leaders = list.iter().filter(|i| i["leader"] == true).count();
            (alive == expected && leaders == 1).then_some(())
        })
        .await;
        (fleet, sim)
    }

    /// Stops every instance (SIGTERM), removes what the test left in Docker, stops the
    /// simulator.
    pub async fn stop(mut self, sim: SimHandle) {
        for daemon in self.daemons.iter_mut().filter_map(Option::take) {
            daemon.signal("TERM");
        }
        for id in &self.ids {
            e2e::remove_instance_containers(id);
        }
        sim.shutdown().await;
    }

    fn config(&self, index: usize) -> String {
        format!(
            r#"
            [server]
            instance_id = "{id}"
            [database]
            url = "{db}"
            fleet = true
            instance_timeout = "{timeout}"
            [github]
            api_url = "{api}"
            token = "{SIM_TOKEN}"
            catch_up_interval = "3s"
            [limits]
            max_runners = 2
            {pools}"#,
            id = self.ids[index],
            db = self.databases[index],
            api = self.sim_url,
            timeout = self.shape.instance_timeout,
            pools = match &self.shape.pools {
                Some(pools) => pools[index].clone(),
                None => pool("linux", LINUX),
            },
        )
    }

    pub fn start(&mut self, index: usize) {
        let daemon = Daemon::start(
            &self.config(index),
            &[
                ("GITHUB_WEBHOOK_SECRET", super::SECRET),
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

    pub fn kill(&mut self, index: usize) -> Daemon {
        self.forwarder.set(index, None);
        let daemon = self.daemons[index].take().expect("running");
        daemon.signal("KILL");
        daemon
    }

    pub fn any(&self) -> &Daemon {
        self.daemons
            .iter()
            .flatten()
            .next()
            .expect("one instance runs")
    }

    pub async fn api(&self, path: &str) -> Option<Value> {
        let answer = reqwest::get(self.any().url(path)).await.ok()?;
        answer.status().is_success().then_some(())?;
        answer.json::<Value>().await.ok().map(|v| v["data"].clone())
    }

    pub async fn leader(&self) -> Option<String> {
        let instances = self.api("/api/instances").await?;
        instances["instances"]
            .as_array()?
            .iter()
            .find(|i| i["leader"] == true && i["alive"] == true)
            .and_then(|i| i["id"].as_str().map(str::to_owned))
    }
}

/// Whether GitHub has completed every one of `jobs`.
pub fn all_completed(sim: &SimHandle, jobs: &[u64]) -> bool {
    jobs.iter()
        .all(|id| sim.job(*id).is_some_and(|j| j.completed_at.is_some()))
}

pub fn enqueue(sim: &SimHandle, n: usize, duration: Duration) -> Vec<u64> {
    (0..n)
        .map(|i| {
            sim.enqueue_job(
                JobSpec::new(&format!("acme/app{}", i % 3), LINUX).with_duration(duration),
            )
            .unwrap()
            .job_id
        })
        .collect()
}

/// No registration at GitHub, no container of any of the fleet's instances.
pub fn nothing_left(fleet: &Fleet, sim: &SimHandle) -> bool {
    sim.runners().is_empty() && fleet.ids.iter().all(|id| containers_of(id).is_empty())
}

pub fn containers_of(instance: &str) -> Vec<String> {
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

/// Every runner the fleet recorded (`/api/runners?all=true`), checked: no job ran on two
/// runners, and a job's runners come from the one instance that claimed it (a runner GitHub
/// handed another job leaves its own to a second launch there), unless its instance was given
/// up and the job went back to the fleet.
pub async fn checked_runners(fleet: &Fleet) -> Vec<Value> {
    let runners = fleet.api("/api/runners?all=true&limit=500").await.unwrap();
    let runners = runners["runners"].as_array().unwrap().clone();
    let mut launched: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut ran: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &runners {
        eprintln!(
            "  runner {} {} for {} ran {} {} {}",
            r["instance"], r["state"], r["launched_for"], r["job_id"], r["failure_reason"], r["id"]
        );
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
    for (job, by) in &launched {
        assert!(by.len() <= 1, "job {job} got runners from instances {by:?}");
    }
    runners
}

/// Every delivery GitHub saw acknowledged is in the fleet's audit log.
pub async fn assert_acknowledged_stored(fleet: &Fleet, sim: &SimHandle) -> usize {
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
    acknowledged.len()
}
