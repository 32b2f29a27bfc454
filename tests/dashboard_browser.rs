//! The dashboard in a real headless Chromium (WebDriver JSON protocol over reqwest): a job fed by
//! the simulator appears in the queue, is taken by an in-process fake runner, and finishes.
//! Needs Debian's `chromium` and `chromium-driver`; fails (does not skip) without them.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::sim::{TOKEN, register};
use runnerhub::github::sim::{JobSpec, SimConfig, Simulator, runner_client::run_runner};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: apt-get install -y chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                return Browser {
                    http,
                    base,
                    _driver: driver,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {base}");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {value}");
        value["value"].clone()
    }

    async fn session(&self) -> String {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1440,1000"]
            }
        }}});
        let value = self
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        value["sessionId"].as_str().unwrap().to_owned()
    }

    async fn script(&self, session: &str, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `selector` matches an element; returns its text.
    async fn wait_for(&self, session: &str, selector: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        for _ in 0..300 {
            let found = self.script(session, script, json!([selector])).await;
            if let Some(text) = found.as_str() {
                return text.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self
            .script(session, "return document.body.innerText", json!([]))
            .await;
        panic!(
            "`{selector}` never appeared; page:\n{}",
            body.as_str().unwrap_or("")
        );
    }

    async fn screenshot(&self, session: &str, name: &str) -> PathBuf {
        let png = self
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/screenshot"),
                None,
            )
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("test-output");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

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
    browser.wait_for(&session, "#webhooks li").await;
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
