//! The binary as an operator meets it: `config check` validates and redacts, and a full run at
//! debug level, in text and JSON, never writes a configured secret (or a presented wrong token)
//! to its logs, while carrying request ids.

mod common;

use std::process::Command;
use std::time::Duration;

use common::daemon::Daemon;
use runnerhub::webhook::signature::sign;

const WEBHOOK_SECRET: &str = "whsec-in-file-7c1d9a0e";
const WEBHOOK_SECRET_ENV: &str = "whsec-from-env-52b8e0f3";
const API_TOKEN: &str = "api-token-3f9e61c2d8";
const GITHUB_TOKEN_FILE: &str = "ghp_fromfile0123456789abcdef";
const GITHUB_TOKEN_ENV: &str = "ghp_fromenv9876543210fedcba";
/// Not configured, but presented by a client: must not be echoed either.
const WRONG_TOKEN: &str = "wrong-token-a41c77e9";
const WRONG_SECRET: &str = "not-the-webhook-secret-5d2";

const SECRETS: &[&str] = &[
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_ENV,
    API_TOKEN,
    GITHUB_TOKEN_FILE,
    GITHUB_TOKEN_ENV,
    WRONG_TOKEN,
    WRONG_SECRET,
];

fn config() -> String {
    format!(
        r#"
[server]
shutdown_grace = "0s"
api_tokens = ["{API_TOKEN}"]
[database]
url = "sqlite://{{dir}}/runnerhub.db"
[github]
webhook_secrets = ["{WEBHOOK_SECRET}"]
token = "{GITHUB_TOKEN_FILE}"
[[pools]]
name = "linux"
labels = ["self-hosted", "linux", "x64", "docker"]
"#
    )
}

const ENV: &[(&str, &str)] = &[
    ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET_ENV),
    ("GITHUB_TOKEN", GITHUB_TOKEN_ENV),
    ("RUST_LOG", "debug"),
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} contains `{secret}`:\n{text}"
        );
    }
}

#[test]
fn config_check_validates_and_prints_the_effective_config_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runnerhub.toml");
    std::fs::write(&path, config().replace("{dir}", "/var/lib/runnerhub")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["config", "check", "--config"])
        .arg(&path)
        .env_clear()
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    // Effective: defaults filled in, the environment's secret added, every secret redacted.
    assert!(stdout.contains("shutdown_grace = \"0s\""), "{stdout}");
    assert!(
        stdout.contains("webhook_secrets = [\n    \"***\",\n    \"***\",\n]"),
        "{stdout}"
    );
    assert!(stdout.contains("token = \"***\""), "{stdout}");
    assert!(
        stdout.contains("max_runners = 10"),
        "defaults shown: {stdout}"
    );
    assert_no_secret("config check output", &stdout);

    // A bad file: non-zero exit, the key named, nothing printed as effective.
    std::fs::write(
        &path,
        config().replace("name = \"linux\"", "name = \"Linux!\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["config", "check", "--config"])
        .arg(&path)
        .env_clear()
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pools[0].name"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_no_secret("config check error", &stderr);
}

async fn full_run(format: &str) -> String {
    let mut d = Daemon::start(&config(), ENV, &["--log-format", format]);
    let client = reqwest::Client::new();
    let body = common::job_payload(5150, "queued", &["self-hosted", "linux"]);
    let post = |guid: &'static str, secret: &'static str| {
        client
            .post(d.url("/api/webhooks/github"))
            .header("x-github-event", "workflow_job")
            .header("x-github-delivery", guid)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(secret, &body))
            .body(body.clone())
            .send()
    };
    assert_eq!(post("logs-1", WEBHOOK_SECRET).await.unwrap().status(), 202);
    assert_eq!(
        post("logs-2", WEBHOOK_SECRET_ENV).await.unwrap().status(),
        202
    );
    assert_eq!(post("logs-3", WRONG_SECRET).await.unwrap().status(), 401);
    let api = |path: &str, token: &str| client.get(d.url(path)).bearer_auth(token).send();
    assert_eq!(api("/api/jobs", WRONG_TOKEN).await.unwrap().status(), 401);
    assert_eq!(api("/api/jobs", API_TOKEN).await.unwrap().status(), 200);
    // A token in a query string (as WebSocket clients send it) must not reach the log either.
    let query = format!("/api/jobs?token={API_TOKEN}");
    api(&query, API_TOKEN).await.unwrap();
    assert_eq!(api("/metrics", API_TOKEN).await.unwrap().status(), 200);
    let r = client
        .post(d.url("/api/webhooks/test"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    d.signal("HUP");
    d.wait_for_log("configuration reloaded", Duration::from_secs(10));
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", d.logs());
    d.logs()
}

#[tokio::test]
async fn no_secret_reaches_the_logs_in_text_or_json() {
    for format in ["text", "json"] {
        let logs = full_run(format).await;
        assert_no_secret(&format!("{format} log"), &logs);
        // The run was really logged, at debug level, with request ids.
        assert!(logs.contains("webhook signature refused"), "{logs}");
        assert!(logs.contains("request served"), "{logs}");
        assert!(logs.contains("request_id"), "{logs}");
        assert!(
            !logs.contains('\u{1b}'),
            "no colour codes when not on a terminal"
        );
        if format == "json" {
            for line in logs.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
            }
        }
    }
}

#[tokio::test]
async fn under_journald_lines_carry_a_syslog_priority_and_no_timestamp() {
    let env = [
        ("JOURNAL_STREAM", "8:12345"),
        ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let mut d = Daemon::start(&config(), &env, &[]);
    let r = reqwest::Client::new()
        .post(d.url("/api/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "journal-1")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(15)).expect("exits");
    let logs = d.logs();
    let listening = logs
        .lines()
        .find(|l| l.contains("runnerhub listening"))
        .unwrap();
    assert!(listening.starts_with("<6> INFO"), "{listening}");
    let refused = logs
        .lines()
        .find(|l| l.contains("signature refused"))
        .unwrap();
    assert!(refused.starts_with("<4> WARN"), "{refused}");
    assert_no_secret("journal log", &logs);
}
