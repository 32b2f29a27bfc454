//! Contract tests: the simulator answers and delivers what GitHub does, as recorded in
//! `fixtures/github` (keys and JSON types at every level, status codes, signatures).

mod common;

use std::time::Duration;

use common::{Receiver, assert_same_shape};
use reqwest::{Method, StatusCode};
use runnerhub::github::sim::runner_client::run_runner;
use runnerhub::github::sim::{FaultRule, Faults, JobSpec, SimApp, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

const TOKEN: &str = "test-pat";
const SECRET: &str = "test-webhook-secret";
const APP_ID: u64 = 4242;
const INSTALLATION_ID: u64 = 77;
const APP_KEY: &str = include_str!("fixtures/TEST-ONLY-github-app-key.pem");
const APP_PUBLIC_KEY: &str = include_str!("fixtures/TEST-ONLY-github-app-key.pub.pem");
const OTHER_KEY: &str = include_str!("fixtures/TEST-ONLY-other-key.pem");

async fn start(receiver: Option<&Receiver>) -> SimHandle {
    Simulator::start(SimConfig {
        webhook_url: receiver.map(|r| r.url.clone()),
        webhook_secret: SECRET.into(),
        tokens: vec![TOKEN.into()],
        app: Some(SimApp {
            app_id: APP_ID,
            client_id: Some("Iv1.test".into()),
            installation_id: INSTALLATION_ID,
            public_key_pem: APP_PUBLIC_KEY.into(),
        }),
        hosted_pickup_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

async fn call(
    sim: &SimHandle,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sim.url()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    Resp {
        status,
        headers,
        json,
    }
}

async fn api(sim: &SimHandle, method: Method, path: &str, body: Option<Value>) -> Resp {
    call(sim, method, path, Some(&format!("Bearer {TOKEN}")), body).await
}

#[track_caller]
fn assert_github_error(r: &Resp, status: StatusCode) {
    assert_eq!(r.status, status, "body: {}", r.json);
    assert!(
        r.json["message"].is_string() && r.json["documentation_url"].is_string(),
        "GitHub error body: {}",
        r.json
    );
}

fn jit_body(name: &str, labels: &[&str]) -> Value {
    json!({"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"})
}

#[tokio::test]
async fn runner_endpoints_match_fixtures_in_both_scopes() {
    let sim = start(None).await;
    for (prefix, fixture_scope) in [
        ("/repos/acme/api", "repos_owner_repo"),
        ("/orgs/acme", "orgs_org"),
    ] {
        let path = format!("{prefix}/actions/runners/generate-jitconfig");
        let r = api(
            &sim,
            Method::POST,
            &path,
            Some(jit_body("r-1", &["self-hosted", "linux"])),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        assert_same_shape(
            &r.json,
            &format!(
                "rest/POST_{fixture_scope}_actions_runners_generate_jitconfig.201.default.json"
            ),
        );
        assert_eq!(r.json["runner"]["status"], "offline");
        assert_eq!(r.json["runner"]["busy"], false);
        let id = r.json["runner"]["id"].as_u64().unwrap();

        let dup = api(&sim, Method::POST, &path, Some(jit_body("r-1", &["x"]))).await;
        assert_github_error(&dup, StatusCode::CONFLICT);
        for bad in [
            json!({"name": "r-2", "runner_group_id": 1, "labels": []}),
            json!({"name": "r-2", "runner_group_id": 1, "labels": [""]}),
            json!({"name": "r-2", "runner_group_id": 1, "labels": (0..101).map(|i| format!("l{i}")).collect::<Vec<_>>()}),
            json!({"runner_group_id": 1, "labels": ["x"]}),
        ] {
            assert_github_error(
                &api(&sim, Method::POST, &path, Some(bad)).await,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }

        let token = api(
            &sim,
            Method::POST,
            &format!("{prefix}/actions/runners/registration-token"),
            None,
        )
        .await;
        assert_eq!(token.status, StatusCode::CREATED);
        assert_same_shape(
            &token.json,
            "rest/POST_repos_owner_repo_actions_runners_registration_token.201.default.json",
        );

        let list = api(
            &sim,
            Method::GET,
            &format!("{prefix}/actions/runners?per_page=10&page=1"),
            None,
        )
        .await;
        assert_eq!(list.status, StatusCode::OK);
        assert_same_shape(
            &list.json,
            &format!("rest/GET_{fixture_scope}_actions_runners.200.default.json"),
        );
        assert_eq!(list.json["total_count"], 1);
        let page2 = api(
            &sim,
            Method::GET,
            &format!("{prefix}/actions/runners?per_page=1&page=2"),
            None,
        )
        .await;
        assert_eq!(page2.json["runners"].as_array().unwrap().len(), 0);

        let one = api(
            &sim,
            Method::GET,
            &format!("{prefix}/actions/runners/{id}"),
            None,
        )
        .await;
        assert_eq!(one.status, StatusCode::OK);
        assert_same_shape(
            &one.json,
            "rest/GET_repos_owner_repo_actions_runners_runner_id.200.default.json",
        );

        let del = api(
            &sim,
            Method::DELETE,
            &format!("{prefix}/actions/runners/{id}"),
            None,
        )
        .await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_github_error(
            &api(
                &sim,
                Method::DELETE,
                &format!("{prefix}/actions/runners/{id}"),
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
        );
        assert_github_error(
            &api(
                &sim,
                Method::GET,
                &format!("{prefix}/actions/runners/{id}"),
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_rate_limits_and_rest_faults() {
    let sim = start(None).await;
    let path = "/repos/acme/api/actions/runners";
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        assert_github_error(
            &call(&sim, Method::GET, path, auth, None).await,
            StatusCode::UNAUTHORIZED,
        );
    }
    let ok = call(
        &sim,
        Method::GET,
        path,
        Some(&format!("token {TOKEN}")),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-used",
        "x-ratelimit-reset",
        "x-ratelimit-resource",
    ] {
        assert!(ok.headers.contains_key(h), "{h} missing");
    }
    assert_eq!(ok.headers["x-ratelimit-limit"], "5000");
    assert_eq!(ok.headers["x-ratelimit-remaining"], "4999");

    sim.set_rate_limit(3, 2);
    assert_eq!(
        api(&sim, Method::GET, path, None).await.status,
        StatusCode::OK
    );
    let limited = api(&sim, Method::GET, path, None).await;
    assert_github_error(&limited, StatusCode::FORBIDDEN);
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    sim.set_rate_limit(5000, 0);

    sim.set_faults(Faults {
        rest_secondary_limit: FaultRule::next(1),
        retry_after_secs: Some(7),
        ..Faults::default()
    });
    let secondary = api(&sim, Method::GET, path, None).await;
    assert_github_error(&secondary, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(secondary.headers["retry-after"], "7");
    sim.set_faults(Faults {
        rest_error: FaultRule::next(2),
        ..Faults::default()
    });
    assert_eq!(
        api(&sim, Method::GET, path, None).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        api(&sim, Method::GET, path, None).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        api(&sim, Method::GET, path, None).await.status,
        StatusCode::OK
    );
    sim.shutdown().await;
}

fn jwt(key_pem: &str, iss: Value, iat_offset: i64, exp_offset: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iat": now + iat_offset, "exp": now + exp_offset, "iss": iss});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

#[tokio::test]
async fn app_jwt_is_exchanged_for_an_installation_token() {
    let sim = start(None).await;
    let path = format!("/app/installations/{INSTALLATION_ID}/access_tokens");
    let good = jwt(APP_KEY, json!(APP_ID), -60, 540);
    let r = call(
        &sim,
        Method::POST,
        &path,
        Some(&format!("Bearer {good}")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_same_shape(
        &r.json,
        "rest/POST_app_installations_installation_id_access_tokens.201.default.json",
    );
    let token = r.json["token"].as_str().unwrap().to_string();
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.json["expires_at"].as_str().unwrap()).unwrap();
    let in_secs = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&in_secs), "expires in {in_secs}s");
    // The installation token works like a PAT.
    let with_token = call(
        &sim,
        Method::GET,
        "/repos/acme/api/actions/runners",
        Some(&format!("token {token}")),
        None,
    )
    .await;
    assert_eq!(with_token.status, StatusCode::OK);
    // The client id is a valid issuer too.
    let by_client_id = jwt(APP_KEY, json!("Iv1.test"), -60, 540);
    assert_eq!(
        call(
            &sim,
            Method::POST,
            &path,
            Some(&format!("Bearer {by_client_id}")),
            None
        )
        .await
        .status,
        StatusCode::CREATED
    );

    let rejected = [
        ("wrong key", jwt(OTHER_KEY, json!(APP_ID), -60, 540)),
        ("wrong iss", jwt(APP_KEY, json!(APP_ID + 1), -60, 540)),
        ("expired", jwt(APP_KEY, json!(APP_ID), -700, -10)),
        ("exp - iat > 600", jwt(APP_KEY, json!(APP_ID), -60, 601)),
        ("iat in the future", jwt(APP_KEY, json!(APP_ID), 120, 500)),
        ("not a JWT", "abc.def.ghi".to_string()),
    ];
    for (why, token) in rejected {
        let r = call(
            &sim,
            Method::POST,
            &path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {}", r.json);
        assert!(r.json["message"].is_string(), "{why}");
    }
    // A PAT is not an App JWT.
    assert_github_error(
        &api(&sim, Method::POST, &path, None).await,
        StatusCode::UNAUTHORIZED,
    );
    let other_installation = call(
        &sim,
        Method::POST,
        "/app/installations/1/access_tokens",
        Some(&format!("Bearer {good}")),
        None,
    )
    .await;
    assert_github_error(&other_installation, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

/// Registers a JIT runner through REST and returns its id and encoded config.
async fn register(sim: &SimHandle, name: &str, labels: &[&str]) -> (u64, String) {
    let r = api(
        sim,
        Method::POST,
        "/repos/acme/api/actions/runners/generate-jitconfig",
        Some(jit_body(name, labels)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    (
        r.json["runner"]["id"].as_u64().unwrap(),
        r.json["encoded_jit_config"].as_str().unwrap().to_string(),
    )
}

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

#[tokio::test]
async fn control_api_enqueues_and_lists() {
    let sim = start(None).await;
    let client = reqwest::Client::new();
    let spec = json!({"repository": "acme/api", "labels": ["self-hosted"], "duration": "2s"});
    let r = client
        .post(format!("{}/_sim/jobs", sim.url()))
        .json(&json!({"jobs": [spec.clone(), spec]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 2);
    let jobs: Value = client
        .get(format!("{}/_sim/jobs", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(jobs[0]["spec"]["duration"], 2000);
    let bad = client
        .post(format!("{}/_sim/jobs", sim.url()))
        .json(&json!({"repository": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let faults = json!({"seed": 3, "drop": {"probability": 0.5}});
    let r = client
        .put(format!("{}/_sim/faults", sim.url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.faults().drop.probability, 0.5);
    assert_eq!(runnerhub::github::sim::demo_job_mix().len(), 12);
    sim.shutdown().await;
}
