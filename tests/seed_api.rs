//! The original RunnerHub's API reference (`shared/seeds/004_6813c3b4d0718aa2.txt`), command by
//! command: its `curl` lines of the API reference, troubleshooting, debug and manual-testing
//! sections work as written, and every response field it documents is there by its name and
//! with its meaning. On SQLite and on PostgreSQL.

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use chrono::{DateTime, Utc};
use common::*;
use runnerhub::config::Config;
use serde_json::{Value, json};

/// The seed's "Manual Testing" body, byte for byte in meaning.
const SEED_JOB: &str = r#"{
    "action": "queued",
    "workflow_job": {
      "id": 12345,
      "run_id": 67890,
      "name": "test-job",
      "status": "queued",
      "labels": ["ubuntu-latest"],
      "head_sha": "abc123",
      "html_url": "https://github.com/test/repo/actions/runs/67890/job/12345"
    },
    "repository": {
      "full_name": "test/repo"
    }
  }"#;

/// The seed's commands have no signature: the daemon under test accepts unsigned deliveries
/// (`allow_unsigned`, no secret), as the seed's own setup without a secret did.
fn unsigned(mut config: Config) -> Config {
    config.github.webhook_secrets.clear();
    config.github.allow_unsigned = true;
    config
}

/// `curl -X POST …/api/webhooks/github -H "Content-Type: application/json" -H "X-GitHub-Event: …"
/// -H "X-GitHub-Delivery: …" -d '…'`
async fn seed_post(app: &TestApp, event: &str, delivery: &str, body: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/api/webhooks/github"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {v}"))
}

async fn walk_through_the_seed(app: TestApp) {
    // Manual Testing: the seed's workflow_job delivery.
    let (status, body) = seed_post(&app, "workflow_job", "test-delivery-123", SEED_JOB).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let (status, again) = seed_post(&app, "workflow_job", "test-delivery-123", SEED_JOB).await;
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("duplicate")),
        "{again}"
    );
    assert!(
        again["message"].as_str().unwrap().contains("already"),
        "{again}"
    );
    // A second job that starts: not pending.
    let queued = String::from_utf8(job_payload(222, "queued", &["self-hosted"])).unwrap();
    let started = String::from_utf8(job_payload(222, "in_progress", &["self-hosted"])).unwrap();
    assert_eq!(
        seed_post(&app, "workflow_job", "d-222-q", &queued).await.0,
        202
    );
    assert_eq!(
        seed_post(&app, "workflow_job", "d-222-s", &started).await.0,
        202
    );

    // Debug Commands: `curl -X POST …/api/webhooks/test` (no body), and Health Checks' one
    // with `-d '{"eventType": "ping", "repository": "test/repo"}'`.
    let r = app
        .client
        .post(app.url("/api/webhooks/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = app
        .client
        .post(app.url("/api/webhooks/test"))
        .header("Content-Type", "application/json")
        .body(r#"{"eventType": "ping", "repository": "test/repo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let test: Value = r.json().await.unwrap();
    assert_eq!(test["data"]["repository"], "test/repo", "{test}");
    let r = app
        .client
        .post(app.url("/api/webhooks/test"))
        .header("Content-Type", "application/json")
        .body(r#"{"eventType": "push"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "only a ping can be tested");
    app.settle().await;
    let (total, jobs, pings) = (5, 3, 2);

    // Troubleshooting: `curl …/api/jobs?status=pending` is the queue (queued or waiting).
    let pending = app.get_json("/api/jobs?status=pending").await;
    assert_eq!(pending["data"]["total"], 1, "{pending}");
    let job = &pending["data"]["jobs"][0];
    assert_eq!(
        (&job["id"], &job["status"]),
        (&json!(12345), &json!("queued")),
        "{job}"
    );
    let pool = app.get_json("/api/runners/pool/status").await;
    assert!(pool["data"]["pools"].is_array(), "{pool}");

    // `curl "…/api/webhooks/events?limit=10"`
    let events = app.get_json("/api/webhooks/events?limit=10").await;
    let data = &events["data"];
    assert_eq!(
        (&data["total"], &data["limit"], &data["offset"]),
        (&json!(total), &json!(10), &json!(0))
    );
    let list = data["events"].as_array().unwrap();
    assert_eq!(list.len(), total);
    let seed_event = list
        .iter()
        .find(|e| e["id"] == "test-delivery-123")
        .expect("by delivery id");
    assert_eq!(seed_event["repository"], "test/repo");
    assert_eq!(seed_event["event"], "workflow_job");
    assert_eq!(seed_event["action"], "queued");
    assert_eq!(seed_event["processed"], true);
    let received = time(&seed_event["timestamp"]);
    assert_eq!(received, time(&seed_event["received_at"]));
    assert!((Utc::now() - received).num_seconds() < 120, "{seed_event}");
    assert_eq!(
        app.get_json("/api/webhooks/events").await["data"]["limit"],
        100,
        "default"
    );

    // An event by its delivery id, as the seed's `id` is; by its row id too.
    let one = app.get_json("/api/webhooks/events/test-delivery-123").await;
    assert_eq!(one["data"]["id"], "test-delivery-123");
    assert_eq!(one["data"]["payload"]["workflow_job"]["id"], 12345);
    let row = seed_event["row_id"].as_i64().unwrap();
    let by_row = app.get_json(&format!("/api/webhooks/events/{row}")).await;
    assert_eq!(by_row["data"]["id"], "test-delivery-123");
    let r = app
        .client
        .get(app.url("/api/webhooks/events/no-such-guid"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // `curl "…/api/webhooks/statistics?hours=1"`
    let stats = app.get_json("/api/webhooks/statistics?hours=1").await;
    let data = &stats["data"];
    assert_eq!(data["timeWindow"], "1 hours", "{stats}");
    assert_eq!(
        data["summary"],
        json!({"totalEvents": total, "processedEvents": total, "pendingEvents": 0})
    );
    assert_eq!(
        data["byEvent"],
        json!([
            {"event": "workflow_job", "total": jobs, "processed": jobs, "pending": 0},
            {"event": "ping", "total": pings, "processed": pings, "pending": 0},
        ]),
        "the busiest first"
    );
    let default = app.get_json("/api/webhooks/statistics").await;
    assert_eq!(default["data"]["timeWindow"], "24 hours");

    // `curl …/api/webhooks/health`
    let health = app.get_json("/api/webhooks/health").await;
    let h = &health["data"];
    assert_eq!(h["status"], "healthy", "{health}");
    assert_eq!(h["recentEvents"], total, "deliveries of the last hour");
    let newest = list.iter().map(|e| time(&e["timestamp"])).max().unwrap();
    assert_eq!(time(&h["lastEventTime"]), newest);
    assert_eq!(h["hourlyStats"], data["byEvent"], "the last hour's byEvent");
    app.stop().await;
}

#[tokio::test]
async fn the_seeds_commands_work_as_written_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(unsigned(test_config(dir.path()))).await;
    walk_through_the_seed(app).await;
}

#[tokio::test]
async fn the_seeds_commands_work_as_written_on_postgresql() {
    let db = store_backends::TestDatabase::create().await;
    let app = spawn_app_with(unsigned(test_config_on_database(&db.url))).await;
    walk_through_the_seed(app).await;
    db.drop_now().await;
}

/// With a secret configured, the seed's unsigned command is refused (its reference: the
/// signature is "required if secret configured"), with a message, not a 500.
#[tokio::test]
async fn an_unsigned_delivery_is_refused_when_a_secret_is_set() {
    let app = spawn_app().await;
    let (status, body) = seed_post(&app, "workflow_job", "test-delivery-123", SEED_JOB).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["success"], false);
    assert!(body["error"]["message"].is_string(), "{body}");
    app.stop().await;
}
