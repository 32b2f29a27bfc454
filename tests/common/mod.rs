//! Shared test harness: a daemon on 127.0.0.1:0 with a temp database, signed deliveries.
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod db_cut;
pub mod e2e;
pub mod fleet;
pub mod github_stub;
mod shapes;
pub mod sim;
pub mod test_image;
pub mod ws;

pub use shapes::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runnerhub::config::Config;
use runnerhub::webhook::signature::sign;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-webhook-secret";

/// The GitHub fixtures kept in the repository (`tests/fixtures/github`, see its README).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
}

pub fn webhook_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("webhooks").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A config for tests: signed with [`SECRET`], database in `dir`, one pool for the
/// self-hosted fixtures. GitHub is a closed loopback port: launches fail fast and nothing
/// leaves the machine (tests that run jobs point `api_url` at the simulator). The scheduler
/// does try to launch for queued jobs, so `runner` and `pool` live events follow, as many as
/// the timing makes.
pub fn test_config(dir: &Path) -> Config {
    config_with_pools(
        dir,
        r#"
        [[pools]]
        name = "linux"
        labels = ["self-hosted", "linux", "x64", "docker"]
        "#,
    )
}

/// [`test_config`] without pools: jobs are recorded but nothing is launched, so the only live
/// events are the deliveries' own (`webhook`, `job`, `workflow_run`), in exact numbers.
pub fn test_config_without_pools(dir: &Path) -> Config {
    config_with_pools(dir, "")
}

/// A test config with these `[[pools]]` (TOML), database in `dir`.
pub fn config_with_pools(dir: &Path, pools: &str) -> Config {
    config_on(&format!("sqlite://{}/runnerhub.db", dir.display()), pools)
}

/// [`test_config_without_pools`] on the database at `url` (a PostgreSQL test database, say).
pub fn test_config_on_database(url: &str) -> Config {
    config_on(url, "")
}

fn config_on(database_url: &str, pools: &str) -> Config {
    let text = format!(
        r#"
        [server]
        shutdown_grace = "0s"
        [database]
        url = "{database_url}"
        [github]
        api_url = "http://127.0.0.1:9"
        token = "test-token"
        {pools}
        "#
    );
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    Config::from_toml_with_env(&text, Path::new("test.toml"), &env).expect("test config")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Keeps the temp dir alive for the app's lifetime (unless the caller owns the dir).
    pub dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let mut app = spawn_app_with(config).await;
    app.dir = Some(dir);
    app
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_on(listener, config).await
}

/// Starts the app on a listener the caller bound (when the address is needed first).
pub async fn spawn_app_on(listener: tokio::net::TcpListener, config: Config) -> TestApp {
    spawn_app_on_with(listener, config, runnerhub::app::RunOptions::default()).await
}

/// [`spawn_app_on`] with run options (an injected GitHub client, faults).
pub async fn spawn_app_on_with(
    listener: tokio::net::TcpListener,
    config: Config,
    options: runnerhub::app::RunOptions,
) -> TestApp {
    // The daemon's logs in the test output (shown for failing tests).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()))
        .with_test_writer()
        .try_init();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runnerhub::app::run_with(
        config,
        listener,
        shutdown.clone(),
        options,
    ));
    let client = reqwest::Client::new();
    // Ready when /readyz answers.
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            return TestApp {
                addr,
                client,
                shutdown,
                task,
                dir: None,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("app did not become ready");
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts `body` as GitHub would: signed, with event and delivery headers.
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        post_delivery(&self.client, &self.url(""), event, delivery, body).await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Waits until no delivery is pending processing.
    pub async fn settle(&self) {
        for _ in 0..500 {
            let health = self.get_json("/api/webhooks/health").await;
            if health["data"]["pending"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("deliveries still pending");
    }

    /// Waits until job `id` is known, and returns it.
    pub async fn wait_for_job(&self, id: i64) -> serde_json::Value {
        for _ in 0..500 {
            let r = self
                .client
                .get(self.url(&format!("/api/jobs/{id}")))
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                return r.json::<serde_json::Value>().await.unwrap()["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} never appeared");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A `workflow_job` body for job `id` with `action` and `labels`, built from the self-hosted fixture.
pub fn job_payload(id: i64, action: &str, labels: &[&str]) -> Vec<u8> {
    let file = match action {
        "queued" | "waiting" => "workflow_job.selfhosted.queued.json",
        "in_progress" => "workflow_job.selfhosted.in_progress.json",
        _ => "workflow_job.selfhosted.completed.json",
    };
    let mut v: serde_json::Value = serde_json::from_slice(&webhook_fixture(file)).unwrap();
    v["action"] = action.into();
    v["workflow_job"]["id"] = id.into();
    v["workflow_job"]["labels"] = labels.iter().map(|l| serde_json::Value::from(*l)).collect();
    serde_json::to_vec(&v).unwrap()
}

/// Posts `body` to the webhook of the daemon at `base` as GitHub would: signed, with event and
/// delivery headers.
pub async fn post_delivery(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> reqwest::Response {
    client
        .post(format!("{base}/api/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sign(SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`, or fails naming `what` after `secs`.
/// The value of a series exactly as `/metrics` prints it (`name{labels}`), if exposed.
pub async fn scraped(metrics_url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

pub async fn until<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
