//! The dashboard in a real headless Chromium (WebDriver JSON protocol over reqwest): a job fed by
//! the simulator appears in the queue with why it waits, is taken by an in-process fake runner, and finishes.
//! Needs Debian's `chromium` and `chromium-driver`; fails (does not skip) without them.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::sim::{TOKEN, register};
use runnerhub::github::sim::{JobSpec, SimConfig, Simulator, runner_client::run_runner};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_job_queued_then_finished() {
    let app = common::spawn_app().await;
    let sim = Simulator::start(SimConfig {
        webhook_url: Some(app.url("/api/webhooks/github")),
        webhook_secret: common::SECRET.into(),
        tokens: vec![TOKEN.into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let browser = Browser::start().await;
    let session = browser.session().await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/session/{session}/url"),
            Some(json!({"url": app.url("/")})),
        )
        .await;
    browser.wait_for(&session, "#status.live").await;

    // Jobs no runner here can take keep the queue non-trivial (and show priority order).
    for (repository, labels, name) in [
        ("acme/web", vec!["self-hosted", "gpu"], "train"),
        (
            "acme/web",
            vec!["self-hosted", "gpu", "production"],
            "deploy",
        ),
    ] {
        sim.enqueue_job(JobSpec {
            repository: repository.into(),
            labels: labels.into_iter().map(str::to_owned).collect(),
            duration: Duration::from_secs(60),
            conclusion: "success".into(),
            workflow_name: "Release".into(),
            job_name: name.into(),
        })
        .unwrap();
    }
    let job = sim
        .enqueue_job(JobSpec {
            repository: "acme/api".into(),
            labels: ["self-hosted", "linux", "x64", "docker"]
                .map(str::to_owned)
                .to_vec(),
            duration: Duration::from_millis(1500),
            conclusion: "success".into(),
            workflow_name: "CI".into(),
            job_name: "build".into(),
        })
        .unwrap();
    let row = format!("#queue tr[data-job-id=\"{}\"]", job.job_id);
    let text = browser.wait_for(&session, &row).await;
    assert!(
        text.contains("acme/api") && text.contains("build"),
        "{text}"
    );
    // The queue says why it waits (DESIGN §13): this daemon's GitHub API is unreachable, so
    // launches back off; until the first failure a runner is starting.
    let why = format!("{row} td.why:not([data-wait-reason=\"\"])");
    let detail = browser.wait_for(&session, &why).await;
    let reason = browser
        .script(
            &session,
            "return document.querySelector(arguments[0]).dataset.waitReason",
            json!([why]),
        )
        .await;
    assert!(
        ["launch_backoff", "runner_starting"].contains(&reason.as_str().unwrap_or("")),
        "{reason} {detail}"
    );
    assert!(!detail.trim().is_empty(), "a sentence beside the reason");
    browser.wait_for(&session, "#webhooks li").await;
    // A daemon alone: no instance column, no per-instance lines under the pools.
    let alone = browser
        .script(
            &session,
            "return document.getElementById('runner-instance').hidden \
                && document.querySelector('#pools .pool') !== null \
                && document.querySelector('.pool-instances, #instances') === null",
            json!([]),
        )
        .await;
    assert_eq!(alone, true, "a daemon alone shows no fleet");
    let queued = browser.screenshot(&session, "dashboard-queued.png").await;

    // A fake runner takes the job; the dashboard moves it to finished.
    let (_, jit) = register(
        &sim,
        "dash-runner-1",
        &["self-hosted", "linux", "x64", "docker"],
    )
    .await;
    let runner = tokio::spawn(async move { run_runner(&jit, Some(Duration::from_secs(30))).await });
    let done = format!(
        "#jobs tr[data-job-id=\"{}\"][data-status=\"completed\"]",
        job.job_id
    );
    let text = browser.wait_for(&session, &done).await;
    assert!(
        text.contains("success") && text.contains("dash-runner-1"),
        "{text}"
    );
    assert_eq!(runner.await.unwrap().unwrap().job_id, job.job_id);
    let gone = browser
        .script(
            &session,
            "return document.querySelector(arguments[0]) === null",
            json!([row]),
        )
        .await;
    assert_eq!(gone, true, "the finished job left the queue");
    let headline = browser.wait_for(&session, "#headline").await;
    let path = browser.screenshot(&session, "dashboard.png").await;
    eprintln!(
        "screenshots: {} {}\nheadline: {headline}",
        queued.display(),
        path.display()
    );

    browser
        .call(
            reqwest::Method::DELETE,
            &format!("/session/{session}"),
            None,
        )
        .await;
    sim.shutdown().await;
    app.stop().await;
}
