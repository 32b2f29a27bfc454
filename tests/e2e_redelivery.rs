//! End to end (DESIGN §12): a hook installed with `runnerhub hooks install`, the daemon
//! stopped, push, pull_request, workflow_run and workflow_job deliveries failing at GitHub
//! (the simulator), the daemon started again: every one is asked for once, redelivered, and in
//! the audit log; passes after that, and another restart, ask for nothing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::sim::{SECRET, TOKEN};
use common::{TestApp, spawn_app_on};
use runnerhub::config::Config;
use runnerhub::github::sim::{DeliveryRecord, JobSpec, SimConfig, SimHandle, Simulator};

fn config_text(dir: &Path, sim: &SimHandle, addr: SocketAddr) -> String {
    format!(
        "[server]\nshutdown_grace = \"0s\"\npublic_url = \"http://{addr}\"\n\
         [database]\nurl = \"sqlite://{}/runnerhub.db\"\n\
         [github]\napi_url = \"{}\"\ntoken = \"{TOKEN}\"\nredeliver_interval = \"1s\"\n",
        dir.display(),
        sim.url()
    )
}

async fn start_daemon(text: &str, addr: SocketAddr) -> TestApp {
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let config = Config::from_toml_with_env(text, Path::new("test.toml"), &env).unwrap();
    // The same address again (GitHub has the hook's URL): retry while the old socket closes.
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return spawn_app_on(listener, config).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot listen on {addr} again");
}

/// The delivery GUIDs in the daemon's audit log.
async fn logged_guids(app: &TestApp) -> HashSet<String> {
    let events = app.get_json("/api/webhooks/events?limit=500").await;
    events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How many times GitHub (the simulator) redelivered each GUID.
fn redeliveries(sim: &SimHandle) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in sim.deliveries().iter().filter(|d| d.redelivery) {
        *counts.entry(d.guid.clone()).or_default() += 1;
    }
    counts
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_missed_while_down_are_redelivered_once_for_every_event() {
    let sim = Simulator::start(SimConfig {
        webhook_secret: SECRET.into(),
        tokens: vec![TOKEN.into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let text = config_text(dir.path(), &sim, addr);
    let config_path = dir.path().join("runnerhub.toml");
    std::fs::write(&config_path, &text).unwrap();

    let install = tokio::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["hooks", "install", "--repo", "acme/api", "--config"])
        .arg(&config_path)
        .env_clear()
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let hook_id = sim.hooks()[0].id;

    // Up: a push is delivered and logged.
    let app = start_daemon(&text, addr).await;
    sim.send_push("acme/api", "main");
    let delivered = wait_for(Duration::from_secs(10), || {
        let d = sim.deliveries();
        d.iter()
            .any(|d| d.status_code == 202 || d.status_code == 200)
    })
    .await;
    assert!(
        delivered,
        "the first push was not delivered: {:?}",
        sim.deliveries()
    );
    app.stop().await;

    // Down: every delivery fails (nothing listens on the hook's URL).
    sim.send_push("acme/api", "feature");
    sim.send_pull_request("acme/api", "feature");
    sim.enqueue_job(JobSpec::new("acme/api", &["self-hosted", "linux"]))
        .unwrap();
    let failed = |sim: &SimHandle| -> Vec<DeliveryRecord> {
        sim.deliveries()
            .into_iter()
            .filter(|d| d.hook_id == hook_id && !d.redelivery && d.status_code == 0)
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(15), || failed(&sim).len() == 4).await,
        "four deliveries should have failed: {:?}",
        sim.deliveries()
    );
    let missed: Vec<DeliveryRecord> = failed(&sim);
    let events: HashSet<&str> = missed.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(
        events,
        HashSet::from(["push", "pull_request", "workflow_run", "workflow_job"])
    );

    // Up again: redelivery finds them, GitHub redelivers, the audit log has them.
    let app = start_daemon(&text, addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let logged = logged_guids(&app).await;
        if missed.iter().all(|d| logged.contains(&d.guid)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not redelivered: {:?}; redeliveries {:?}",
            missed
                .iter()
                .filter(|d| !logged.contains(&d.guid))
                .map(|d| &d.event)
                .collect::<Vec<_>>(),
            redeliveries(&sim)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The next passes see them in the log (recovered) and ask for nothing more; the
    // delivered push is never asked for.
    let events = ["push", "pull_request", "workflow_run", "workflow_job"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let recovered = |event: &str| {
            metric(
                &metrics,
                &format!("runnerhub_redelivery_recovered_total{{event=\"{event}\"}}"),
            )
        };
        if events.iter().all(|e| recovered(e) == 1.0) {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all counted as recovered:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for event in events {
        assert_eq!(
            metric(
                &metrics,
                &format!("runnerhub_redelivery_requests_total{{event=\"{event}\"}}")
            ),
            1.0,
            "{event} asks:\n{metrics}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = redeliveries(&sim);
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(asked.values().all(|n| *n == 1), "asked twice: {asked:?}");
    for d in &missed {
        assert_eq!(asked.get(&d.guid), Some(&1), "{} not asked once", d.event);
    }
    app.settle().await;
    app.stop().await;

    // A restart asks for nothing: the asks are in the database, the deliveries in the log.
    let app = start_daemon(&text, addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(redeliveries(&sim), asked, "asked again after a restart");
    app.stop().await;
    sim.shutdown().await;
}

async fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A hook whose URL the daemon never answers 2xx on (a wrong path): each failed redelivery is
/// asked again after a doubling wait, five asks in all, then given up, with a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_is_asked_five_times_then_given_up() {
    let sim = Simulator::start(SimConfig {
        webhook_secret: SECRET.into(),
        tokens: vec![TOKEN.into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let text = config_text(dir.path(), &sim, addr);
    let config_path = dir.path().join("runnerhub.toml");
    std::fs::write(&config_path, &text).unwrap();
    let wrong = format!("http://{addr}/not-the-webhook");
    let install = tokio::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args([
            "hooks", "install", "--repo", "acme/api", "--url", &wrong, "--config",
        ])
        .arg(&config_path)
        .env_clear()
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let app = start_daemon(&text, addr).await;
    sim.send_push("acme/api", "main");
    let given_up = |text: &str| metric(text, "runnerhub_redelivery_given_up_total{event=\"push\"}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if given_up(&metrics) >= 1.0 {
            assert_eq!(
                metric(
                    &metrics,
                    "runnerhub_redelivery_requests_total{event=\"push\"}"
                ),
                5.0,
                "five asks"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not given up; redeliveries {:?}",
            redeliveries(&sim)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let asked = redeliveries(&sim);
    assert_eq!(
        asked.values().copied().collect::<Vec<_>>(),
        vec![5],
        "{asked:?}"
    );
    // Asks were spaced by the doubling wait (1 s, 2 s, 4 s, 8 s): 15 s from the first to the
    // fifth (each redelivery's own latency aside, hence the slack).
    let times: Vec<_> = sim
        .deliveries()
        .iter()
        .filter(|d| d.redelivery)
        .map(|d| d.delivered_at)
        .collect();
    let span = (times[4] - times[0]).num_milliseconds();
    assert!(span >= 13_000, "five asks within {span} ms");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(redeliveries(&sim), asked, "nothing asked after giving up");
    app.stop().await;
    sim.shutdown().await;
}
