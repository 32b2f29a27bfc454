//! `GithubClient` against a stub GitHub on 127.0.0.1:0 serving the shared REST fixtures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::github_stub::{Reply, Stub, fixture};
use runnerhub::config::{GithubConfig, Secret};
use runnerhub::github::{
    DeleteOutcome, GithubApi, GithubClient, GithubError, JitRequest, RetryPolicy, RunnerScope,
};

const PAT: &str = "ghp_test_token_never_logged";

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_rate_limit_wait: Duration::from_secs(5),
        total_budget: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
    }
}

fn pat_client(stub: &Stub) -> GithubClient {
    let cfg = GithubConfig {
        api_url: stub.url(),
        token: Some(Secret::new(PAT)),
        ..Default::default()
    };
    GithubClient::from_config(&cfg)
        .unwrap()
        .with_retry_policy(fast_policy())
}

fn jit_request(scope: RunnerScope) -> JitRequest {
    JitRequest {
        scope,
        name: "runnerhub-linux-0a1b2c3d".into(),
        labels: vec!["self-hosted".into(), "linux".into()],
        runner_group_id: 1,
    }
}

fn repo() -> RunnerScope {
    RunnerScope::repository("octo/hello").unwrap()
}

#[tokio::test]
async fn jit_config_sends_documented_request_and_reads_fixture() {
    let stub = Stub::start(|_req, _n| {
        Reply::json(
            201,
            fixture("POST_repos_owner_repo_actions_runners_generate_jitconfig.201.default.json"),
        )
    })
    .await;
    let client = pat_client(&stub);

    let jit = client
        .generate_jit_config(&jit_request(repo()))
        .await
        .unwrap();
    assert_eq!(jit.runner_id, 23);
    assert_eq!(jit.runner_name, "New runner");
    assert_eq!(jit.encoded_jit_config.expose(), "abc123");

    let reqs = stub.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        "/repos/octo/hello/actions/runners/generate-jitconfig"
    );
    assert_eq!(
        req.header("authorization").unwrap(),
        format!("Bearer {PAT}")
    );
    assert_eq!(req.header("accept").unwrap(), "application/vnd.github+json");
    assert_eq!(req.header("x-github-api-version").unwrap(), "2022-11-28");
    assert!(req.header("user-agent").unwrap().starts_with("runnerhub/"));
    assert_eq!(req.body["name"], "runnerhub-linux-0a1b2c3d");
    assert_eq!(req.body["runner_group_id"], 1);
    assert_eq!(
        req.body["labels"],
        serde_json::json!(["self-hosted", "linux"])
    );

    // Organization scope goes to /orgs/{org}/….
    client
        .generate_jit_config(&jit_request(RunnerScope::organization("octo")))
        .await
        .unwrap();
    assert_eq!(
        stub.requests()[1].path,
        "/orgs/octo/actions/runners/generate-jitconfig"
    );
}

#[tokio::test]
async fn jit_config_errors_map_status_and_carry_githubs_message() {
    let stub = Stub::start(|req, _n| {
        if req.method == "GET" {
            // The conflict is looked up: no runner of that name, so it is not ours to replace.
            return Reply::json(200, r#"{"total_count":0,"runners":[]}"#.into());
        }
        let status = match req.body["name"].as_str().unwrap() {
            "conflict" => 409,
            "invalid" => 422,
            "missing" => 404,
            _ => 401,
        };
        Reply::json(status, format!(r#"{{"message":"msg-{status}"}}"#))
    })
    .await;
    let client = pat_client(&stub);
    let call = |name: &str| {
        let mut req = jit_request(repo());
        req.name = name.into();
        let client = &client;
        async move { client.generate_jit_config(&req).await.unwrap_err() }
    };
    let err = call("conflict").await;
    assert!(
        matches!(&err, GithubError::NameConflict(m) if m == "msg-409"),
        "{err:?}"
    );
    let err = call("invalid").await;
    assert!(
        matches!(&err, GithubError::Validation(m) if m == "msg-422"),
        "{err:?}"
    );
    let err = call("missing").await;
    assert!(
        matches!(&err, GithubError::NotFound(m) if m == "msg-404"),
        "{err:?}"
    );
    let err = call("bad-credentials").await;
    assert!(
        matches!(&err, GithubError::Unauthorized(m) if m == "msg-401"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(PAT));
    // 4xx are answers, not failures: never retried. The 409 is looked up once (a GET).
    let methods: Vec<String> = stub.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["POST", "GET", "POST", "POST", "POST"]);
}

#[tokio::test]
async fn delete_maps_204_404_422() {
    let stub = Stub::start(|req, _n| match req.path.rsplit('/').next().unwrap() {
        "1" => Reply::empty(204),
        "2" => Reply::json(404, r#"{"message":"Not Found"}"#.into()),
        _ => Reply::json(422, r#"{"message":"Runner is busy"}"#.into()),
    })
    .await;
    let client = pat_client(&stub);
    assert_eq!(
        client.delete_runner(&repo(), 1).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        client.delete_runner(&repo(), 2).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert_eq!(
        client.delete_runner(&repo(), 3).await.unwrap(),
        DeleteOutcome::Busy
    );
    let reqs = stub.requests();
    assert_eq!(reqs[0].method, "DELETE");
    assert_eq!(reqs[0].path, "/repos/octo/hello/actions/runners/1");
}

#[tokio::test]
async fn list_runners_reads_fixture_and_walks_all_pages() {
    let stub = Stub::start(|req, _n| {
        if req.path.starts_with("/orgs/") {
            return Reply::json(200, fixture("GET_orgs_org_actions_runners.200.default.json"));
        }
        // 150 runners: a full page of 100, then 50.
        let page: usize = req.query_param("page").unwrap().parse().unwrap();
        let ids = if page == 1 { 1..=100 } else { 101..=150 };
        let runners: Vec<_> = ids
            .map(|id| serde_json::json!({"id": id, "name": format!("r{id}"), "status": "online", "busy": false, "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}]}))
            .collect();
        Reply::json(200, serde_json::json!({"total_count": 150, "runners": runners}).to_string())
    })
    .await;
    let client = pat_client(&stub);

    let org = client
        .list_runners(&RunnerScope::organization("octo"))
        .await
        .unwrap();
    assert_eq!(org.len(), 2);
    assert_eq!(org[0].id, 23);
    assert_eq!(org[0].name, "linux_runner");
    assert_eq!(org[0].status, "online");
    assert!(org[0].busy);
    assert_eq!(org[0].labels, vec!["self-hosted", "X64", "Linux"]);

    let all = client.list_runners(&repo()).await.unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(all[149].name, "r150");
    let pages: Vec<_> = stub.requests()[1..]
        .iter()
        .map(|r| {
            (
                r.query_param("page").unwrap(),
                r.query_param("per_page").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pages,
        vec![("1".into(), "100".into()), ("2".into(), "100".into())]
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let stub = Stub::start(|_req, n| match n {
        0 => Reply::json(502, "bad gateway".into()),
        _ => Reply::empty(204),
    })
    .await;
    let client = pat_client(&stub);
    assert_eq!(
        client.delete_runner(&repo(), 7).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_give_up_after_max_attempts() {
    let stub = Stub::start(|_req, _n| Reply::empty(503)).await;
    let client = pat_client(&stub);
    let err = client.delete_runner(&repo(), 7).await.unwrap_err();
    assert!(
        matches!(err, GithubError::Server { status: 503 }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(stub.requests().len(), 4);
}

#[tokio::test]
async fn transport_errors_are_retried_and_reported() {
    // A port that was just free: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = GithubConfig {
        api_url: format!("http://127.0.0.1:{port}"),
        token: Some(Secret::new(PAT)),
        ..Default::default()
    };
    let client = GithubClient::from_config(&cfg)
        .unwrap()
        .with_retry_policy(fast_policy());
    let err = client.list_runners(&repo()).await.unwrap_err();
    assert!(
        matches!(&err, GithubError::Transport(m) if m.contains("connection")),
        "{err:?}"
    );
}

#[tokio::test]
async fn secondary_rate_limit_waits_for_retry_after() {
    let stub = Stub::start(|_req, n| match n {
        0 => Reply::json(429, r#"{"message":"secondary rate limit"}"#.into())
            .header("retry-after", "1"),
        _ => Reply::empty(204),
    })
    .await;
    let client = pat_client(&stub);
    let started = Instant::now();
    assert_eq!(
        client.delete_runner(&repo(), 7).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn long_rate_limits_are_returned_not_slept() {
    let reset = chrono::Utc::now().timestamp() + 3600;
    let stub = Stub::start(move |req, _n| {
        if req.path.ends_with("/1") {
            Reply::json(403, r#"{"message":"API rate limit exceeded"}"#.into())
                .header("x-ratelimit-limit", "5000")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset.to_string())
        } else {
            Reply::json(429, "{}".into()).header("retry-after", "120")
        }
    })
    .await;
    let client = pat_client(&stub);

    let err = client.delete_runner(&repo(), 2).await.unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { retry_after } if retry_after == Duration::from_secs(120)),
        "{err:?}"
    );

    let started = Instant::now();
    let err = client.delete_runner(&repo(), 1).await.unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { retry_after } if retry_after > Duration::from_secs(3500)),
        "{err:?}"
    );
    assert_eq!(client.rate_limit().unwrap().remaining, 0);
    // The spent budget is remembered: the next call does not even reach GitHub.
    let before = stub.requests().len();
    let err = client.delete_runner(&repo(), 3).await.unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    assert_eq!(stub.requests().len(), before);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn metrics_count_requests_by_endpoint_template_and_track_budget() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A local recorder is per thread, hence the current-thread runtime.
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let stub = Stub::start(|_req, _n| {
                Reply::json(
                    201,
                    fixture(
                        "POST_repos_owner_repo_actions_runners_generate_jitconfig.201.default.json",
                    ),
                )
                .header("x-ratelimit-remaining", "4321")
                .header("x-ratelimit-limit", "5000")
            })
            .await;
            let client = pat_client(&stub);
            client
                .generate_jit_config(&jit_request(repo()))
                .await
                .unwrap();
            client
                .generate_jit_config(&jit_request(repo()))
                .await
                .unwrap();
            assert_eq!(client.rate_limit().unwrap().remaining, 4321);
        })
    });
    let text = handle.render();
    assert!(
        text.contains(r#"github_api_requests_total{endpoint="generate_jitconfig",status="201"} 2"#),
        "{text}"
    );
    assert!(text.contains("github_rate_limit_remaining 4321"), "{text}");
    assert!(
        !text.contains("octo/hello"),
        "raw paths must not become labels: {text}"
    );
}

mod app_auth {
    use super::*;
    use common::github_stub::Recorded;

    const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/TEST-ONLY-github-app-key.pub.pem");

    fn app_client(stub: &Stub) -> GithubClient {
        let cfg = GithubConfig {
            api_url: stub.url(),
            app_id: Some("12345".into()),
            installation_id: Some(42),
            private_key_path: Some(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/TEST-ONLY-github-app-key.pem"
                )
                .into(),
            ),
            ..Default::default()
        };
        GithubClient::from_config(&cfg)
            .unwrap()
            .with_retry_policy(fast_policy())
    }

    /// Verifies the App JWT as GitHub would, and answers with a token valid for `valid_for`.
    fn token_exchange(req: &Recorded, n: usize, valid_for: chrono::Duration) -> Reply {
        #[derive(serde::Deserialize)]
        struct Claims {
            iat: i64,
            exp: i64,
            iss: String,
        }
        let jwt = req
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY).unwrap();
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        let Ok(data) = jsonwebtoken::decode::<Claims>(&jwt, &key, &validation) else {
            return Reply::json(
                401,
                r#"{"message":"A JSON web token could not be decoded"}"#.into(),
            );
        };
        let now = chrono::Utc::now().timestamp();
        assert_eq!(data.claims.iss, "12345");
        assert!(
            (data.claims.iat - (now - 60)).abs() <= 5,
            "iat is back-dated 60 s"
        );
        assert!(
            data.claims.exp - data.claims.iat <= 600,
            "GitHub refuses more than 10 min"
        );
        assert!(data.claims.exp > now);
        let mut body: serde_json::Value = serde_json::from_str(&fixture(
            "POST_app_installations_installation_id_access_tokens.201.default.json",
        ))
        .unwrap();
        body["token"] = format!("ghs_installation_{n}").into();
        body["expires_at"] = (chrono::Utc::now() + valid_for).to_rfc3339().into();
        Reply::json(201, body.to_string())
    }

    fn github(
        valid_for: chrono::Duration,
        exchanges: Arc<AtomicUsize>,
    ) -> impl Fn(&Recorded, usize) -> Reply {
        move |req, _n| {
            if req.path == "/app/installations/42/access_tokens" {
                assert_eq!(req.method, "POST");
                let n = exchanges.fetch_add(1, Ordering::SeqCst);
                return token_exchange(req, n, valid_for);
            }
            let expected = format!(
                "Bearer ghs_installation_{}",
                exchanges.load(Ordering::SeqCst) - 1
            );
            if req.header("authorization") != Some(expected.as_str()) {
                return Reply::json(401, r#"{"message":"Bad credentials"}"#.into());
            }
            Reply::json(
                200,
                fixture("GET_repos_owner_repo_actions_runners.200.default.json"),
            )
        }
    }

    #[tokio::test]
    async fn installation_token_is_exchanged_once_and_shared() {
        let exchanges = Arc::new(AtomicUsize::new(0));
        let stub = Stub::start(github(chrono::Duration::hours(1), exchanges.clone())).await;
        let client = app_client(&stub);
        let scope = repo();
        // Concurrent first calls share one exchange.
        let (a, b, c) = tokio::join!(
            client.list_runners(&scope),
            client.list_runners(&scope),
            client.list_runners(&scope)
        );
        assert_eq!(a.unwrap().len(), 2);
        b.unwrap();
        c.unwrap();
        client.list_runners(&scope).await.unwrap();
        assert_eq!(exchanges.load(Ordering::SeqCst), 1);
        assert_eq!(stub.requests().len(), 5);
    }

    #[tokio::test]
    async fn installation_token_is_refreshed_near_expiry() {
        // Valid for 4 minutes: inside the 5-minute margin, so every call needs a new one.
        let exchanges = Arc::new(AtomicUsize::new(0));
        let stub = Stub::start(github(chrono::Duration::minutes(4), exchanges.clone())).await;
        let client = app_client(&stub);
        client.list_runners(&repo()).await.unwrap();
        client.list_runners(&repo()).await.unwrap();
        assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn revoked_installation_token_is_replaced_once() {
        let exchanges = Arc::new(AtomicUsize::new(0));
        let inner = github(chrono::Duration::hours(1), exchanges.clone());
        // GitHub refuses the first installation token as if it had been revoked.
        let stub = Stub::start(move |req, n| {
            if req.header("authorization") == Some("Bearer ghs_installation_0") {
                return Reply::json(401, r#"{"message":"Bad credentials"}"#.into());
            }
            inner(req, n)
        })
        .await;
        let client = app_client(&stub);
        assert_eq!(client.list_runners(&repo()).await.unwrap().len(), 2);
        assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    }
}

/// A JIT registration retried after a client timeout: GitHub registered the runner on the first
/// attempt, whose answer came too late, and refuses the retry's name with 409. The client finds
/// the registration by name, deletes it and registers again, so none is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_config_retried_after_a_timeout_replaces_the_registration_it_leaked() {
    let registered: Arc<std::sync::Mutex<Vec<i64>>> = Arc::default();
    let github = registered.clone();
    let stub = Stub::start(move |req, n| {
        let mut registered = github.lock().unwrap();
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", _) if !registered.is_empty() => {
                Reply::json(409, r#"{"message":"Already exists"}"#.into())
            }
            ("POST", _) => {
                let id = 100 + n as i64;
                registered.push(id);
                let first = n == 0;
                drop(registered);
                if first {
                    // Registered, but the answer comes after the client gave up.
                    std::thread::sleep(Duration::from_millis(1500));
                }
                Reply::json(
                    201,
                    format!(
                        r#"{{"runner":{{"id":{id},"name":"runnerhub-linux-0a1b2c3d"}},"encoded_jit_config":"cfg-{id}"}}"#
                    ),
                )
            }
            ("GET", _) => {
                let runners: Vec<_> = registered
                    .iter()
                    .map(|id| serde_json::json!({"id": id, "name": "runnerhub-linux-0a1b2c3d", "status": "offline", "busy": false, "labels": []}))
                    .collect();
                Reply::json(
                    200,
                    serde_json::json!({"total_count": runners.len(), "runners": runners}).to_string(),
                )
            }
            ("DELETE", path) => {
                let id: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
                registered.retain(|r| *r != id);
                Reply::empty(204)
            }
            _ => Reply::empty(500),
        }
    })
    .await;
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(300),
        ..fast_policy()
    };
    let client = pat_client(&stub).with_retry_policy(policy);

    let jit = client
        .generate_jit_config(&jit_request(repo()))
        .await
        .unwrap();
    assert_eq!(
        jit.encoded_jit_config.expose(),
        format!("cfg-{}", jit.runner_id)
    );
    assert_eq!(
        *registered.lock().unwrap(),
        vec![jit.runner_id],
        "exactly one registration left: the one whose config was returned"
    );
    let calls: Vec<String> = stub
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        calls.contains(&"DELETE /repos/octo/hello/actions/runners/100".to_string()),
        "{calls:?}"
    );
}

/// A 409 for a name whose runner is busy (running a job) never deletes it.
#[tokio::test]
async fn jit_config_conflict_with_a_busy_runner_keeps_it() {
    let stub = Stub::start(|req, _n| match req.method.as_str() {
        "POST" => Reply::json(409, r#"{"message":"Already exists"}"#.into()),
        "GET" => Reply::json(
            200,
            r#"{"total_count":1,"runners":[{"id":7,"name":"runnerhub-linux-0a1b2c3d","status":"online","busy":true,"labels":[]}]}"#.into(),
        ),
        _ => Reply::empty(500),
    })
    .await;
    let client = pat_client(&stub);
    let err = client
        .generate_jit_config(&jit_request(repo()))
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::NameConflict(_)), "{err:?}");
    assert!(stub.requests().iter().all(|r| r.method != "DELETE"));
}
