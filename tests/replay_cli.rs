//! `runnerhub events export` and `runnerhub replay` as a user runs them: deliveries recorded by
//! a real daemon, exported read-only, replayed under two configurations.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Duration, Utc};
use common::{job_payload, spawn_app_with, test_config};

fn runnerhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(args)
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .output()
        .unwrap()
}

fn timed_job(id: i64, action: &str, created: DateTime<Utc>, run: Option<(i64, i64)>) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&job_payload(id, action, &["self-hosted", "linux"])).unwrap();
    let job = &mut v["workflow_job"];
    job["created_at"] = created.to_rfc3339().into();
    if let Some((start, end)) = run {
        job["started_at"] = (created + Duration::seconds(start)).to_rfc3339().into();
        job["completed_at"] = (created + Duration::seconds(end)).to_rfc3339().into();
    }
    serde_json::to_vec(&v).unwrap()
}

fn write_config(dir: &Path, name: &str, database_url: &str, max_runners: u32) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"
            [database]
            url = "{database_url}"
            [[pools]]
            name = "linux"
            labels = ["self-hosted", "linux", "x64", "docker"]
            max_runners = {max_runners}
            "#
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn export_then_replay_under_two_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let database_url = config.database.url.clone();
    let app = spawn_app_with(config).await;
    let t0: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
    // Four one-minute jobs queued at once; the recorded runs are what a live daemon saw.
    for id in 1..=4 {
        let run = Some((10 * id, 10 * id + 60));
        app.deliver(
            "workflow_job",
            &format!("q-{id}"),
            &timed_job(id, "queued", t0, None),
        )
        .await;
        app.deliver(
            "workflow_job",
            &format!("c-{id}"),
            &timed_job(id, "completed", t0, run),
        )
        .await;
    }
    // A redelivery, an event replay does not model, a job never completed, a forgery.
    app.deliver(
        "workflow_job",
        "c-1",
        &timed_job(1, "completed", t0, Some((10, 70))),
    )
    .await;
    app.deliver(
        "push",
        "p-1",
        &common::webhook_fixture("push.with-new-branch.payload.json"),
    )
    .await;
    app.deliver("workflow_job", "q-9", &timed_job(9, "queued", t0, None))
        .await;
    let forged = app
        .client
        .post(app.url("/api/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "forged-1")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(timed_job(77, "queued", t0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    app.settle().await;
    app.stop().await;

    let base = write_config(dir.path(), "base.toml", &database_url, 1);
    let other = write_config(dir.path(), "other.toml", &database_url, 3);
    let exported = runnerhub(&["events", "export", "--config", &base]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let text = String::from_utf8(exported.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 8 + the push + job 9's queued; the duplicate was stored once, the forgery not exported.
    assert_eq!(lines.len(), 10, "{text}");
    assert!(lines.iter().all(|l| l["delivery"] != "forged-1"));
    for key in ["received_at", "event", "delivery", "payload"] {
        assert!(lines[0].get(key).is_some(), "{key} in {}", lines[0]);
    }
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, &text).unwrap();
    let events = events.display().to_string();

    let replayed = runnerhub(&[
        "replay",
        "--config",
        &base,
        "--events",
        &events,
        "--boot-time",
        "5s",
        "--json",
    ]);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    // One runner at a time: each job waits for the previous one plus a 5 s boot.
    assert_eq!(report["jobs"], 4);
    assert_eq!(report["served"], 4);
    assert_eq!(report["unserved"], 0);
    assert_eq!(report["unfinished"], 1);
    assert_eq!(report["wait_seconds"]["p50"], 70.0);
    assert_eq!(report["wait_seconds"]["max"], 200.0);
    assert_eq!(report["peak_runners"], 1);
    assert_eq!(
        report["runner_minutes"].as_f64().unwrap(),
        4.0 * 65.0 / 60.0
    );
    assert_eq!(report["pools"]["linux"]["served"], 4);

    let compared = runnerhub(&[
        "replay",
        "--config",
        &base,
        "--events",
        &events,
        "--boot-time",
        "5s",
        "--json",
        "--compare",
        &other,
    ]);
    let both: serde_json::Value = serde_json::from_slice(&compared.stdout).unwrap();
    assert_eq!(both["base"]["wait_seconds"]["max"], 200.0);
    assert_eq!(
        both["other"]["wait_seconds"]["max"], 70.0,
        "three runners at once"
    );
    assert_eq!(both["other"]["peak_runners"], 3);

    let text_report = runnerhub(&[
        "replay",
        "--config",
        &base,
        "--events",
        &events,
        "--compare",
        &other,
    ]);
    let shown = String::from_utf8(text_report.stdout).unwrap();
    assert!(
        shown.contains("other.toml") && shown.contains("wait p95"),
        "{shown}"
    );
    assert!(shown.contains("1 unfinished"), "{shown}");
}

#[test]
fn a_broken_events_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "c.toml", "sqlite://nowhere.db", 1);
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"received_at\":\"2026-01-01T00:00:00Z\",\"event\":\"ping\",\"delivery\":\"d\",\"payload\":{}}\n{oops\n",
    )
    .unwrap();
    let out = runnerhub(&[
        "replay",
        "--config",
        &config,
        "--events",
        &events.display().to_string(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: not JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let missing_field = dir.path().join("bad.ndjson");
    std::fs::write(
        &missing_field,
        "{\"received_at\":\"2026-01-01T00:00:00Z\",\"event\":\"workflow_job\",\"delivery\":\"d\",\"payload\":{\"action\":\"queued\"}}\n",
    )
    .unwrap();
    let out = runnerhub(&[
        "replay",
        "--config",
        &config,
        "--events",
        &missing_field.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("line 1"),
        "{stderr}"
    );
}
