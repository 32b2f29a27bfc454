//! Nothing acknowledged is lost: not across a restart, not across kill -9.

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use common::*;
use runnerhub::store::Store;
use runnerhub::store::sqlite::SqliteStore;
use runnerhub::webhook::intake::NewDelivery;
use runnerhub::webhook::payload_codec::Payload;

#[tokio::test]
async fn deliveries_stored_but_not_processed_are_processed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    // What a crash right after the acknowledgement leaves behind: rows in the log, unprocessed.
    let store = SqliteStore::connect(&config.database.url).await.unwrap();
    store.migrate().await.unwrap();
    let rows: Vec<NewDelivery> = (0..20)
        .map(|i| NewDelivery {
            delivery_id: format!("pre-{i}"),
            event: "workflow_job".into(),
            action: Some("queued".into()),
            repository: Some("Codertocat/Hello-World".into()),
            payload: Payload::compress(
                std::str::from_utf8(&job_payload(1000 + i, "queued", &["self-hosted", "linux"]))
                    .unwrap(),
            ),
            signature_valid: true,
            received_at: Utc::now(),
            settled: None,
        })
        .collect();
    store.insert_deliveries(&rows).await.unwrap();
    drop(store);

    let app = spawn_app_with(config).await;
    app.settle().await;
    let jobs = app.get_json("/api/jobs?status=queued&limit=100").await;
    assert_eq!(jobs["data"]["total"], 20);
    app.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_daemon(dir: &std::path::Path, database_url: &str, port: u16) -> Child {
    // Its own (empty) config: not the example in config/, whose pool needs GitHub credentials.
    let config = dir.join("runnerhub.toml");
    std::fs::write(&config, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("RUNNERHUB__DATABASE__URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runnerhub")
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("daemon did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/runnerhub.db", dir.path().display());
    kill_9_under_load_loses_nothing(dir.path(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_delivery_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_backends::TestDatabase::create().await;
    kill_9_under_load_loses_nothing(dir.path(), &db.url).await;
    db.drop_now().await;
}

/// 16 senders stream deliveries; the daemon is killed (SIGKILL) mid-stream and started again;
/// every delivery it acknowledged must be there.
async fn kill_9_under_load_loses_nothing(dir: &std::path::Path, url: &str) {
    let port = free_port();
    let mut child = start_daemon(dir, url, port);
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;

    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for worker in 0..16 {
        let (client, acked, sent) = (client.clone(), acked.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..100 {
                let id = worker * 1000 + i;
                let body = job_payload(id, "queued", &["self-hosted", "linux"]);
                let r = client
                    .post(format!("http://127.0.0.1:{port}/api/webhooks/github"))
                    .header("X-GitHub-Event", "workflow_job")
                    .header("X-GitHub-Delivery", format!("kill-{id}"))
                    .header("Content-Type", "application/json")
                    .header(
                        "X-Hub-Signature-256",
                        runnerhub::webhook::signature::sign(SECRET, &body),
                    )
                    .body(body)
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    _ => return, // the daemon is gone
                }
            }
        }));
    }
    // Kill in the middle of the stream.
    while sent.load(Ordering::Relaxed) < 400 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} acknowledged before the kill",
        acked.len()
    );

    let mut child = start_daemon(dir, url, port);
    wait_ready(&client, port).await;
    let mut missing = acked.clone();
    for _ in 0..500 {
        let mut still = Vec::new();
        for id in &missing {
            let r = client
                .get(format!("http://127.0.0.1:{port}/api/jobs/{id}"))
                .send()
                .await
                .unwrap();
            if !r.status().is_success() {
                still.push(*id);
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after kill -9: {missing:?}"
    );
}
