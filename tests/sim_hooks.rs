//! Contract tests of the simulator's webhook endpoints: repository and organization hooks,
//! the App's hook, `GET /app`, `GET /app/installations`, hook deliveries (cursor paging) and
//! redelivery. Keys and types match `fixtures/github/rest` and, for the calls the shared set
//! lacks, `fixtures/hand-written/rest`; each installed hook gets its own signed deliveries.

mod common;

use common::sim::*;
use common::{Receiver, assert_same_shape};
use reqwest::{Method, StatusCode};
use runnerhub::github::sim::JobSpec;
use serde_json::{Value, json};

fn hook_body(url: &str, secret: &str, events: &[&str]) -> Value {
    json!({
        "name": "web", "active": true, "events": events,
        "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"},
    })
}

#[tokio::test]
async fn repository_and_organization_hooks_follow_the_reference() {
    let sim = start(None).await;
    for (prefix, scope, hw) in [
        ("/repos/acme/api", "repos_owner_repo", true),
        ("/orgs/acme", "orgs_org", false),
    ] {
        let hooks = format!("{prefix}/hooks");
        let created = api(
            &sim,
            Method::POST,
            &hooks,
            Some(hook_body(
                "http://127.0.0.1:9/api/webhooks/github",
                "s",
                &["push"],
            )),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
        assert_same_shape(
            &created.json,
            &format!("../hand-written/rest/POST_{scope}_hooks.201.json"),
        );
        assert_eq!(
            created.json["config"]["secret"], "********",
            "secret never shown"
        );
        let id = created.json["id"].as_u64().unwrap();
        // Same URL and an overlapping event: GitHub's 422.
        let again = api(
            &sim,
            Method::POST,
            &hooks,
            Some(hook_body(
                "http://127.0.0.1:9/api/webhooks/github",
                "s",
                &["push"],
            )),
        )
        .await;
        assert_github_error(&again, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            again.json["message"]
                .as_str()
                .unwrap()
                .contains("already exists")
        );

        let list = api(&sim, Method::GET, &hooks, None).await;
        assert_same_shape(
            &list.json,
            &format!("../hand-written/rest/GET_{scope}_hooks.200.json"),
        );
        assert_eq!(list.json.as_array().unwrap().len(), 1);

        let patched = api(
            &sim,
            Method::PATCH,
            &format!("{hooks}/{id}"),
            Some(hook_body(
                "http://127.0.0.1:9/api/webhooks/github",
                "s2",
                &["push", "workflow_job"],
            )),
        )
        .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
        if hw {
            assert_same_shape(
                &patched.json,
                "../hand-written/rest/PATCH_repos_owner_repo_hooks_hook_id.200.json",
            );
        }
        assert_eq!(patched.json["events"], json!(["push", "workflow_job"]));

        let deleted = api(&sim, Method::DELETE, &format!("{hooks}/{id}"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_github_error(
            &api(&sim, Method::DELETE, &format!("{hooks}/{id}"), None).await,
            StatusCode::NOT_FOUND,
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn hook_administration_errors_are_githubs() {
    let sim = runnerhub::github::sim::Simulator::start(runnerhub::github::sim::SimConfig {
        tokens: vec![TOKEN.into()],
        read_only_tokens: vec!["read-only".into()],
        owners: vec!["acme".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_github_error(
        &api(&sim, Method::GET, "/repos/other/x/hooks", None).await,
        StatusCode::NOT_FOUND,
    );
    let refused = call(
        &sim,
        Method::GET,
        "/repos/acme/api/hooks",
        Some("Bearer read-only"),
        None,
    )
    .await;
    assert_github_error(&refused, StatusCode::FORBIDDEN);
    // The read-only token still reads other things.
    let runners = call(
        &sim,
        Method::GET,
        "/repos/acme/api/actions/runners",
        Some("Bearer read-only"),
        None,
    )
    .await;
    assert_eq!(runners.status, StatusCode::OK);
    let no_url = api(
        &sim,
        Method::POST,
        "/repos/acme/api/hooks",
        Some(json!({"name": "web", "config": {"content_type": "json"}})),
    )
    .await;
    assert_github_error(&no_url, StatusCode::UNPROCESSABLE_ENTITY);
    sim.shutdown().await;
}

#[tokio::test]
async fn each_hook_gets_its_own_signed_deliveries_and_redeliveries() {
    let repo_receiver = Receiver::start().await;
    let org_receiver = Receiver::start().await;
    let sim = start(None).await;
    let repo_hook = api(
        &sim,
        Method::POST,
        "/repos/acme/api/hooks",
        Some(hook_body(
            &repo_receiver.url,
            "repo-secret",
            &["push", "workflow_job"],
        )),
    )
    .await
    .json["id"]
        .as_u64()
        .unwrap();
    let org_hook = api(
        &sim,
        Method::POST,
        "/orgs/acme/hooks",
        Some(hook_body(
            &org_receiver.url,
            "org-secret",
            &["pull_request"],
        )),
    )
    .await
    .json["id"]
        .as_u64()
        .unwrap();
    sim.send_push("acme/api", "main");
    sim.send_pull_request("acme/api", "feature");
    sim.send_push("other/repo", "main"); // no hook covers it
    let push = repo_receiver
        .wait_for("push", std::time::Duration::from_secs(10), |r| {
            r.event() == "push"
        })
        .await;
    assert!(push.signature_ok("repo-secret"));
    assert_eq!(push.header("X-GitHub-Hook-ID"), repo_hook.to_string());
    assert_eq!(
        push.header("X-GitHub-Hook-Installation-Target-Type"),
        "repository"
    );
    let pr = org_receiver
        .wait_for("pull_request", std::time::Duration::from_secs(10), |r| {
            r.event() == "pull_request"
        })
        .await;
    assert!(pr.signature_ok("org-secret"));
    assert_eq!(
        pr.header("X-GitHub-Hook-Installation-Target-Type"),
        "organization"
    );
    assert_same_shape(&pr.json(), "webhooks/pull_request.opened.payload.json");
    assert_eq!(pr.json()["repository"]["full_name"], "acme/api");
    assert_eq!(
        repo_receiver.all().len(),
        1,
        "the repo hook does not get pull_request"
    );

    // Deliveries per hook, paged by cursor.
    for _ in 0..3 {
        sim.send_push("acme/api", "main");
    }
    repo_receiver
        .wait_for("4 pushes", std::time::Duration::from_secs(10), |_| {
            repo_receiver.all().len() >= 4
        })
        .await;
    let base = format!("/repos/acme/api/hooks/{repo_hook}/deliveries");
    let first = api(&sim, Method::GET, &format!("{base}?per_page=3"), None).await;
    assert_same_shape(
        &first.json,
        "rest/GET_repos_owner_repo_hooks_hook_id_deliveries.200.default.json",
    );
    assert_eq!(first.json.as_array().unwrap().len(), 3);
    let link = first.headers["link"].to_str().unwrap().to_string();
    assert!(link.contains("rel=\"next\""), "{link}");
    let cursor = link
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();
    let rest = api(
        &sim,
        Method::GET,
        &format!("{base}?per_page=3&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest.json.as_array().unwrap().len(), 1);
    assert!(!rest.headers.contains_key("link"), "last page");
    assert_github_error(
        &api(
            &sim,
            Method::GET,
            &format!("/orgs/acme/hooks/{repo_hook}/deliveries"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let org_list = api(
        &sim,
        Method::GET,
        &format!("/orgs/acme/hooks/{org_hook}/deliveries"),
        None,
    )
    .await;
    assert_eq!(org_list.json.as_array().unwrap().len(), 1);

    // Redelivery through the API: same GUID, `redelivery: true`, to the hook's current URL.
    let delivery = &first.json[0];
    let attempts = api(
        &sim,
        Method::POST,
        &format!("{base}/{}/attempts", delivery["id"]),
        None,
    )
    .await;
    assert_eq!(attempts.status, StatusCode::ACCEPTED);
    assert_same_shape(
        &attempts.json,
        "../hand-written/rest/POST_repos_owner_repo_hooks_hook_id_deliveries_delivery_id_attempts.202.json",
    );
    let guid = delivery["guid"].as_str().unwrap().to_string();
    repo_receiver
        .wait_for("the redelivery", std::time::Duration::from_secs(10), |_| {
            repo_receiver
                .all()
                .iter()
                .filter(|r| r.header("X-GitHub-Delivery") == guid)
                .count()
                == 2
        })
        .await;
    let latest = api(&sim, Method::GET, &format!("{base}?per_page=1"), None).await;
    assert_eq!(latest.json[0]["guid"], guid.as_str());
    assert_eq!(latest.json[0]["redelivery"], true);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_apps_hook_config_app_and_installations() {
    let receiver = Receiver::start().await;
    let sim = start(None).await;
    let app_jwt = format!("Bearer {}", jwt(APP_KEY, json!(APP_ID), -60, 540));
    let app_call = |method, path: &'static str, body| {
        let auth = app_jwt.clone();
        let sim = &sim;
        async move { call(sim, method, path, Some(&auth), body).await }
    };
    let config = app_call(Method::GET, "/app/hook/config", None).await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.json);
    assert_same_shape(&config.json, "rest/GET_app_hook_config.200.default.json");
    let patched = app_call(
        Method::PATCH,
        "/app/hook/config",
        Some(json!({"url": receiver.url, "content_type": "json", "secret": "app-secret", "insecure_ssl": "0"})),
    )
    .await;
    assert_same_shape(
        &patched.json,
        "../hand-written/rest/PATCH_app_hook_config.200.json",
    );
    assert_eq!(patched.json["secret"], "********");
    assert_eq!(patched.json["url"], receiver.url.as_str());
    // A PAT cannot manage the App.
    assert_github_error(
        &api(&sim, Method::GET, "/app/hook/config", None).await,
        StatusCode::UNAUTHORIZED,
    );

    let app = app_call(Method::GET, "/app", None).await;
    assert_same_shape(&app.json, "rest/GET_app.200.default.json");
    assert_eq!(app.json["id"], APP_ID);
    assert!(
        app.json["events"]
            .as_array()
            .unwrap()
            .contains(&json!("workflow_job"))
    );
    let installations = app_call(Method::GET, "/app/installations", None).await;
    assert_same_shape(
        &installations.json,
        "rest/GET_app_installations.200.default.json",
    );
    assert_eq!(installations.json[0]["id"], INSTALLATION_ID);

    // The App's hook gets the App's events, signed with its secret, target type integration.
    let job = sim
        .enqueue_job(JobSpec::new("acme/api", &["self-hosted"]))
        .unwrap();
    let queued = receiver.wait_job("queued", Some(job.job_id)).await;
    assert!(queued.signature_ok("app-secret"));
    assert_eq!(
        queued.header("X-GitHub-Hook-Installation-Target-Type"),
        "integration"
    );
    let deliveries = app_call(Method::GET, "/app/hook/deliveries", None).await;
    assert_same_shape(
        &deliveries.json,
        "rest/GET_app_hook_deliveries.200.default.json",
    );
    assert!(
        deliveries
            .json
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["installation_id"] == INSTALLATION_ID)
    );
    sim.shutdown().await;
}
