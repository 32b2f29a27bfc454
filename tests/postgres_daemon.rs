//! The daemon on PostgreSQL, end to end: signed deliveries in, jobs and the audit log out
//! through the API, duplicates ignored, and deliveries left unprocessed by a crash processed
//! by the next start. (The store methods one by one are in `store_contract.rs`.)

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use chrono::Utc;
use common::*;
use runnerhub::webhook::intake::NewDelivery;
use runnerhub::webhook::payload_codec::Payload;

const LABELS: &[&str] = &["self-hosted", "linux"];

#[tokio::test]
async fn the_daemon_keeps_its_state_in_postgresql_across_a_restart() {
    let db = store_backends::TestDatabase::create().await;
    let config = test_config_on_database(&db.url);

    let app = spawn_app_with(config.clone()).await;
    // Out of order, with a redelivery: the job still ends completed, recorded once.
    for (delivery, action) in [
        ("pg-1", "queued"),
        ("pg-3", "completed"),
        ("pg-2", "in_progress"),
        ("pg-3", "completed"),
    ] {
        let response = app
            .deliver("workflow_job", delivery, &job_payload(7001, action, LABELS))
            .await;
        assert!(
            response.status().is_success(),
            "{delivery} {action}: {}",
            response.status()
        );
    }
    let run = webhook_fixture("workflow_run.completed.payload.json");
    let response = app.deliver("workflow_run", "pg-4", &run).await;
    assert!(response.status().is_success(), "{}", response.status());
    app.settle().await;

    let job = app.wait_for_job(7001).await;
    assert_eq!(job["status"], "completed", "{job}");
    let events = app.get_json("/api/webhooks/events?limit=50").await;
    assert_eq!(events["data"]["total"], 4, "{events}");
    let stats = app.get_json("/api/webhooks/statistics?hours=1").await;
    assert_eq!(stats["data"]["statistics"]["total"], 4, "{stats}");
    assert_eq!(
        stats["data"]["statistics"]["by_event"]["workflow_job"], 3,
        "{stats}"
    );
    app.stop().await;

    // What kill -9 right after an acknowledgement leaves: a stored delivery, not processed.
    let store = runnerhub::app::open_store(&db.url).await.unwrap();
    let queued = job_payload(7002, "queued", LABELS);
    store
        .insert_deliveries(&[NewDelivery {
            delivery_id: "pg-5".into(),
            event: "workflow_job".into(),
            action: Some("queued".into()),
            repository: Some("Codertocat/Hello-World".into()),
            payload: Payload::compress(std::str::from_utf8(&queued).unwrap()),
            signature_valid: true,
            received_at: Utc::now(),
            settled: None,
        }])
        .await
        .unwrap();
    drop(store);

    let app = spawn_app_with(config).await;
    app.settle().await;
    assert_eq!(app.wait_for_job(7002).await["status"], "queued");
    assert_eq!(app.wait_for_job(7001).await["status"], "completed");
    let jobs = app.get_json("/api/jobs?limit=10").await;
    assert_eq!(jobs["data"]["total"], 2, "{jobs}");
    app.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_database_that_does_not_wait_for_the_disk_on_commit_is_refused() {
    use sqlx::Connection;
    let db = store_backends::TestDatabase::create().await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let error = runnerhub::app::open_store(&db.url).await.err().unwrap();
    let error = format!("{error:#}");
    assert!(error.contains("synchronous_commit is off"), "{error}");
    db.drop_now().await;
}
