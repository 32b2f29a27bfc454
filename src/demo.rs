//! `runnerhub demo`: the whole flow on one machine without a GitHub account.
//!
//! Starts the GitHub simulator and the daemon in one process, both on loopback, with two pools
//! whose runners are the `FROM scratch` test runner image on the local Docker engine (host
//! network, so the containers reach the simulator on 127.0.0.1). It enqueues a realistic mix of
//! jobs (several repositories, priorities, a GitHub-hosted job), then a new job every few
//! seconds, until Ctrl-C. Watch the log, the dashboard, or `docker ps`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::github::sim::{SimConfig, Simulator, demo_job_mix};

/// Image the demo's pools run (built by `runner-images/build-test-image.sh`).
pub const DEMO_IMAGE: &str = "runnerhub-test-runner:latest";
const DEMO_TOKEN: &str = "sim-token";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address of the daemon (webhook, API, dashboard).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the GitHub simulator.
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub sim_listen: SocketAddr,
    /// SQLite database of the demo (kept between runs; delete it to start afresh).
    #[arg(long, default_value = "runnerhub-demo.db")]
    pub database: PathBuf,
    /// Seconds between new jobs after the first mix (0: only the first mix).
    #[arg(long, default_value_t = 8)]
    pub every: u64,
}

/// The demo's configuration: two pools on the test runner image, host network.
pub fn demo_config(args: &DemoArgs, api_url: &str, secret: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"
        [server]
        listen = "{listen}"
        instance_id = "runnerhub-demo"
        [database]
        url = "sqlite://{db}"
        [github]
        api_url = "{api_url}"
        token = "{DEMO_TOKEN}"
        webhook_secrets = ["{secret}"]
        [limits]
        max_runners = 4
        [[pools]]
        name = "linux"
        labels = ["self-hosted", "linux", "x64", "production", "large"]
        image = "{DEMO_IMAGE}"
        network = "host"
        cpus = 0.5
        memory = "128m"
        max_runners = 3
        [[pools]]
        name = "gpu"
        labels = ["self-hosted", "gpu"]
        image = "{DEMO_IMAGE}"
        network = "host"
        cpus = 0.5
        memory = "128m"
        max_runners = 1
        "#,
        listen = args.listen,
        db = args.database.display(),
    );
    Ok(Config::from_toml_with_env(&text, Path::new("demo"), &[])?)
}

/// Builds the test runner image when it is missing and the build script is at hand.
fn ensure_image() -> anyhow::Result<()> {
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", DEMO_IMAGE])
        .output()
        .context("cannot run the docker CLI; is Docker installed?")?
        .status
        .success();
    if present {
        return Ok(());
    }
    let script = Path::new("runner-images/build-test-image.sh");
    anyhow::ensure!(
        script.exists(),
        "image {DEMO_IMAGE} is missing: run runner-images/build-test-image.sh from the repository"
    );
    tracing::info!("building {DEMO_IMAGE} (first run only)");
    let status = std::process::Command::new("bash").arg(script).status()?;
    anyhow::ensure!(status.success(), "runner-images/build-test-image.sh failed");
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(ensure_image).await??;
    let secret = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let sim = Simulator::start(SimConfig {
        listen: args.sim_listen,
        webhook_url: Some(format!("http://{}/api/webhooks/github", args.listen)),
        webhook_secret: secret.clone(),
        ..SimConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the GitHub simulator on {}", args.sim_listen))?;
    let config = demo_config(&args, &sim.url(), &secret)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --listen)", args.listen))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let daemon = tokio::spawn(crate::app::run(config, listener, shutdown.clone()));

    println!("\nrunnerhub demo");
    println!("  dashboard   http://{}/", args.listen);
    println!(
        "  API         http://{}/api/jobs   http://{}/api/runners/pool/status",
        args.listen, args.listen
    );
    println!("  simulator   {} (GitHub stand-in)", sim.url());
    println!("  containers  docker ps --filter label=runnerhub.instance=runnerhub-demo");
    println!("  Ctrl-C stops the demo and removes its containers.\n");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mix = demo_job_mix();
    for spec in &mix {
        sim.enqueue_job(spec.clone())?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick(), if args.every > 0 => {
                let spec = mix[rand::thread_rng().gen_range(0..mix.len())].clone();
                sim.enqueue_job(spec)?;
            }
        }
    }
    daemon.await??;
    sim.shutdown().await;
    remove_demo_containers();
    println!("demo stopped");
    Ok(())
}

/// The daemon leaves runner containers for the next start to reconcile; the demo is over, so
/// it cleans up after itself.
fn remove_demo_containers() {
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=runnerhub.instance=runnerhub-demo",
        ])
        .output();
    if let Ok(out) = listed {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
    }
}
