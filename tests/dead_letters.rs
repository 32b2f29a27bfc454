//! The dead-letter list over HTTP: `GET /api/webhooks/events?outcome=failed` lists deliveries
//! whose processing failed after every attempt, `POST /api/webhooks/events/{id}/retry` (GUID or
//! row id) queues one again and the processor takes it; anything else is a clear 4xx.

mod common;

use std::time::Duration;

use common::{spawn_app_with, test_config_without_pools};
use runnerhub::store::{DeliveryOutcome, ProcessedDelivery, ProcessingBatch};
use runnerhub::webhook::intake::NewDelivery;
use runnerhub::webhook::payload_codec::Payload;
use serde_json::Value;

#[tokio::test]
async fn dead_letters_are_listed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config_without_pools(dir.path());
    // A delivery given up before this start (say, while the database kept failing).
    let store = runnerhub::app::open_store(&config.database.url)
        .await
        .unwrap();
    let body =
        String::from_utf8(common::webhook_fixture("push.with-new-branch.payload.json")).unwrap();
    let outcomes = store
        .insert_deliveries(&[NewDelivery {
            delivery_id: "dead-letter-1".into(),
            event: "push".into(),
            action: None,
            repository: Some("Codertocat/Hello-World".into()),
            payload: Payload::compress(&body),
            signature_valid: true,
            received_at: chrono::Utc::now(),
            settled: None,
        }])
        .await
        .unwrap();
    let row_id = match outcomes[0] {
        runnerhub::store::InsertOutcome::Stored { id } => id,
        _ => unreachable!(),
    };
    store
        .commit_processing(&ProcessingBatch {
            deliveries: vec![ProcessedDelivery {
                id: row_id,
                outcome: DeliveryOutcome::Failed {
                    error: "database unavailable".into(),
                    retry_at: None,
                },
                attempts: 5,
                at: chrono::Utc::now(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    drop(store);

    let app = spawn_app_with(config).await;
    let failed = app.get_json("/api/webhooks/events?outcome=failed").await;
    let events = failed["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{failed}");
    assert_eq!(events[0]["id"], "dead-letter-1");
    assert_eq!(events[0]["outcome"], "failed");

    let bad = app
        .client
        .get(app.url("/api/webhooks/events?outcome=lost"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{body}"
    );

    let retry = |id: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url(&format!("/api/webhooks/events/{id}/retry")))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = retry("dead-letter-1".into()).await;
    assert_eq!(status, 202, "{body}");
    // The processor takes it within a tick.
    let mut outcome = Value::Null;
    for _ in 0..100 {
        let event = app.get_json("/api/webhooks/events/dead-letter-1").await;
        outcome = event["data"]["outcome"].clone();
        if outcome != Value::Null {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(outcome, "failed", "processed again");
    assert!(outcome.is_string(), "{outcome}");
    assert!(
        app.get_json("/api/webhooks/events?outcome=failed").await["data"]["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, body) = retry(row_id.to_string()).await;
    assert_eq!(status, 409, "not a dead letter any more: {body}");
    assert_eq!(body["error"]["code"], "NOT_A_DEAD_LETTER");
    let (status, _) = retry("no-such-delivery".into()).await;
    assert_eq!(status, 404);
    app.stop().await;
}
