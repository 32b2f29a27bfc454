//! The dashboard's history charts in a real headless Chromium: a database holding a day of pool
//! samples (with a gap, as when the daemon was down) and of started jobs shows one chart per
//! pool with every sample plotted, and the queue wait's p50 and p95 per hour; a database with no
//! history shows that there is none yet. Screenshots go to `target/test-output/`.
//! Needs Debian's `chromium` and `chromium-driver`; fails (does not skip) without them.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::browser::Browser;
use runnerhub::domain::{Job, JobStatus};
use runnerhub::history::series::{minute_start, window_start};
use runnerhub::store::{PoolSample, ProcessingBatch, Store};
use serde_json::{Value, json};

const POOLS: &str = r#"
    [[pools]]
    name = "linux"
    labels = ["self-hosted", "linux", "x64", "docker"]
    max_runners = 8
    [[pools]]
    name = "gpu"
    labels = ["self-hosted", "gpu"]
    max_runners = 2
"#;
/// Minutes without samples in the day written: the daemon was down.
const GAP_MINUTES: std::ops::Range<i64> = 600..645;
/// Hours of the day in which no job started.
const QUIET_HOURS: [i64; 3] = [2, 9, 16];

/// A day of samples: a daily rhythm on `linux`, a small steady `gpu` pool.
async fn write_samples(store: &dyn Store, since: DateTime<Utc>, now: DateTime<Utc>) -> usize {
    let last = minute_start(now) - Duration::minutes(1);
    let mut minutes = 0;
    let mut n = 0;
    while since + Duration::minutes(n) <= last {
        if !GAP_MINUTES.contains(&n) {
            let wave = ((n as f64 / 90.0).sin() * 0.5 + 0.5) * 8.0;
            let busy = wave.round() as u64;
            let samples = [
                PoolSample {
                    pool: "linux".into(),
                    queued: ((wave - 4.0).max(0.0) * 3.0).round() as u64,
                    busy,
                    idle: 8u64.saturating_sub(busy).min(2),
                    starting: 0,
                },
                PoolSample {
                    pool: "gpu".into(),
                    queued: u64::from(n % 180 < 30),
                    busy: 1,
                    idle: 1,
                    starting: 0,
                },
            ];
            store
                .record_pool_samples("history-test", since + Duration::minutes(n), &samples)
                .await
                .unwrap();
            minutes += 1;
        }
        n += 1;
    }
    minutes
}

/// Jobs that waited longer in the busy hours: in each hour but the quiet ones, ten jobs that
/// started 20 minutes past it (those still in the past).
async fn write_jobs(store: &dyn Store, since: DateTime<Utc>, now: DateTime<Utc>) {
    let mut jobs = Vec::new();
    for hour in 0..24i64 {
        let started = since + Duration::hours(hour) + Duration::minutes(20);
        if QUIET_HOURS.contains(&hour) || started > now {
            continue;
        }
        for i in 0..10i64 {
            let waited = Duration::seconds((i + 1) * (5 + hour * 3));
            let id = hour * 100 + i + 1;
            jobs.push(Job {
                id,
                run_id: id,
                run_attempt: 1,
                repository: "acme/api".into(),
                workflow_name: Some("CI".into()),
                name: format!("build {id}"),
                labels: vec!["self-hosted".into(), "linux".into()],
                priority: 0,
                pool: Some(if i % 4 == 0 { "gpu" } else { "linux" }.into()),
                status: JobStatus::Completed,
                conclusion: Some("success".into()),
                runner_id: Some(id),
                runner_name: Some(format!("runner-{id}")),
                runner_group_name: None,
                created_at: Some(started - waited),
                started_at: Some(started),
                completed_at: Some(started + Duration::minutes(3)),
                first_seen_at: started - waited,
                updated_at: started + Duration::minutes(3),
                outcome: None,
                outcome_detail: None,
            });
        }
    }
    store
        .commit_processing(&ProcessingBatch {
            jobs,
            ..ProcessingBatch::default()
        })
        .await
        .unwrap();
}

async fn history_json(app: &common::TestApp) -> Value {
    app.get_json("/api/history?hours=24").await["data"].clone()
}

/// Waits until the charts are drawn, and returns what they show, per pool and per hour.
async fn drawn(browser: &Browser, session: &str) -> Value {
    // (SVG elements have no innerText, which `wait_for` returns: their figures do.)
    browser
        .wait_for(session, "#history-pools figure.history-chart")
        .await;
    browser
        .wait_for(session, "#history-waits figure.history-chart")
        .await;
    browser
        .script(
            session,
            r##"
            const pools = [...document.querySelectorAll("#history-pools svg[data-pool]")].map((s) => ({
              name: s.dataset.pool, points: Number(s.dataset.points),
              paths: s.querySelectorAll("path.line.queued").length,
              noData: s.querySelector(".no-data") !== null,
              xLabels: [...s.querySelectorAll("text.x-label")].map((t) => t.textContent),
              yLabels: [...s.querySelectorAll("text.y-label")].map((t) => t.textContent),
            }));
            const wait = document.getElementById("wait-chart");
            const hours = [...wait.querySelectorAll("g.hour")].map((g) => ({
              hour: g.dataset.hour, jobs: Number(g.dataset.jobs), p95: Number(g.dataset.p95),
              p50: Number(g.dataset.p50), label: g.querySelector("text.bar-label").textContent,
              title: g.querySelector("title").textContent,
            }));
            return {pools, hours, waitEmpty: wait.querySelector(".no-data") !== null,
                    status: document.getElementById("history-status").textContent};
            "##,
            json!([]),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_a_day_of_history() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_pools(dir.path(), POOLS);
    let now = Utc::now();
    let since = window_start(now, 24);
    {
        let store = runnerhub::app::open_store(&config.database.url)
            .await
            .unwrap();
        let minutes = write_samples(store.as_ref(), since, now).await;
        assert!(minutes > 22 * 60 - GAP_MINUTES.count(), "{minutes}");
        write_jobs(store.as_ref(), since, now).await;
    }
    let app = common::spawn_app_with(config).await;
    let browser = Browser::start().await;
    let session = browser.session().await;
    browser.set_viewport(&session, 1440, 1500).await;
    browser.open(&session, &app.url("/")).await;
    let shown = drawn(&browser, &session).await;
    let api = history_json(&app).await;

    // One chart per configured pool, every sample plotted; the gap splits the series in two.
    let pools = shown["pools"].as_array().unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["linux", "gpu"], "{shown}");
    for (pool, served) in pools.iter().zip(api["pools"].as_array().unwrap()) {
        let in_api = served["points"].as_array().unwrap().len() as u64;
        let plotted = pool["points"].as_u64().unwrap();
        // The daemon's own sample of a minute that began in between may be one more.
        assert!(
            in_api == plotted || in_api == plotted + 1,
            "{pool} vs {in_api} points"
        );
        assert!(plotted >= 20 * 60, "a day of minutes: {pool}");
        assert_eq!(pool["paths"], 2, "two runs around the gap: {pool}");
        assert_eq!(pool["noData"], false);
        assert!(
            pool["xLabels"].as_array().unwrap().len() >= 8,
            "hour labels: {pool}"
        );
        assert_eq!(pool["yLabels"].as_array().unwrap().len(), 3);
    }
    assert_eq!(
        pools[0]["yLabels"],
        json!(["0", "10", "20"]),
        "linux peaks at 12 queued: the axis ends at the next round number with a whole half"
    );

    // Wait per hour: a bar pair per hour in which jobs started, with the API's p95.
    let hours = shown["hours"].as_array().unwrap();
    let served: Vec<&Value> = api["waits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["jobs"].as_u64().unwrap() > 0)
        .collect();
    assert!(hours.len() >= 20, "{} hours with jobs", hours.len());
    assert_eq!(hours.len(), served.len());
    for (bar, hour) in hours.iter().zip(&served) {
        assert_eq!(bar["hour"], hour["hour"]);
        assert_eq!(bar["jobs"], 10);
        assert_eq!(bar["p95"].as_f64(), hour["p95_seconds"].as_f64(), "{bar}");
        assert_eq!(bar["p50"].as_f64(), hour["p50_seconds"].as_f64(), "{bar}");
        assert!(!bar["label"].as_str().unwrap().is_empty(), "{bar}");
        let title = bar["title"].as_str().unwrap();
        assert!(
            title.contains("10 jobs started") && title.contains("linux:") && title.contains("gpu:"),
            "{title}"
        );
    }
    // Hour 0 waited (i + 1) × 5 s for i in 0..10: p50 25 s, p95 50 s (nearest rank).
    let first = &api["waits"][0];
    if first["jobs"] == 10 {
        assert_eq!(first["p50_seconds"], 25.0);
        assert_eq!(first["p95_seconds"], 50.0);
        assert_eq!(hours[0]["label"], "50s");
    }
    assert_eq!(shown["waitEmpty"], false);
    assert_eq!(shown["status"], "");

    let path = browser
        .screenshot_at(&session, "history", "dashboard-history.png")
        .await;
    eprintln!("screenshot: {}", path.display());
    browser.end(&session).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_without_history_says_so() {
    let app = common::spawn_app().await;
    let browser = Browser::start().await;
    let session = browser.session().await;
    browser.set_viewport(&session, 1200, 900).await;
    browser.open(&session, &app.url("/")).await;
    let shown = drawn(&browser, &session).await;
    let api = history_json(&app).await;
    let linux = &shown["pools"][0];
    assert_eq!(linux["name"], "linux");
    // Nothing was sampled yet, unless a minute began since the daemon started.
    if api["pools"][0]["points"].as_array().unwrap().is_empty() {
        assert_eq!(linux["noData"], true, "{shown}");
        assert_eq!(linux["points"], 0);
    } else {
        assert_eq!(linux["points"], 1, "{shown}");
    }
    assert_eq!(shown["hours"].as_array().unwrap().len(), 0);
    assert_eq!(shown["waitEmpty"], true, "{shown}");
    browser
        .script(
            &session,
            "document.getElementById('history').scrollIntoView()",
            json!([]),
        )
        .await;
    let path = browser
        .screenshot(&session, "dashboard-history-empty.png")
        .await;
    eprintln!("screenshot: {}", path.display());
    browser.end(&session).await;
    app.stop().await;
}
