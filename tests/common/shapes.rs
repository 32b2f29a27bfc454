//! JSON shape comparison against the fixtures, and a webhook receiver (simulator tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::fixtures_dir;

pub fn fixture(relative: &str) -> Value {
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences in keys and JSON types between `actual` and `expected`, at every level. Null on
/// either side matches anything (nullable fields); each array item must match one of the fixture's
/// items (an empty array in the fixture accepts any items).
pub fn shape_diff(actual: &Value, expected: &Value, path: &str, out: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(a), Value::Object(e)) => {
            for k in e.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}/{k}: missing"));
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}/{k}: not in the fixture"));
            }
            for (k, av) in a {
                if let Some(ev) = e.get(k) {
                    shape_diff(av, ev, &format!("{path}/{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            // Fixture arrays may mix shapes (optional keys): an item must match one of them.
            for (i, item) in a.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let diffs: Vec<Vec<String>> = e
                    .iter()
                    .map(|candidate| {
                        let mut d = Vec::new();
                        shape_diff(item, candidate, &item_path, &mut d);
                        d
                    })
                    .collect();
                if !diffs.is_empty() && diffs.iter().all(|d| !d.is_empty()) {
                    out.extend(diffs.into_iter().next().unwrap_or_default());
                }
            }
        }
        (a, e) if kind(a) == kind(e) => {}
        (a, e) => out.push(format!(
            "{path}: {} where the fixture has {}",
            kind(a),
            kind(e)
        )),
    }
}

#[track_caller]
pub fn assert_same_shape(actual: &Value, fixture_path: &str) {
    let mut diffs = Vec::new();
    shape_diff(actual, &fixture(fixture_path), "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "shape differs from {fixture_path}:\n  {}",
        diffs.join("\n  ")
    );
}

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    pub fn event(&self) -> &str {
        self.header("x-github-event")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }
    pub fn action(&self) -> String {
        self.json()
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
    /// `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body.
    pub fn signature_ok(&self, secret: &str) -> bool {
        let Some(hex_sig) = self.header("x-hub-signature-256").strip_prefix("sha256=") else {
            return false;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        mac.verify_slice(&sig).is_ok()
    }
}

/// A webhook receiver on 127.0.0.1:0 that records every delivery.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock().unwrap().push(Received { headers, body });
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, received }
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a delivery matching `pred` arrived; panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.all().into_iter().find(|r| pred(r)) {
                return r;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|r| format!("{}.{}", r.event(), r.action()))
                    .collect();
                panic!("no {what} delivery within {timeout:?}; received: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `event` with `action` about workflow job `job_id` (any job when `None`).
    pub async fn wait_job(&self, action: &str, job_id: Option<u64>) -> Received {
        self.wait_for(
            &format!("workflow_job.{action}"),
            Duration::from_secs(20),
            |r| {
                r.event() == "workflow_job"
                    && r.action() == action
                    && job_id.is_none_or(|id| r.json()["workflow_job"]["id"].as_u64() == Some(id))
            },
        )
        .await
    }
}
