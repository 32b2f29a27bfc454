//! The management API: envelopes, filters, pagination, auth.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn jobs_and_events_filter_and_paginate() {
    let app = spawn_app().await;
    for id in 1..=5 {
        let mut body: Value =
            serde_json::from_slice(&job_payload(id, "queued", &["self-hosted"])).unwrap();
        body["repository"]["full_name"] = if id % 2 == 0 { "o/even" } else { "o/odd" }.into();
        app.deliver(
            "workflow_job",
            &format!("j-{id}"),
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    }
    app.deliver(
        "workflow_job",
        "j-1-done",
        &job_payload(1, "completed", &["self-hosted"]),
    )
    .await;
    app.settle().await;

    let odd = app.get_json("/api/jobs?repository=o/odd").await;
    assert_eq!(odd["success"], true);
    assert_eq!(odd["data"]["total"], 3);
    let queued = app.get_json("/api/jobs?status=queued").await;
    assert_eq!(queued["data"]["total"], 4);
    let page = app.get_json("/api/jobs?limit=2&offset=2").await;
    assert_eq!(page["data"]["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"]["total"], 5);

    let events = app
        .get_json("/api/webhooks/events?repository=o/even&limit=1")
        .await;
    assert_eq!(events["data"]["total"], 2);
    assert_eq!(events["data"]["events"].as_array().unwrap().len(), 1);
    let id = events["data"]["events"][0]["row_id"].as_i64().unwrap();
    let one = app.get_json(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(one["data"]["payload"]["action"], "queued");

    let r = app
        .client
        .get(app.url("/api/jobs?status=exploded"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exploded")
    );
    let r = app
        .client
        .get(app.url("/api/jobs/424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .get(app.url("/api/jobs/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(app.url("/api/webhooks/statistics?hours=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn test_delivery_goes_through_the_pipeline() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/api/webhooks/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    let guid = body["data"]["delivery"].as_str().unwrap().to_owned();
    app.settle().await;
    let events = app.get_json("/api/webhooks/events?event=ping").await;
    assert_eq!(events["data"]["events"][0]["delivery_id"], guid.as_str());
    assert_eq!(events["data"]["events"][0]["outcome"], "processed");
    let health = app.get_json("/api/webhooks/health").await;
    assert_eq!(health["data"]["status"], "healthy");
    app.stop().await;
}

#[tokio::test]
async fn a_processing_failure_is_recorded_and_blocks_nothing() {
    let app = spawn_app().await;
    // Signed and valid JSON, but not a workflow_job document.
    assert_eq!(
        app.deliver("workflow_job", "broken", br#"{"action":"queued"}"#)
            .await
            .status(),
        202
    );
    assert_eq!(
        app.deliver(
            "workflow_job",
            "fine",
            &job_payload(3, "queued", &["self-hosted"])
        )
        .await
        .status(),
        202
    );
    let mut failed = Value::Null;
    for _ in 0..200 {
        let events = app.get_json("/api/webhooks/events").await;
        let rows = events["data"]["events"].as_array().unwrap().clone();
        if let Some(row) = rows
            .iter()
            .find(|e| e["delivery_id"] == "broken" && e["outcome"] == "failed")
        {
            failed = row.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert_eq!(failed["processed"], false, "it will be retried");
    assert!(
        failed["outcome_detail"]
            .as_str()
            .unwrap()
            .contains("workflow_job"),
        "{failed}"
    );
    assert_eq!(app.wait_for_job(3).await["status"], "queued");
    app.stop().await;
}

#[tokio::test]
async fn api_tokens_guard_the_api_but_not_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.api_tokens = vec![runnerhub::config::Secret::new("op-token")];
    let app = spawn_app_with(config).await;
    let r = app.client.get(app.url("/api/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/api/jobs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/api/jobs"))
        .bearer_auth("op-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .deliver("ping", "p", &webhook_fixture("ping.payload.json"))
        .await;
    assert_eq!(r.status(), 200, "GitHub does not send our bearer token");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// A job that can never get a runner says so wherever jobs are shown (DESIGN §13): a job of a
/// repository that is not owner/name (a signed delivery may carry one) leaves the queue with
/// `unusable_repository`, a job no pool serves is recorded with `no_pool`; the API, the list
/// and the live feed carry `outcome` and `outcome_detail`.
#[tokio::test]
async fn a_job_that_can_never_get_a_runner_says_why_in_the_api_and_the_live_feed() {
    let app = spawn_app().await;
    let mut feed = ws::connect(&app, "type=job").await;
    ws::deliver_job(&app, "acme", 1, "queued").await;
    let hosted = job_payload(2, "queued", &["ubuntu-latest"]);
    app.deliver("workflow_job", "hosted-2", &hosted).await;
    app.settle().await;

    let refused = until(10, "job 1 refused", async || {
        let job = app.get_json("/api/jobs/1").await["data"].clone();
        job["outcome"].is_string().then_some(job)
    })
    .await;
    assert_eq!(refused["outcome"], "unusable_repository");
    assert_eq!(refused["status"], "queued", "GitHub's status is kept");
    let detail = refused["outcome_detail"].as_str().unwrap();
    assert!(detail.contains("`acme`"), "{detail}");
    assert!(
        refused.get("wait_reason").is_none(),
        "not waiting: {refused}"
    );
    let hosted = app.get_json("/api/jobs/2").await["data"].clone();
    assert_eq!(hosted["outcome"], "no_pool");

    let listed = app.get_json("/api/jobs?status=pending").await["data"]["jobs"].clone();
    let outcomes: Vec<(i64, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_i64().unwrap(),
                j["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(1, "unusable_repository")),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&(2, "no_pool")), "{outcomes:?}");
    let snapshot = app.get_json("/api/runners/pool/status").await;
    assert_eq!(snapshot["data"]["pools"][0]["queued"], 0, "{snapshot}");

    let seen = ws::read_until(&mut feed, |m| {
        m["type"] == "job" && m["data"]["id"] == 1 && m["data"]["outcome"].is_string()
    })
    .await;
    let event = seen.last().unwrap();
    assert_eq!(event["data"]["outcome"], "unusable_repository", "{event}");
    assert_eq!(event["repository"], "acme");
    app.stop().await;
}
