//! The fault suite (#14): an operator's bad day against the real daemon binary (or the app, where
//! a GitHub client of its own is needed), the real Docker engine and the GitHub simulator with
//! its fault switches; each test asserts the bound the issue asks for. The kill -9 rounds under
//! load take minutes and are a bench (`benches/kill9.rs`); a single kill -9 with a busy runner
//! is `e2e_restart.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::daemon::Daemon;
use common::e2e::{self, E2e, SIM_TOKEN, pool};
use common::{SECRET, job_payload, post_delivery, until};
use futures::StreamExt;
use runnerhub::app::RunOptions;
use runnerhub::config::{GithubConfig, Secret};
use runnerhub::github::sim::{FaultRule, Faults, JobSpec, SimConfig, SimHandle, Simulator};
use runnerhub::github::{GithubClient, RetryPolicy};
use serde_json::Value;

const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

/// A loopback address nothing listens on yet (the simulator must know the daemon's address
/// before the daemon starts).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn simulator_for(daemon: SocketAddr) -> SimHandle {
    Simulator::start(SimConfig {
        webhook_url: Some(format!("http://{daemon}/api/webhooks/github")),
        webhook_secret: SECRET.into(),
        hosted_pickup_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn get(url: String) -> Option<Value> {
    let r = reqwest::get(url).await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn job(d: &Daemon, id: u64) -> Value {
    get(d.url(&format!("/api/jobs/{id}")))
        .await
        .unwrap_or_default()["data"]
        .clone()
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A pool of one; one repository GitHub refuses registrations for (403), one it answers 404
/// for, and a signed job of `acme` (not owner/name): the other repository's jobs are all
/// served; the 404 and `acme` jobs leave the queue with their outcome (API, live feed, one log
/// line each); the 403 job waits and makes health say `degraded` with the cause while the
/// daemon stays ready; the log stays small; and once GitHub takes registrations again the job
/// runs and health is `healthy` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unusable_repositories_never_block_a_pool_of_one() {
    tokio::task::spawn_blocking(e2e::ensure_runner_image)
        .await
        .unwrap();
    let addr = free_addr();
    let sim = simulator_for(addr).await;
    sim.set_faults(Faults {
        refuse_registrations: [("acme/locked".into(), 403), ("acme/gone".into(), 404)].into(),
        ..Faults::default()
    });
    let instance = format!(
        "faults-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let config = format!(
        r#"
        [server]
        instance_id = "{instance}"
        [database]
        url = "sqlite://{{dir}}/runnerhub.db"
        [github]
        api_url = "{api}"
        token = "{SIM_TOKEN}"
        [scheduling]
        stall_after = "3s"
        {pool}
        "#,
        api = sim.url(),
        pool = pool("linux", LINUX, "max_runners = 1"),
    );
    let daemon = Daemon::start_on(&config, &[("GITHUB_WEBHOOK_SECRET", SECRET)], addr);
    let (mut feed, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?type=job"))
        .await
        .unwrap();

    // The refused repositories' jobs come first: the oldest, at the head of the queue.
    let locked = sim.enqueue_job(JobSpec::new("acme/locked", LINUX)).unwrap();
    let gone = sim.enqueue_job(JobSpec::new("acme/gone", LINUX)).unwrap();
    let mut unusable: Value =
        serde_json::from_slice(&job_payload(990_001, "queued", LINUX)).unwrap();
    unusable["repository"]["full_name"] = "acme".into();
    let body = serde_json::to_vec(&unusable).unwrap();
    let client = reqwest::Client::new();
    let r = post_delivery(
        &client,
        &daemon.url(""),
        "workflow_job",
        "unusable-1",
        &body,
    )
    .await;
    assert_eq!(r.status(), 202);
    let served: Vec<u64> = (0..3)
        .map(|_| {
            let spec = JobSpec::new("acme/api", LINUX).with_duration(Duration::from_secs(1));
            sim.enqueue_job(spec).unwrap().job_id
        })
        .collect();

    until(60, "the other repository's three jobs done", async || {
        for id in &served {
            (job(&daemon, *id).await["status"] == "completed").then_some(())?;
        }
        Some(())
    })
    .await;
    let refused = job(&daemon, 990_001).await;
    assert_eq!(refused["outcome"], "unusable_repository", "{refused}");
    let gone_job = until(30, "the 404 repository's job refused", async || {
        let j = job(&daemon, gone.job_id).await;
        j["outcome"].is_string().then_some(j)
    })
    .await;
    assert_eq!(gone_job["outcome"], "unknown_scope", "{gone_job}");
    assert!(
        gone_job["outcome_detail"]
            .as_str()
            .unwrap()
            .contains("repos/acme/gone"),
        "{gone_job}"
    );
    let listed = get(daemon.url("/api/jobs?status=pending")).await.unwrap();
    let outcomes: Vec<(u64, String)> = listed["data"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_u64().unwrap(), j["outcome"].to_string()))
        .collect();
    assert!(
        outcomes.contains(&(gone.job_id, "\"unknown_scope\"".into())),
        "{outcomes:?}"
    );

    // The 403 repository's job waits, and health says why; readiness is not affected.
    // Between its retries (a retry shows `runner_starting` for the moment of its registration).
    let waiting = until(
        20,
        "the 403 repository's job in launch backoff",
        async || {
            let j = job(&daemon, locked.job_id).await;
            (j["wait_reason"] == "launch_backoff").then_some(j)
        },
    )
    .await;
    assert_eq!(
        (waiting["status"].as_str(), &waiting["outcome"]),
        (Some("queued"), &Value::Null)
    );
    let detail = waiting["wait_detail"].as_str().unwrap();
    assert!(detail.contains("acme/locked"), "{detail}");
    let health = until(20, "health degraded by the stalled pool", async || {
        let h = get(daemon.url("/api/webhooks/health")).await?;
        (h["data"]["status"] == "degraded").then_some(h)
    })
    .await;
    let stalled = &health["data"]["stalled_pools"][0];
    assert_eq!(stalled["pool"], "linux", "{health}");
    assert!(
        stalled["reason"]
            .as_str()
            .unwrap()
            .contains("repos/acme/locked"),
        "{health}"
    );
    assert_eq!(
        stalled["jobs"], 1,
        "only the refused repository's job: {health}"
    );
    let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a stalled pool does not fail readiness"
    );
    let metrics = reqwest::get(daemon.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "runnerhub_pool_stalled", &["linux"]),
        Some(1.0)
    );
    for outcome in ["unknown_scope", "unusable_repository"] {
        let refused = metric(&metrics, "runnerhub_jobs_refused_total", &[outcome]);
        assert_eq!(refused, Some(1.0), "{outcome}");
    }

    // The live feed carried both refusals.
    let mut published = Vec::new();
    while published.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("job events with outcomes")
            .unwrap()
            .unwrap();
        let Ok(m) = serde_json::from_str::<Value>(message.to_text().unwrap()) else {
            continue;
        };
        if let Some(outcome) = m["data"]["outcome"].as_str()
            && outcome != "no_pool"
        {
            published.push((m["data"]["id"].as_u64().unwrap(), outcome.to_owned()));
        }
    }
    let mut expected = vec![
        (gone.job_id, "unknown_scope".to_owned()),
        (990_001, "unusable_repository".to_owned()),
    ];
    published.sort();
    expected.sort();
    assert_eq!(published, expected);

    // Logged once each, and the refused repository's retries back off instead of flooding.
    assert_eq!(daemon.count_logs("job refused"), 2, "{}", daemon.logs());
    assert_eq!(daemon.count_logs("pool stalled"), 1, "{}", daemon.logs());
    let locked_lines = daemon.count_logs("acme/locked");
    let gone_lines = daemon.count_logs("acme/gone");
    let total = daemon.logs().lines().count();
    println!("log lines: {total} in all, {locked_lines} of acme/locked, {gone_lines} of acme/gone");
    assert!(locked_lines <= 30, "{}", daemon.logs());
    assert!(gone_lines <= 20, "{}", daemon.logs());
    assert!(total <= 150, "{}", daemon.logs());

    // GitHub takes the registration again: the job runs, the pool is healthy again.
    sim.set_faults(Faults::default());
    until(
        60,
        "the 403 repository's job done once GitHub accepts",
        async || (job(&daemon, locked.job_id).await["status"] == "completed").then_some(()),
    )
    .await;
    until(20, "health healthy again", async || {
        let h = get(daemon.url("/api/webhooks/health")).await?;
        (h["data"]["status"] == "healthy").then_some(())
    })
    .await;
    assert!(
        !sim.jobs()
            .iter()
            .any(|j| j.id == gone.job_id && j.runner.is_some()),
        "no runner ever took the refused job"
    );
    drop(daemon);
    sim.shutdown().await;
    e2e::remove_instance_containers(&instance);
}

/// A JIT registration whose answer comes after the client's timeout (GitHub carried it out):
/// the retry gets 409 for the runner's name, and the client replaces the registration, so the
/// job runs and no registration is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_retried_after_a_client_timeout_leaves_none_behind() {
    let e: E2e = e2e::start_with(&pool("linux", LINUX, "max_runners = 1"), "", |api| {
        let github = GithubConfig {
            api_url: api.to_owned(),
            token: Some(Secret::new(SIM_TOKEN)),
            ..Default::default()
        };
        let policy = RetryPolicy {
            request_timeout: Duration::from_millis(500),
            base_delay: Duration::from_millis(100),
            ..Default::default()
        };
        let client = GithubClient::from_config(&github)
            .unwrap()
            .with_retry_policy(policy);
        RunOptions {
            github: Some(Arc::new(client)),
            ..Default::default()
        }
    })
    .await;
    e.sim.set_faults(Faults {
        jit_answer_late: FaultRule::next(1),
        jit_answer_late_ms: 1500,
        ..Faults::default()
    });
    let queued = e
        .sim
        .enqueue_job(JobSpec::new("acme/api", LINUX).with_duration(Duration::from_secs(1)))
        .unwrap();
    e.until(60, "the job done", async |e| {
        (e.job_status(queued.job_id).await? == "completed").then_some(())
    })
    .await;
    assert_eq!(
        e.sim.faults().jit_answer_late.next,
        0,
        "the late answer was given"
    );
    e.until(30, "every runner removed", async |e| {
        let runners = e.runners().await;
        runners
            .iter()
            .all(|r| r["state"] == "removed")
            .then_some(())
    })
    .await;
    let runners = e.runners().await;
    assert_eq!(runners.len(), 1, "one launch served the job: {runners:?}");
    assert!(
        e.sim.runners().is_empty(),
        "registrations left: {:?}",
        e.sim.runners()
    );
    e.stop().await;
}

/// The database removed while the daemon runs: acknowledgements stop (503) within the identity
/// check's period (a tenth of a second; allowed a second here) and for good, readiness fails,
/// and six seconds of deliveries meanwhile leave a handful of log lines, not lines per delivery
/// or per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_database_stops_acknowledgements_and_the_log_stays_small() {
    let config = r#"
        [database]
        url = "sqlite://{dir}/runnerhub.db"
        [github]
        token = "unused"
    "#;
    let daemon = Daemon::start(config, &[("GITHUB_WEBHOOK_SECRET", SECRET)], &[]);
    let client = reqwest::Client::new();
    let body = job_payload(7001, "queued", &["ubuntu-latest"]);
    let r = post_delivery(&client, &daemon.url(""), "workflow_job", "before", &body).await;
    assert_eq!(r.status(), 202);
    for file in ["runnerhub.db", "runnerhub.db-wal", "runnerhub.db-shm"] {
        let _ = std::fs::remove_file(daemon.dir.path().join(file));
    }
    let removed_at = std::time::Instant::now();
    let before = daemon.logs().lines().count();
    let mut statuses = Vec::new();
    let mut first_refusal = None;
    // Six seconds of deliveries: six sweeps of the processor, each failing alike.
    for n in 0.. {
        if removed_at.elapsed() > Duration::from_secs(6) {
            break;
        }
        let guid = format!("after-{n}");
        let r = post_delivery(&client, &daemon.url(""), "workflow_job", &guid, &body).await;
        let status = r.status().as_u16();
        if status == 503 && first_refusal.is_none() {
            first_refusal = Some(removed_at.elapsed());
        }
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_after = first_refusal.expect("503s once the database is gone");
    assert!(refused_after < Duration::from_secs(1), "{refused_after:?}");
    let first = statuses.iter().position(|s| *s == 503).unwrap();
    assert!(
        statuses[first..].iter().all(|s| *s == 503),
        "acknowledged again into a removed file: {statuses:?}"
    );
    let ready = client.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let logs = daemon.logs();
    let since_removal: Vec<&str> = logs.lines().skip(before).collect();
    println!(
        "{} log lines for {} refused deliveries:\n{}",
        since_removal.len(),
        statuses.len(),
        since_removal.join("\n")
    );
    // The first of each message, then one per 10 s, however long the flood (three lines a
    // second before the processor's were held back).
    assert!(since_removal.len() <= 16, "{logs}");
}
