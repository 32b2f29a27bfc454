//! End-to-end harness: the daemon, the GitHub simulator sending it webhooks, runner containers
//! on the real Docker engine (host network), all on loopback. Every test gets its own
//! `server.instance_id`, so reconciliation in one test never touches another test's containers.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use runnerhub::config::Config;
use runnerhub::github::sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

use super::{SECRET, TestApp, spawn_app_on_with};
use runnerhub::app::RunOptions;

pub const TEST_RUNNER_IMAGE: &str = "runnerhub-test-runner:latest";
pub const SIM_TOKEN: &str = "sim-token";

/// Builds the test runner image once per process (the script is idempotent and fast).
pub fn ensure_runner_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/runner-images/build-test-image.sh"
        );
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run build-test-image.sh");
        assert!(
            out.status.success(),
            "build-test-image.sh failed (Docker must be available):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub struct E2e {
    pub app: TestApp,
    pub sim: SimHandle,
    pub instance: String,
    /// What this instance's runner names start with (`github.runner_name_prefix`).
    pub runner_prefix: String,
}

/// `pools` is the TOML of the `[[pools]]` tables (image, network and command default to the
/// test runner on the host network).
pub async fn start(pools: &str, extra: &str) -> E2e {
    start_with(pools, extra, |_| RunOptions::default()).await
}

/// [`start`] with run options made knowing the simulator's URL (a GitHub client of its own).
pub async fn start_with(pools: &str, extra: &str, options: impl FnOnce(&str) -> RunOptions) -> E2e {
    tokio::task::spawn_blocking(ensure_runner_image)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::start(SimConfig {
        webhook_url: Some(format!("http://{addr}/api/webhooks/github")),
        webhook_secret: SECRET.into(),
        hosted_pickup_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let instance = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let text = format!(
        r#"
        [server]
        instance_id = "{instance}"
        [database]
        url = "sqlite://{db}/runnerhub.db"
        [github]
        api_url = "{api}"
        token = "{SIM_TOKEN}"
        {extra}
        {pools}
        "#,
        db = dir.path().display(),
        api = sim.url(),
    );
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let config = Config::from_toml_with_env(&text, std::path::Path::new("e2e.toml"), &env)
        .expect("e2e config");
    let runner_prefix = config.runner_name_prefix();
    let options = options(&sim.url());
    let mut app = spawn_app_on_with(listener, config, options).await;
    app.dir = Some(dir);
    E2e {
        app,
        sim,
        instance,
        runner_prefix,
    }
}

/// A pool on the test runner image, host network, small limits.
pub fn pool(name: &str, labels: &[&str], extra: &str) -> String {
    let labels: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        r#"
        [[pools]]
        name = "{name}"
        labels = [{}]
        image = "{TEST_RUNNER_IMAGE}"
        network = "host"
        cpus = 0.5
        memory = "64m"
        {extra}
        "#,
        labels.join(", ")
    )
}

impl E2e {
    /// Polls `check` every 100 ms until it returns `Some`, or fails after `secs`.
    pub async fn until<T>(
        &self,
        secs: u64,
        what: &str,
        mut check: impl AsyncFnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(value) = check(self).await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {secs} s waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn job(&self, id: u64) -> Option<Value> {
        let r = self
            .app
            .client
            .get(self.app.url(&format!("/api/jobs/{id}")))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        Some(r.json::<Value>().await.ok()?["data"].clone())
    }

    pub async fn job_status(&self, id: u64) -> Option<String> {
        self.job(id)
            .await
            .and_then(|j| j["status"].as_str().map(str::to_owned))
    }

    /// All runner records, removed ones included.
    pub async fn runners(&self) -> Vec<Value> {
        let v = self.app.get_json("/api/runners?all=true&limit=500").await;
        v["data"]["runners"].as_array().cloned().unwrap_or_default()
    }

    pub async fn pool_status(&self) -> Value {
        self.app.get_json("/api/runners/pool/status").await["data"].clone()
    }

    /// Containers of this test's instance, running or not.
    pub fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=runnerhub.instance={}", self.instance),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Stops the daemon and the simulator and removes any container left, even after failure.
    pub async fn stop(self) {
        let instance = self.instance.clone();
        self.app.stop().await;
        self.sim.shutdown().await;
        remove_instance_containers(&instance);
    }
}

pub fn remove_instance_containers(instance: &str) {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=runnerhub.instance={instance}"),
        ])
        .output()
        .expect("docker ps");
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
}
