//! Contract tests of the simulator's webhooks: the job lifecycle's deliveries have the fixtures'
//! keys at every level and valid signatures; the deliveries API, redelivery and delivery faults.

mod common;

use std::time::Duration;

use common::sim::*;
use common::{Receiver, assert_same_shape};
use reqwest::{Method, StatusCode};
use runnerhub::github::sim::runner_client::run_runner;
use runnerhub::github::sim::{FaultRule, Faults, JobSpec};
use serde_json::json;

#[tokio::test]
async fn job_lifecycle_deliveries_match_fixtures_and_are_signed() {
    let receiver = Receiver::start().await;
    let sim = start(Some(&receiver)).await;
    let job = sim
        .enqueue_job(
            JobSpec::new("acme/api", &["self-hosted", "linux"])
                .with_duration(Duration::from_millis(300)),
        )
        .unwrap();
    let queued = receiver.wait_job("queued", Some(job.job_id)).await;
    assert_same_shape(
        &queued.json(),
        "webhooks/workflow_job.selfhosted.queued.json",
    );
    assert!(queued.json()["workflow_job"]["runner_id"].is_null());
    let requested = receiver
        .wait_for("workflow_run.requested", Duration::from_secs(5), |r| {
            r.event() == "workflow_run"
        })
        .await;
    assert_same_shape(
        &requested.json(),
        "webhooks/workflow_run.requested.payload.json",
    );

    // Busy runners cannot be deleted; the JIT runner leaves the list after its one job.
    let (runner_id, config) = register(&sim, "runner-a", &["self-hosted", "Linux", "x64"]).await;
    let runner =
        tokio::spawn(async move { run_runner(&config, Some(Duration::from_secs(10))).await });
    let in_progress = receiver.wait_job("in_progress", Some(job.job_id)).await;
    assert_same_shape(
        &in_progress.json(),
        "webhooks/workflow_job.selfhosted.in_progress.json",
    );
    let wj = &in_progress.json()["workflow_job"];
    assert_eq!(wj["runner_id"], runner_id);
    assert_eq!(wj["runner_name"], "runner-a");
    assert_eq!(wj["runner_group_id"], 1);
    assert_eq!(wj["runner_group_name"], "Default");
    let busy = api(
        &sim,
        Method::DELETE,
        &format!("/repos/acme/api/actions/runners/{runner_id}"),
        None,
    )
    .await;
    assert_github_error(&busy, StatusCode::UNPROCESSABLE_ENTITY);
    let listed = api(
        &sim,
        Method::GET,
        &format!("/repos/acme/api/actions/runners/{runner_id}"),
        None,
    )
    .await;
    assert_eq!(
        (
            listed.json["status"].as_str(),
            listed.json["busy"].as_bool()
        ),
        (Some("online"), Some(true))
    );

    let done = runner.await.unwrap().expect("runner ran the job");
    assert_eq!(done.job_id, job.job_id);
    let completed = receiver.wait_job("completed", Some(job.job_id)).await;
    assert_same_shape(
        &completed.json(),
        "webhooks/workflow_job.selfhosted.completed.json",
    );
    assert_eq!(completed.json()["workflow_job"]["conclusion"], "success");
    let run_completed = receiver
        .wait_for("workflow_run.completed", Duration::from_secs(5), |r| {
            r.event() == "workflow_run" && r.action() == "completed"
        })
        .await;
    assert_same_shape(
        &run_completed.json(),
        "webhooks/workflow_run.completed.payload.json",
    );
    let run_in_progress = receiver
        .wait_for("workflow_run.in_progress", Duration::from_secs(5), |r| {
            r.event() == "workflow_run" && r.action() == "in_progress"
        })
        .await;
    assert_same_shape(
        &run_in_progress.json(),
        "webhooks/workflow_run.in_progress.json",
    );
    assert_github_error(
        &api(
            &sim,
            Method::GET,
            &format!("/repos/acme/api/actions/runners/{runner_id}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );

    sim.send_push("acme/api", "feature-x");
    let push = receiver
        .wait_for("push", Duration::from_secs(5), |r| r.event() == "push")
        .await;
    assert_same_shape(&push.json(), "webhooks/push.with-new-branch.payload.json");
    assert_eq!(push.json()["ref"], "refs/heads/feature-x");

    for r in receiver.all() {
        assert!(r.signature_ok(SECRET), "{} signature", r.event());
        assert!(r.header("user-agent").starts_with("GitHub-Hookshot/"));
        assert_eq!(r.header("content-type"), "application/json");
        assert!(uuid::Uuid::parse_str(r.header("x-github-delivery")).is_ok());
        assert_eq!(r.header("x-github-hook-id"), "1");
        assert!(r.header("x-hub-signature").starts_with("sha1="));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_while_queued_and_hosted_jobs() {
    let receiver = Receiver::start().await;
    let sim = start(Some(&receiver)).await;
    let job = sim
        .enqueue_job(JobSpec::new("acme/api", &["self-hosted", "gpu"]))
        .unwrap();
    sim.cancel_job(job.job_id).unwrap();
    let cancelled = receiver.wait_job("completed", Some(job.job_id)).await;
    assert_same_shape(
        &cancelled.json(),
        "webhooks/workflow_job.selfhosted.completed.cancelled-while-queued.json",
    );
    assert_eq!(cancelled.json()["workflow_job"]["conclusion"], "cancelled");
    assert!(cancelled.json()["workflow_job"]["runner_id"].is_null());

    let hosted = sim
        .enqueue_job(
            JobSpec::new("acme/api", &["ubuntu-latest"]).with_duration(Duration::from_millis(50)),
        )
        .unwrap();
    let started = receiver.wait_job("in_progress", Some(hosted.job_id)).await;
    assert_eq!(
        started.json()["workflow_job"]["runner_group_name"],
        "GitHub Actions"
    );
    receiver.wait_job("completed", Some(hosted.job_id)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn runs_jobs_and_deliveries_endpoints_match_fixtures() {
    let receiver = Receiver::start().await;
    let sim = start(Some(&receiver)).await;
    let job = sim
        .enqueue_job(JobSpec::new("acme/api", &["self-hosted", "linux"]))
        .unwrap();
    sim.enqueue_job(JobSpec::new("acme/web", &["self-hosted", "linux"]))
        .unwrap();
    receiver.wait_job("queued", Some(job.job_id)).await;

    let runs = api(
        &sim,
        Method::GET,
        "/repos/acme/api/actions/runs?status=queued",
        None,
    )
    .await;
    assert_eq!(runs.status, StatusCode::OK);
    assert_same_shape(
        &runs.json,
        "rest/GET_repos_owner_repo_actions_runs.200.default.json",
    );
    assert_eq!(runs.json["total_count"], 1, "only acme/api's run");
    let none = api(
        &sim,
        Method::GET,
        "/repos/acme/api/actions/runs?status=completed",
        None,
    )
    .await;
    assert_eq!(none.json["total_count"], 0);
    let run = api(
        &sim,
        Method::GET,
        &format!("/repos/acme/api/actions/runs/{}", job.run_id),
        None,
    )
    .await;
    assert_same_shape(
        &run.json,
        "rest/GET_repos_owner_repo_actions_runs_run_id.200.default.json",
    );
    assert_eq!(run.json["status"], "queued");
    let jobs = api(
        &sim,
        Method::GET,
        &format!("/repos/acme/api/actions/runs/{}/jobs", job.run_id),
        None,
    )
    .await;
    assert_same_shape(
        &jobs.json,
        "rest/GET_repos_owner_repo_actions_runs_run_id_jobs.200.default.json",
    );
    let one = api(
        &sim,
        Method::GET,
        &format!("/repos/acme/api/actions/jobs/{}", job.job_id),
        None,
    )
    .await;
    assert_same_shape(
        &one.json,
        "rest/GET_repos_owner_repo_actions_jobs_job_id.200.default.json",
    );
    assert_eq!(one.json["labels"], json!(["self-hosted", "linux"]));
    assert_github_error(
        &api(
            &sim,
            Method::GET,
            &format!("/repos/acme/web/actions/jobs/{}", job.job_id),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    assert_github_error(
        &api(&sim, Method::GET, "/repos/acme/api/actions/runs/1", None).await,
        StatusCode::NOT_FOUND,
    );

    let list = api(
        &sim,
        Method::GET,
        "/repos/acme/api/hooks/1/deliveries",
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_same_shape(
        &list.json,
        "rest/GET_repos_owner_repo_hooks_hook_id_deliveries.200.default.json",
    );
    assert_eq!(
        list.json.as_array().unwrap().len(),
        2,
        "workflow_run + workflow_job of acme/api"
    );
    let id = list.json[0]["id"].as_u64().unwrap();
    let detail = api(
        &sim,
        Method::GET,
        &format!("/repos/acme/api/hooks/1/deliveries/{id}"),
        None,
    )
    .await;
    // `request.payload` is the delivered event, whatever it is: compare it with the body received.
    let mut shape = detail.json.clone();
    let payload = shape["request"]["payload"].take();
    let delivered = receiver
        .all()
        .into_iter()
        .find(|r| r.header("x-github-delivery") == detail.json["guid"])
        .unwrap();
    assert_eq!(payload, delivered.json());
    let detail_fixture =
        "rest/GET_repos_owner_repo_hooks_hook_id_deliveries_delivery_id.200.default.json";
    shape["request"]["payload"] = common::fixture(detail_fixture)["request"]["payload"].clone();
    assert_same_shape(&shape, detail_fixture);
    assert_eq!(detail.json["status_code"], 200);
    let org_list = api(&sim, Method::GET, "/orgs/acme/hooks/1/deliveries", None).await;
    assert_same_shape(
        &org_list.json,
        "rest/GET_orgs_org_hooks_hook_id_deliveries.200.default.json",
    );
    assert_eq!(org_list.json.as_array().unwrap().len(), 4);
    assert_github_error(
        &api(
            &sim,
            Method::GET,
            "/repos/acme/api/hooks/2/deliveries",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );

    let app_jwt = format!("Bearer {}", jwt(APP_KEY, json!(APP_ID), -60, 540));
    let app_list = call(
        &sim,
        Method::GET,
        "/app/hook/deliveries",
        Some(&app_jwt),
        None,
    )
    .await;
    assert_same_shape(
        &app_list.json,
        "rest/GET_app_hook_deliveries.200.default.json",
    );
    let mut app_one = call(
        &sim,
        Method::GET,
        &format!("/app/hook/deliveries/{id}"),
        Some(&app_jwt),
        None,
    )
    .await
    .json;
    assert_eq!(app_one["request"]["payload"], payload);
    let app_fixture = "rest/GET_app_hook_deliveries_delivery_id.200.default.json";
    app_one["request"]["payload"] = common::fixture(app_fixture)["request"]["payload"].clone();
    assert_same_shape(&app_one, app_fixture);

    // Redelivery resends the same body with the same GUID.
    let original = detail.json["guid"].as_str().unwrap().to_string();
    let before = receiver
        .all()
        .iter()
        .filter(|r| r.header("x-github-delivery") == original)
        .count();
    let attempt = api(
        &sim,
        Method::POST,
        &format!("/repos/acme/api/hooks/1/deliveries/{id}/attempts"),
        None,
    )
    .await;
    assert_eq!(attempt.status, StatusCode::ACCEPTED);
    receiver
        .wait_for("redelivery", Duration::from_secs(5), |_| {
            receiver
                .all()
                .iter()
                .filter(|r| r.header("x-github-delivery") == original)
                .count()
                > before
        })
        .await;
    let same: Vec<_> = receiver
        .all()
        .into_iter()
        .filter(|r| r.header("x-github-delivery") == original)
        .collect();
    assert_eq!(same[0].body, same[1].body);
    // The sender logs an attempt once the receiver has answered.
    let logged = || {
        sim.deliveries()
            .iter()
            .any(|d| d.guid == original && d.redelivery)
    };
    for _ in 0..100 {
        if logged() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged(), "redelivery is logged with redelivery: true");
    sim.shutdown().await;
}

#[tokio::test]
async fn delivery_faults_drop_duplicate_reorder_delay() {
    let receiver = Receiver::start().await;
    let sim = start(Some(&receiver)).await;
    let push = |branch: &str| sim.send_push("acme/api", branch);
    let branches = |rs: &[common::Received]| -> Vec<String> {
        rs.iter()
            .map(|r| {
                r.json()["ref"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("refs/heads/")
                    .to_string()
            })
            .collect()
    };
    let wait_count = |n: usize| {
        let receiver = receiver.clone();
        async move {
            receiver
                .wait_for(&format!("{n} deliveries"), Duration::from_secs(5), |_| {
                    receiver.all().len() >= n
                })
                .await
        }
    };

    sim.set_faults(Faults {
        drop: FaultRule::next(1),
        ..Faults::default()
    });
    push("dropped");
    push("a");
    wait_count(1).await;
    let log = sim.deliveries();
    let dropped = log
        .iter()
        .find(|d| !d.sent)
        .expect("dropped delivery is logged");
    assert!(dropped.body.contains("refs/heads/dropped"));

    sim.set_faults(Faults {
        duplicate: FaultRule::next(1),
        ..Faults::default()
    });
    push("twice");
    wait_count(3).await;
    let all = receiver.all();
    assert_eq!(
        all[1].header("x-github-delivery"),
        all[2].header("x-github-delivery")
    );

    sim.set_faults(Faults {
        reorder: FaultRule::next(1),
        ..Faults::default()
    });
    push("first");
    push("second");
    wait_count(5).await;
    assert_eq!(branches(&receiver.all()[3..5]), ["second", "first"]);

    sim.set_faults(Faults {
        delay: FaultRule::next(1),
        delay_ms: 400,
        ..Faults::default()
    });
    push("late");
    push("early");
    wait_count(7).await;
    assert_eq!(branches(&receiver.all()[5..7]), ["early", "late"]);

    // The dropped delivery can be redelivered.
    sim.redeliver(dropped.id).unwrap();
    wait_count(8).await;
    assert_eq!(receiver.all()[7].header("x-github-delivery"), dropped.guid);
    sim.shutdown().await;
}
