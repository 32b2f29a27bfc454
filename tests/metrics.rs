//! `/metrics`: the catalog is exposed from the start, access follows the documented rule, and
//! the shipped Grafana dashboard and alert rules use only metrics a running daemon exposes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::github_stub::{Reply, Stub, fixture};
use runnerhub::config::{GithubConfig, Secret};
use runnerhub::docker::{BollardRuntime, ContainerRuntime};
use runnerhub::github::client::{GithubApi, GithubClient};
use runnerhub::github::types::RunnerScope;

fn config_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

/// Metric names in Prometheus text (`name{…} v` and `name v` lines).
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Identifiers with one of runnerhub's metric prefixes, as written in a PromQL expression.
fn names_in_expr(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let prefixed = ["runnerhub_", "webhook_", "github_", "docker_"]
            .iter()
            .any(|p| word.starts_with(p));
        if prefixed {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

/// Every `expr` and `query` string of the dashboard.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(config_dir().join("grafana-dashboard.json")).unwrap();
    let mut out = Vec::new();
    walk(&serde_json::from_str(&text).unwrap(), &mut out);
    out
}

/// The `expr: |` blocks of the alert rules.
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(config_dir().join("prometheus-alerts.yml")).unwrap();
    let mut exprs = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some((expr_indent, body)) = &mut current {
            if line.trim().is_empty() || indent > *expr_indent {
                body.push_str(line);
                body.push('\n');
                continue;
            }
            exprs.push(std::mem::take(body));
            current = None;
        }
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            current = Some((indent, rest.trim_start_matches(['|', ' ']).to_owned()));
        }
    }
    exprs.extend(current.map(|(_, body)| body));
    exprs
}

#[tokio::test]
async fn metrics_are_exposed_from_the_start_with_help_and_zeroed_series() {
    let app = common::spawn_app().await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    for line in [
        "# HELP webhook_signature_failures_total",
        "# TYPE runnerhub_queue_depth gauge",
        "runnerhub_queue_depth{pool=\"linux\",band=\"high\"} 0",
        "runnerhub_runners{pool=\"linux\",state=\"idle\"} 0",
        "runnerhub_runner_launch_failures_total{pool=\"linux\",reason=\"image_missing\"} 0",
        "runnerhub_job_wait_seconds_bucket{pool=\"linux\",le=\"+Inf\"} 0",
        "runnerhub_websocket_clients ",
        "webhook_last_received_timestamp_seconds ",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_follow_the_token_rule_and_can_have_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.server.api_tokens = vec![Secret::new("metrics-token")];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main = listener.local_addr().unwrap();
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = metrics_listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(runnerhub::app::run_with(
        config,
        listener,
        shutdown.clone(),
        runnerhub::app::RunOptions {
            metrics_listener: Some(metrics_listener),
            on_ready: Some(Box::new(move |_| {
                let _ = ready_tx.send(());
            })),
            ..Default::default()
        },
    ));
    ready_rx.await.unwrap();
    let client = reqwest::Client::new();
    // The dedicated listener is open (bind it to a private address), and serves nothing else.
    let r = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("runnerhub_build_info"));
    let r = client
        .get(format!("http://{metrics}/api/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The main listener does not expose /metrics twice.
    let r = client
        .get(format!("http://{main}/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // Without a dedicated listener, /metrics is on the main one behind the API tokens.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.server.api_tokens = vec![Secret::new("metrics-token")];
    let app = common::spawn_app_with(config).await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// Drives every part that records metrics (webhooks through the processor, a GitHub call, a
/// Docker call), then checks each name the dashboard and the alerts use against the scrape.
#[tokio::test]
async fn dashboard_and_alerts_use_only_metrics_the_daemon_exposes() {
    let app = common::spawn_app().await;
    let labels = ["self-hosted", "linux", "x64"];
    for (n, action) in ["queued", "in_progress", "completed"].iter().enumerate() {
        let body = common::job_payload(4242, action, &labels);
        app.deliver("workflow_job", &format!("metrics-{n}"), &body)
            .await;
    }
    app.client
        .post(app.url("/api/webhooks/github"))
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", "metrics-bad")
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    app.settle().await;

    let stub = Stub::start(|_, _| {
        Reply::json(
            200,
            fixture("GET_orgs_org_actions_runners.200.default.json"),
        )
        .header("x-ratelimit-remaining", "4999")
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-reset", "4102444800")
        .header("x-ratelimit-used", "1")
        .header("x-ratelimit-resource", "core")
    })
    .await;
    let github = GithubClient::from_config(&GithubConfig {
        api_url: stub.url(),
        token: Some(Secret::new("metrics-test-token")),
        ..Default::default()
    })
    .unwrap();
    github
        .list_runners(&RunnerScope::organization("octo"))
        .await
        .unwrap();
    let docker = BollardRuntime::connect("unix:///var/run/docker.sock")
        .await
        .expect("the Docker engine (tests need it)");
    docker.ping().await.unwrap();

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = r.text().await.unwrap();
    let scraped = scraped_names(&text);
    for name in runnerhub::metrics::ALL {
        let present = [*name, &format!("{name}_bucket"), &format!("{name}_count")]
            .iter()
            .any(|n| scraped.contains(*n));
        assert!(present, "catalog metric {name} is not exposed:\n{text}");
    }
    let mut used = BTreeSet::new();
    for expr in dashboard_exprs().into_iter().chain(alert_exprs()) {
        used.extend(names_in_expr(&expr));
    }
    assert!(
        used.len() > 15,
        "too few names found, parser broken? {used:?}"
    );
    let missing: Vec<_> = used.iter().filter(|n| !scraped.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "used but not exposed: {missing:?}\n{text}"
    );
    app.stop().await;
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.is_ok_and(|o| o.status.success()),
        "promtool is missing: install the Debian package `prometheus`"
    );
    for args in [
        ["check", "rules", "prometheus-alerts.yml"],
        ["test", "rules", "prometheus-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(config_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
