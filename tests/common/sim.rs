//! The simulator under test, its credentials, and REST helpers shared by the contract tests.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use runnerhub::github::sim::{SimApp, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use super::Receiver;

pub const TOKEN: &str = "test-pat";
pub const SECRET: &str = "test-webhook-secret";
pub const APP_ID: u64 = 4242;
pub const INSTALLATION_ID: u64 = 77;
pub const APP_KEY: &str = include_str!("../fixtures/TEST-ONLY-github-app-key.pem");
pub const APP_PUBLIC_KEY: &str = include_str!("../fixtures/TEST-ONLY-github-app-key.pub.pem");
pub const OTHER_KEY: &str = include_str!("../fixtures/TEST-ONLY-other-key.pem");

pub async fn start(receiver: Option<&Receiver>) -> SimHandle {
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

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

pub async fn call(
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

pub async fn api(sim: &SimHandle, method: Method, path: &str, body: Option<Value>) -> Resp {
    call(sim, method, path, Some(&format!("Bearer {TOKEN}")), body).await
}

#[track_caller]
pub fn assert_github_error(r: &Resp, status: StatusCode) {
    assert_eq!(r.status, status, "body: {}", r.json);
    assert!(
        r.json["message"].is_string() && r.json["documentation_url"].is_string(),
        "GitHub error body: {}",
        r.json
    );
}

pub fn jit_body(name: &str, labels: &[&str]) -> Value {
    json!({"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"})
}

pub fn jwt(key_pem: &str, iss: Value, iat_offset: i64, exp_offset: i64) -> String {
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

pub async fn register(sim: &SimHandle, name: &str, labels: &[&str]) -> (u64, String) {
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
