//! Contract tests of the simulator's REST API: keys and JSON types at every level match
//! `fixtures/github/rest`, status codes and error bodies are GitHub's, App JWTs are checked.

mod common;

use common::assert_same_shape;
use common::sim::*;
use reqwest::{Method, StatusCode};
use runnerhub::github::sim::{FaultRule, Faults};
use serde_json::{Value, json};

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
