//! kill -9 while runners exist, then restart: nothing is left behind — not the finished
//! runner's container, not an orphaned container, not a registration at GitHub.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::e2e::{self, SIM_TOKEN, TEST_RUNNER_IMAGE};
use common::test_image::ensure_test_image;
use common::until;
use runnerhub::github::sim::{JobSpec, SimConfig, Simulator};
use serde_json::{Value, json};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(config: &std::path::Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_runnerhub"))
            .args(["serve", "--config"])
            .arg(config)
            .env("GITHUB_WEBHOOK_SECRET", common::SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start runnerhub"),
    )
}

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

/// A registration in the old naming (`runnerhub-<pool>-…`) that this database never recorded.
const FOREIGN: &str = "runnerhub-linux-foreign0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_busy_runner_and_orphans_leaves_nothing_behind_after_restart() {
    tokio::task::spawn_blocking(e2e::ensure_runner_image)
        .await
        .unwrap();
    let busybox = ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let sim = Simulator::start(SimConfig {
        webhook_url: Some(format!("{base}/api/webhooks/github")),
        webhook_secret: common::SECRET.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let instance = format!(
        "e2e-kill-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // Runner names under this prefix are ours (`github.runner_name_prefix`).
    let prefix = instance.replace("e2e-kill-", "kill-");
    let config = dir.path().join("runnerhub.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:{port}"
            instance_id = "{instance}"
            [database]
            url = "sqlite://{db}/runnerhub.db"
            [github]
            api_url = "{api}"
            token = "{SIM_TOKEN}"
            runner_name_prefix = "{prefix}"
            [[pools]]
            name = "linux"
            labels = ["self-hosted", "linux"]
            image = "{TEST_RUNNER_IMAGE}"
            network = "host"
            "#,
            db = dir.path().display(),
            api = sim.url()
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut daemon = start_daemon(&config);
    until(30, "daemon ready", async || {
        get(&client, format!("{base}/readyz")).await
    })
    .await;

    let job = sim
        .enqueue_job(
            JobSpec::new("acme/api", &["self-hosted", "linux"])
                .with_duration(Duration::from_secs(3)),
        )
        .unwrap();
    until(60, "job in progress", async || {
        let v = get(&client, format!("{base}/api/jobs/{}", job.job_id)).await?;
        (v["data"]["status"] == "in_progress").then_some(())
    })
    .await;

    // Plant what a crash can leave: a container with our labels and no record, and a
    // registration at GitHub with our naming and no record.
    let orphan = Command::new("docker")
        .args(["run", "-d", "--label", "runnerhub.managed=true", "--label"])
        .arg(format!("runnerhub.instance={instance}"))
        .args([
            "--label",
            "runnerhub.runner-id=ghost",
            "--label",
            "runnerhub.pool=linux",
            busybox,
            "sleep",
            "600",
        ])
        .output()
        .unwrap();
    assert!(
        orphan.status.success(),
        "{}",
        String::from_utf8_lossy(&orphan.stderr)
    );
    let ghost = client
        .post(format!("{}/repos/acme/api/actions/runners/generate-jitconfig", sim.url()))
        .bearer_auth(SIM_TOKEN)
        .json(&json!({"name": format!("{prefix}-linux-ghost000"), "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ghost.status(), 201);
    // An old-style name this database never recorded: another deployment's, left alone.
    let foreign = client
        .post(format!(
            "{}/repos/acme/api/actions/runners/generate-jitconfig",
            sim.url()
        ))
        .bearer_auth(SIM_TOKEN)
        .json(&json!({"name": FOREIGN, "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 201);

    daemon.0.kill().unwrap(); // SIGKILL
    daemon.0.wait().unwrap();
    // The job finishes while runnerhub is down; its `completed` delivery fails.
    until(30, "job completed at GitHub", async || {
        (sim.job(job.job_id)?.completed_at.is_some()).then_some(())
    })
    .await;

    let _daemon = start_daemon(&config);
    until(30, "daemon ready again", async || {
        get(&client, format!("{base}/readyz")).await
    })
    .await;
    let left = || {
        let containers = Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}", "--filter"])
            .arg(format!("label=runnerhub.instance={instance}"))
            .output()
            .unwrap();
        let containers = String::from_utf8_lossy(&containers.stdout)
            .trim()
            .to_owned();
        let registrations: Vec<String> = sim
            .runners()
            .into_iter()
            .map(|r| r.name)
            .filter(|name| name != FOREIGN)
            .collect();
        (containers, registrations)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (containers, registrations) = left();
        if containers.is_empty() && registrations.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let runners = get(&client, format!("{base}/api/runners?all=true")).await;
            panic!(
                "left behind after the restart: containers [{containers}], registrations \
                 {registrations:?}; runnerhub's records: {runners:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runners = get(&client, format!("{base}/api/runners?all=true"))
        .await
        .unwrap();
    let runners = runners["data"]["runners"].as_array().unwrap().clone();
    assert_eq!(runners.len(), 1, "{runners:?}");
    assert_eq!(runners[0]["state"], "removed");
    assert!(
        sim.runners().iter().any(|r| r.name == FOREIGN),
        "another deployment's registration is left alone"
    );
    drop(_daemon);
    e2e::remove_instance_containers(&instance);
    sim.shutdown().await;
}
