//! Retention against a real daemon on a real SQLite file (#15 item 4): 1,000 signed deliveries
//! grow the file, `DELETE /api/webhooks/cleanup` deletes them once they are old enough, and the
//! file shrinks back; what is still needed (jobs not completed) stays. Also: an existing database
//! made without incremental auto-vacuum is converted at start.
//!
//! `cargo nextest run --test retention --no-capture` prints the sizes docs/operations.md quotes
//! ("Database size").

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::{SECRET, TestApp, job_payload, webhook_fixture};
use runnerhub::config::Secret;
use runnerhub::webhook::signature::sign;
use serde_json::Value;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

const TOKEN: &str = "retention-test-token";

/// Runs and jobs of the measured traffic: per run `requested` and `completed`, per job
/// `queued`, `in_progress` and `completed` (1,000 deliveries in all).
const RUNS: i64 = 200;
/// Jobs that only ever get `queued`: they must survive any cleanup.
const OPEN_JOBS: i64 = 5;
/// Forged deliveries sent alongside.
const FORGED: usize = 20;

fn run_payload(id: i64, fixture: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&webhook_fixture(fixture)).unwrap();
    v["workflow_run"]["id"] = id.into();
    serde_json::to_vec(&v).unwrap()
}

/// The measured traffic: `(event, delivery, body)`.
fn traffic() -> Vec<(&'static str, String, Vec<u8>)> {
    let labels = ["self-hosted", "linux", "x64"];
    let mut out = Vec::new();
    for n in 0..RUNS {
        let run = 9_000_000 + n;
        let job = 8_000_000 + n;
        out.push((
            "workflow_run",
            format!("run-{n}-requested"),
            run_payload(run, "workflow_run.requested.payload.json"),
        ));
        for action in ["queued", "in_progress", "completed"] {
            out.push((
                "workflow_job",
                format!("job-{n}-{action}"),
                job_payload(job, action, &labels),
            ));
        }
        out.push((
            "workflow_run",
            format!("run-{n}-completed"),
            run_payload(run, "workflow_run.completed.payload.json"),
        ));
    }
    out
}

async fn deliver_all(app: &TestApp, deliveries: Vec<(&'static str, String, Vec<u8>)>) {
    // In order per job (a job's deliveries are 1 apart), a few at a time.
    for chunk in deliveries.chunks(5) {
        let sent = chunk
            .iter()
            .map(|(event, guid, body)| app.deliver(event, guid, body));
        for r in futures::future::join_all(sent).await {
            assert!(r.status().is_success(), "{}", r.status());
        }
    }
}

fn bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The database file's size once the daemon's checkpoints have copied the WAL into it and it
/// holds still (checkpoints run every 100 ms).
async fn settled_size(db: &Path) -> u64 {
    let mut last = bytes(db);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = bytes(db);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Makes everything stored so far `days` old, from outside the daemon, as time would.
async fn age_everything(db: &Path, days: i64) {
    let old = Utc::now() - chrono::TimeDelta::days(days);
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    for sql in [
        "UPDATE webhook_events SET received_at = ?1",
        "UPDATE jobs SET updated_at = ?1, first_seen_at = ?1",
        "UPDATE workflow_runs SET updated_at = ?1, created_at = ?1",
    ] {
        sqlx::query(sql).bind(old).execute(&mut conn).await.unwrap();
    }
    sqlx::Connection::close(conn).await.unwrap();
}

/// Bytes of the live feed's table and index (SQLite's `dbstat`).
async fn live_feed_bytes(db: &Path) -> u64 {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let bytes: i64 = sqlx::query_scalar(
        "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('live_events', 'live_events_time')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    bytes as u64
}

async fn cleanup(app: &TestApp, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .delete(app.url(&format!("/api/webhooks/cleanup{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn settle(app: &TestApp) {
    for _ in 0..1000 {
        if get(app, "/api/webhooks/health").await["data"]["pending"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deliveries still pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_old_history_and_the_database_shrinks_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runnerhub.db");
    let mut config = common::test_config_without_pools(dir.path());
    config.server.api_tokens = vec![Secret::new(TOKEN.to_owned())];
    let app = common::spawn_app_with(config).await;
    let empty = settled_size(&db).await;

    let traffic = traffic();
    assert_eq!(traffic.len(), 1_000);
    deliver_all(&app, traffic).await;
    let labels = ["self-hosted", "linux", "x64"];
    let open: Vec<_> = (0..OPEN_JOBS)
        .map(|n| {
            let body = job_payload(7_000_000 + n, "queued", &labels);
            ("workflow_job", format!("open-{n}"), body)
        })
        .collect();
    deliver_all(&app, open).await;
    for n in 0..FORGED {
        let body = job_payload(6_000_000, "queued", &labels);
        let r = app
            .client
            .post(app.url("/api/webhooks/github"))
            .header("X-GitHub-Event", "workflow_job")
            .header("X-GitHub-Delivery", format!("forged-{n}"))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", sign("not-the-secret", &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_ne!(SECRET, "not-the-secret");
    settle(&app).await;
    let full = settled_size(&db).await;
    eprintln!(
        "empty database: {empty} bytes; after 1,000 deliveries (+{OPEN_JOBS} open jobs, \
         {FORGED} forged): {full} bytes (+{} KiB)",
        (full - empty) / 1024
    );
    assert!(
        full > empty + 1_000 * 1024,
        "1,000 deliveries grew it by only {}",
        full - empty
    );

    // The endpoint is behind the token, and says what is wrong with a bad value.
    assert_eq!(cleanup(&app, "?older_than=7d", None).await.0, 401);
    for bad in [
        "?older_than=soon",
        "?older_than=30",
        "?older_than=1d",
        "?days=7",
    ] {
        let (status, body) = cleanup(&app, bad, Some(TOKEN)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "BAD_REQUEST", "{bad}: {body}");
    }
    // Nothing received here is old enough yet. Runs are dated by GitHub's `updated_at`, and
    // the fixture's are years old.
    let (status, body) = cleanup(&app, "?older_than=7d", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let deleted = &body["data"]["deleted"];
    for kind in ["deliveries", "forged_deliveries", "jobs", "runners"] {
        assert_eq!(deleted[kind], 0, "{kind}: {body}");
    }
    let runs_by_github_time = deleted["runs"].as_u64().unwrap();

    age_everything(&db, 10).await;
    let (status, body) = cleanup(&app, "?older_than=7d", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let deliveries = 1_000 + OPEN_JOBS as u64;
    assert_eq!(data["deleted"]["deliveries"], deliveries, "{body}");
    assert_eq!(
        data["deleted"]["forged_deliveries"], FORGED as u64,
        "{body}"
    );
    assert_eq!(
        data["deleted"]["jobs"], RUNS as u64,
        "only completed jobs: {body}"
    );
    let runs = data["deleted"]["runs"].as_u64().unwrap();
    assert_eq!(runs + runs_by_github_time, RUNS as u64, "{body}");
    assert_eq!(
        data["deleted_count"],
        deliveries + FORGED as u64 + RUNS as u64 + runs
    );
    assert_eq!(data["complete"], true);
    assert!(data["reclaimed_bytes"].as_u64().unwrap() > 0, "{body}");

    let shrunk = settled_size(&db).await;
    // What stays is the live feed's log (`GET /ws?since=`), which the event bus bounds on its
    // own (100,000 messages or 7 days), the open jobs, and a reserve of free pages.
    let live_feed = live_feed_bytes(&db).await;
    eprintln!(
        "after the cleanup: {shrunk} bytes ({} KiB given back; the live feed's log keeps {} KiB)",
        data["reclaimed_bytes"].as_u64().unwrap() / 1024,
        live_feed / 1024
    );
    // The store keeps free pages of a tenth of those in use, for new rows to reuse.
    assert!(
        shrunk <= (empty + live_feed) * 11 / 10 + 64 * 1024,
        "the database did not shrink back: empty {empty}, full {full}, after cleanup {shrunk} \
         of which {live_feed} the live feed's log"
    );
    // The open jobs are still there, still queued; the audit log is empty.
    let pending = get(&app, "/api/jobs?status=pending").await;
    assert_eq!(pending["data"]["total"], OPEN_JOBS, "{pending}");
    assert_eq!(get(&app, "/api/webhooks/events").await["data"]["total"], 0);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("runnerhub_retention_rows_pruned_total{{kind=\"deliveries\"}} {deliveries}");
    assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");

    // And the daemon goes on taking deliveries.
    let body = job_payload(5_000_000, "queued", &labels);
    assert_eq!(
        app.deliver("workflow_job", "after-cleanup", &body)
            .await
            .status(),
        202
    );
    settle(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_database_made_without_auto_vacuum_is_converted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('x');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, 0, "SQLite's default");
    sqlx::Connection::close(conn).await.unwrap();

    let url = format!("sqlite://{}", db.display());
    let store = runnerhub::app::open_store(&url).await.unwrap();
    store.ping().await.unwrap();
    drop(store);
    let mut conn = SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, 2, "incremental");
    let kept: String = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, "x");
}
