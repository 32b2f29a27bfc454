//! `GET /ws`: snapshot, ordering, filters, subscription changes, auth, bad requests.

mod common;

use common::ws::*;
use common::{spawn_app, spawn_app_with, test_config};
use serde_json::json;

#[tokio::test]
async fn snapshot_first_then_every_change_in_seq_order() {
    let app = spawn_app().await;
    deliver_job(&app, "acme/api", 1, "queued").await;
    app.settle().await;

    // The snapshot's seq is where its subscription starts; the delivery is committed (and
    // counted) a moment before its events are published, so wait for both.
    let (mut ws, snapshot) = connect_when(&app, "", |s| {
        s["data"]["queue_total"] == 1 && s["seq"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let data = &snapshot["data"];
    assert_eq!(data["queue"][0]["id"], 1, "{data}");
    assert_eq!(data["queue_total"], 1);
    assert_eq!(data["pools"][0]["name"], "linux");
    assert_eq!(data["pools"][0]["queued"], 1);
    assert!(data["runners"].is_array() && data["stats"]["jobs_per_hour"].is_number());
    let at = snapshot["seq"].as_i64().unwrap();
    assert!(
        at >= 2,
        "the queued delivery made a webhook and a job event: {at}"
    );

    for action in ["in_progress", "completed"] {
        deliver_job(&app, "acme/api", 1, action).await;
    }
    // The scheduler's `runner` and `pool` events (as many as the timing makes) interleave with
    // the deliveries' own: every change counts for order and gaps, the deliveries' by content.
    let mut ours = 0;
    let changes = read_until(&mut ws, |m| {
        ours += usize::from(is_kind(m, DELIVERY_KINDS) && !is_wait_update(m));
        ours == 4
    })
    .await;
    assert!(changes.iter().all(is_change), "{changes:?}");
    assert_eq!(
        seqs(&changes),
        (at + 1..=last_seq(&changes)).collect::<Vec<_>>(),
        "strictly increasing, no gap"
    );
    for m in &changes {
        assert!(
            is_kind(m, DELIVERY_KINDS) || is_kind(m, &["runner", "pool"]),
            "{m}"
        );
    }
    let deliveries: Vec<_> = changes
        .iter()
        .filter(|m| !is_wait_update(m))
        .cloned()
        .collect();
    let ours = of_kinds(&deliveries, DELIVERY_KINDS);
    let kinds: Vec<_> = ours.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["webhook", "job", "webhook", "job"], "{ours:?}");
    let jobs: Vec<_> = deliveries.iter().filter(|m| m["type"] == "job").collect();
    assert_eq!(jobs[0]["data"]["status"], "in_progress");
    assert_eq!(jobs[1]["data"]["status"], "completed");
    assert_eq!(jobs[1]["repository"], "acme/api");
    let webhooks: Vec<_> = changes.iter().filter(|m| m["type"] == "webhook").collect();
    assert_eq!(webhooks[0]["data"]["action"], "in_progress");
    assert_eq!(webhooks[1]["data"]["action"], "completed");
    for webhook in webhooks {
        for key in ["event", "action", "delivery", "outcome"] {
            assert!(
                webhook["data"].get(key).is_some(),
                "webhook lacks {key}: {webhook}"
            );
        }
    }

    // The gauge counts this client (`/metrics` renders the same process-wide recorder).
    let text = runnerhub::metrics::handle().render();
    assert!(text.contains("runnerhub_websocket_clients 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn filters_at_connect_and_changed_by_message() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "repository=acme/web&type=job").await;
    let snapshot = next_change(&mut ws).await;
    assert_eq!(snapshot["data"]["repositories"], json!(["acme/web"]));

    deliver_job(&app, "acme/api", 10, "queued").await;
    deliver_job(&app, "acme/web", 11, "queued").await;
    let m = next_change(&mut ws).await;
    assert_eq!(m["type"], "job", "webhook events are filtered out: {m}");
    assert_eq!(m["data"]["id"], 11, "acme/api is filtered out: {m}");

    send(
        &mut ws,
        json!({"op": "subscribe", "repository": ["acme/api"], "type": "webhook,job", "snapshot": true}),
    )
    .await;
    let ack = next_change(&mut ws).await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(
        ack["data"],
        json!({"repository": ["acme/api"], "type": ["webhook", "job"]})
    );
    let snapshot = next_of(&mut ws, "snapshot").await;
    let queue = snapshot["data"]["queue"].as_array().unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["id"], 10);

    deliver_job(&app, "acme/web", 12, "queued").await;
    deliver_job(&app, "acme/api", 13, "queued").await;
    let m = next_change(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["data"]["event"].as_str()),
        (Some("webhook"), Some("workflow_job"))
    );
    assert_eq!(m["repository"], "acme/api");
    let m = next_change(&mut ws).await;
    assert_eq!(m["data"]["id"], 13);

    // Bad client messages are answered, not fatal.
    send(&mut ws, json!({"op": "subscribe", "type": "nope"})).await;
    let error = next_change(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert!(error["data"]["message"].as_str().unwrap().contains("nope"));
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next_change(&mut ws).await["type"], "pong");
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_are_closed_with_a_reason() {
    let app = spawn_app().await;
    for (query, needle) in [
        ("type=jobs", "jobs"),
        ("since=abc", "since"),
        ("colour=red", "colour"),
    ] {
        let mut ws = connect(&app, query).await;
        let m = next(&mut ws).await;
        assert_eq!(m["close"], 4400, "{query}: {m}");
        assert!(m["reason"].as_str().unwrap().contains(needle), "{m}");
    }
    // Plain HTTP (no upgrade) gets the usual error envelope.
    let r = app.client.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
    app.stop().await;
}

#[tokio::test]
async fn api_tokens_guard_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.api_tokens = vec![runnerhub::config::Secret::new("op-token")];
    let app = spawn_app_with(config).await;

    for (query, bearer) in [("", None), ("token=wrong", None), ("", Some("wrong"))] {
        let mut ws = connect_with(&app, query, bearer).await;
        let m = next(&mut ws).await;
        assert_eq!(m["close"], 4401, "{query} {bearer:?}: {m}");
        assert!(m["reason"].as_str().unwrap().starts_with("unauthorized"));
    }
    // Unauthorized beats bad request: nothing is revealed before the token.
    let mut ws = connect(&app, "type=jobs").await;
    assert_eq!(next(&mut ws).await["close"], 4401);

    let mut ws = connect(&app, "token=op-token").await;
    assert_eq!(next(&mut ws).await["type"], "snapshot");
    let mut ws = connect_with(&app, "", Some("op-token")).await;
    assert_eq!(next(&mut ws).await["type"], "snapshot");

    let r = app.client.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The dashboard page itself is open: it holds no data.
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}
