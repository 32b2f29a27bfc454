//! A GitHub App installed on several organizations (DESIGN §12, #16 part 4): without
//! `github.installation_id`, each call uses the token of the App's installation on the
//! repository's (or organization's) owner, the one its deliveries name in `installation.id`,
//! found with `GET /app/installations`; tokens are cached per installation.

mod common;

use std::path::Path;

use common::sim::{APP_ID, APP_PUBLIC_KEY, INSTALLATION_ID, SECRET, TOKEN};
use runnerhub::config::{Config, GithubConfig};
use runnerhub::github::sim::{JobSpec, SimApp, SimConfig, Simulator};
use runnerhub::github::{GithubApi, GithubClient, GithubError, JitRequest, RunnerScope};

fn key_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/TEST-ONLY-github-app-key.pem")
}

#[tokio::test]
async fn each_owner_gets_its_installations_token() {
    let sim = Simulator::start(SimConfig {
        webhook_secret: SECRET.into(),
        tokens: vec![TOKEN.into()],
        owners: vec!["acme".into(), "beta".into()],
        app: Some(SimApp {
            app_id: APP_ID,
            client_id: None,
            installation_id: INSTALLATION_ID,
            public_key_pem: APP_PUBLIC_KEY.into(),
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (acme, beta) = (INSTALLATION_ID, INSTALLATION_ID + 1);
    let client = GithubClient::from_config(&GithubConfig {
        api_url: sim.url(),
        app_id: Some(APP_ID.to_string()),
        installation_id: None,
        private_key_path: Some(key_path()),
        ..Default::default()
    })
    .unwrap();

    let api = RunnerScope::repository("acme/api").unwrap();
    let web = RunnerScope::repository("beta/web").unwrap();
    client.list_runners(&api).await.unwrap();
    let jit = client
        .generate_jit_config(&JitRequest {
            scope: web.clone(),
            name: "runnerhub-linux-beta1".into(),
            labels: vec!["self-hosted".into(), "linux".into()],
            runner_group_id: 1,
        })
        .await
        .unwrap();
    assert_eq!(jit.runner_name, "runnerhub-linux-beta1");
    client
        .list_runners(&RunnerScope::organization("beta"))
        .await
        .unwrap();
    client.list_runners(&api).await.unwrap();
    // One token per installation, reused.
    assert_eq!(sim.issued_tokens(), vec![acme, beta]);

    // An owner the App is not installed on: said before any call for it.
    let other = RunnerScope::repository("other/x").unwrap();
    match client.list_runners(&other).await {
        Err(GithubError::Unauthorized(message)) => {
            assert!(message.contains("not installed on `other`"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The deliveries name the installation the token came from.
    sim.enqueue_job(JobSpec::new("beta/web", &["self-hosted", "linux"]))
        .unwrap();
    sim.send_push("acme/api", "main");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for d in sim.deliveries() {
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        let expected = if d.repository.as_deref() == Some("beta/web") {
            beta
        } else {
            acme
        };
        if let Some(id) = body.pointer("/installation/id") {
            assert_eq!(id, expected, "{} of {:?}", d.event, d.repository);
        }
    }

    // A token of one installation is refused on another's repositories (as on GitHub), so the
    // configured installation_id serves only its own account.
    let single = GithubClient::from_config(&GithubConfig {
        api_url: sim.url(),
        app_id: Some(APP_ID.to_string()),
        installation_id: Some(acme),
        private_key_path: Some(key_path()),
        ..Default::default()
    })
    .unwrap();
    single.list_runners(&api).await.unwrap();
    assert!(single.list_runners(&web).await.is_err());
    sim.shutdown().await;
}

#[test]
fn installation_id_is_optional_but_the_key_is_not() {
    let env = [("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let parse = |github: &str| {
        Config::from_toml_with_env(&format!("[github]\n{github}"), Path::new("t.toml"), &env)
    };
    let key = key_path().display().to_string();
    assert!(parse(&format!("app_id = \"1\"\nprivate_key_path = \"{key}\"")).is_ok());
    let err = parse("app_id = \"1\"").unwrap_err().to_string();
    assert!(
        err.contains("github.app_id") && err.contains("private_key_path"),
        "{err}"
    );
    let err = parse("installation_id = 5").unwrap_err().to_string();
    assert!(err.contains("github.app_id"), "{err}");
}
