//! The webhook endpoint as GitHub and attackers use it.

mod common;

use common::*;
use serde_json::Value;

const ALL_FIXTURES: &[(&str, &str)] = &[
    ("ping", "ping.payload.json"),
    ("ping", "ping.app-hook.json"),
    ("ping", "ping.with-app_id.payload.json"),
    ("push", "push.payload.json"),
    ("push", "push.with-installation.payload.json"),
    ("push", "push.with-new-branch.payload.json"),
    ("push", "push.with-organization.payload.json"),
    ("pull_request", "pull_request.opened.payload.json"),
    (
        "pull_request",
        "pull_request.opened.with-organization.payload.json",
    ),
    ("workflow_job", "workflow_job.queued.payload.json"),
    ("workflow_job", "workflow_job.waiting.payload.json"),
    ("workflow_job", "workflow_job.in_progress.payload.json"),
    (
        "workflow_job",
        "workflow_job.completed.success.with-organization.payload.json",
    ),
    (
        "workflow_job",
        "workflow_job.completed.failure.with-organization.payload.json",
    ),
    ("workflow_job", "workflow_job.selfhosted.queued.json"),
    ("workflow_job", "workflow_job.selfhosted.in_progress.json"),
    ("workflow_job", "workflow_job.selfhosted.completed.json"),
    (
        "workflow_job",
        "workflow_job.selfhosted.completed.cancelled-while-queued.json",
    ),
    ("workflow_run", "workflow_run.requested.payload.json"),
    (
        "workflow_run",
        "workflow_run.requested.with-conclusion.payload.json",
    ),
    ("workflow_run", "workflow_run.in_progress.json"),
    ("workflow_run", "workflow_run.completed.payload.json"),
    (
        "workflow_run",
        "workflow_run.completed.with-pull-requests.payload.json",
    ),
];

#[tokio::test]
async fn every_fixture_is_accepted_and_processed_without_failure() {
    let app = spawn_app().await;
    for (i, (event, file)) in ALL_FIXTURES.iter().enumerate() {
        let r = app
            .deliver(event, &format!("fixture-{i}"), &webhook_fixture(file))
            .await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        let expected = if *event == "ping" { 200 } else { 202 };
        assert_eq!(status, expected, "{file}: {body}");
    }
    app.settle().await;
    let stats = app.get_json("/api/webhooks/statistics?hours=1").await;
    let s = &stats["data"]["statistics"];
    assert_eq!(s["total"], ALL_FIXTURES.len());
    assert_eq!(s["by_outcome"].get("failed"), None, "{s}");
    assert_eq!(s["by_event"]["workflow_job"], 9);
    // The self-hosted lifecycle job ended completed; the cancelled variant shares its id.
    let job = app.get_json("/api/jobs/29679449001").await;
    assert_eq!(job["data"]["status"], "completed");
    assert_eq!(job["data"]["pool"], "linux");
    let run = app
        .get_json("/api/webhooks/events?event=workflow_run")
        .await;
    assert_eq!(run["data"]["total"], 5);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivery_is_acknowledged_and_changes_nothing() {
    let app = spawn_app().await;
    let body = job_payload(1, "queued", &["self-hosted", "linux"]);
    let first = app.deliver("workflow_job", "guid-1", &body).await;
    assert_eq!(first.status(), 202);
    let again = app.deliver("workflow_job", "guid-1", &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    app.settle().await;
    let events = app.get_json("/api/webhooks/events").await;
    assert_eq!(events["data"]["total"], 1);
    app.stop().await;
}

#[tokio::test]
async fn ping_and_unknown_events() {
    let app = spawn_app().await;
    let r = app
        .deliver("ping", "p-1", &webhook_fixture("ping.payload.json"))
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .deliver("issues", "i-1", br#"{"action":"opened"}"#)
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ignored");
    assert!(
        body["reason"].as_str().unwrap().contains("issues"),
        "{body}"
    );
    let events = app.get_json("/api/webhooks/events?event=issues").await;
    assert_eq!(
        events["data"]["events"][0]["outcome"], "ignored",
        "unknown events are still in the audit log"
    );
    app.stop().await;
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted() {
    let app = spawn_app().await;
    let json = String::from_utf8(job_payload(5, "queued", &["self-hosted"])).unwrap();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let r = app
        .client
        .post(app.url("/api/webhooks/github"))
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", "form-1")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "X-Hub-Signature-256",
            runnerhub::webhook::signature::sign(SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.settle().await;
    assert_eq!(
        app.get_json("/api/jobs/5").await["data"]["status"],
        "queued"
    );
    app.stop().await;
}

/// Sends a request with the given headers and body; returns (status, body).
async fn raw(app: &TestApp, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/webhooks/github")).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_5xx() {
    let app = spawn_app().await;
    let body = job_payload(9, "queued", &["self-hosted"]);
    let sig = runnerhub::webhook::signature::sign(SECRET, &body);
    let full = [
        ("X-GitHub-Event", "workflow_job"),
        ("X-GitHub-Delivery", "bad-1"),
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    let without = |name: &str| {
        full.iter()
            .filter(|(k, _)| *k != name)
            .copied()
            .collect::<Vec<_>>()
    };

    let (s, b) = raw(&app, &without("X-GitHub-Event"), body.clone()).await;
    assert_eq!(
        (s, b["error"]["message"].as_str().unwrap()),
        (400, "missing X-GitHub-Event header")
    );
    let (s, b) = raw(&app, &without("X-GitHub-Delivery"), body.clone()).await;
    assert_eq!(
        (s, b["error"]["message"].as_str().unwrap()),
        (400, "missing X-GitHub-Delivery header")
    );
    let (s, b) = raw(&app, &without("X-Hub-Signature-256"), body.clone()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (401, "INVALID_SIGNATURE")
    );
    let mut wrong = without("X-Hub-Signature-256");
    let bad_sig = runnerhub::webhook::signature::sign("not-the-secret", &body);
    wrong.push(("X-Hub-Signature-256", &bad_sig));
    let (s, _) = raw(&app, &wrong, body.clone()).await;
    assert_eq!(s, 401);
    let mut text = without("Content-Type");
    text.push(("Content-Type", "text/plain"));
    let (s, b) = raw(&app, &text, body.clone()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (415, "UNSUPPORTED_MEDIA_TYPE")
    );

    let junk = b"{\"action\": \"queued\", oops".to_vec();
    let junk_sig = runnerhub::webhook::signature::sign(SECRET, &junk);
    let mut junk_headers = without("X-Hub-Signature-256");
    junk_headers.push(("X-Hub-Signature-256", &junk_sig));
    let (s, b) = raw(&app, &junk_headers, junk).await;
    assert_eq!(s, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{b}"
    );

    let huge = vec![b' '; runnerhub::webhook::MAX_BODY_BYTES + 1];
    let (s, b) = raw(&app, &full, huge).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (413, "PAYLOAD_TOO_LARGE")
    );

    // The refused signatures are in the audit log, not acted on.
    app.settle().await;
    let events = app.get_json("/api/webhooks/events").await;
    let rows = events["data"]["events"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{events}");
    assert!(
        rows.iter()
            .all(|e| e["signature_valid"] == false && e["outcome"] == "rejected")
    );
    let jobs = app.get_json("/api/jobs").await;
    assert_eq!(jobs["data"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_forged_delivery_cannot_reserve_a_real_guid() {
    let app = spawn_app().await;
    let body = job_payload(11, "queued", &["self-hosted"]);
    let (s, _) = raw(
        &app,
        &[
            ("X-GitHub-Event", "workflow_job"),
            ("X-GitHub-Delivery", "guid-x"),
            ("Content-Type", "application/json"),
            (
                "X-Hub-Signature-256",
                "sha256=0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        app.deliver("workflow_job", "guid-x", &body).await.status(),
        202
    );
    app.settle().await;
    assert_eq!(
        app.get_json("/api/jobs/11").await["data"]["status"],
        "queued"
    );
    app.stop().await;
}

#[tokio::test]
async fn out_of_order_deliveries_end_in_the_final_state() {
    let app = spawn_app().await;
    let labels = ["self-hosted", "linux"];
    for (i, action) in ["completed", "queued", "in_progress", "queued", "completed"]
        .iter()
        .enumerate()
    {
        let r = app
            .deliver(
                "workflow_job",
                &format!("ooo-{i}"),
                &job_payload(21, action, &labels),
            )
            .await;
        assert!(r.status().is_success());
    }
    app.settle().await;
    let job = app.get_json("/api/jobs/21").await;
    assert_eq!(job["data"]["status"], "completed");
    assert_eq!(job["data"]["conclusion"], "success");
    assert_eq!(job["data"]["runner_name"], "dockerrunner-7f3a9c");
    let events = app.get_json("/api/webhooks/events").await;
    let stale = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["outcome_detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("stale")
        })
        .count();
    assert_eq!(
        stale, 3,
        "the late queued, in_progress, queued are recorded as stale"
    );
    app.stop().await;
}
