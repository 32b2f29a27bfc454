//! WebSocket client helpers for the live feed tests.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{TestApp, job_payload};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for one message before failing.
pub const WAIT: Duration = Duration::from_secs(15);

pub async fn connect(app: &TestApp, query: &str) -> Ws {
    connect_with(app, query, None).await
}

/// Connects until the snapshot satisfies `ready`; returns the connection and that snapshot.
/// A change is published once its commit is on disk, a moment after REST reads can see the
/// commit, so a client that connects right after `settle` may get the snapshot just before.
#[allow(dead_code)]
pub async fn connect_when(
    app: &TestApp,
    query: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (Ws, serde_json::Value) {
    for _ in 0..200 {
        let mut ws = connect(app, query).await;
        let snapshot = next(&mut ws).await;
        if ready(&snapshot) {
            return (ws, snapshot);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the snapshot never satisfied the condition");
}

/// Connects to `/ws?query`, optionally with `Authorization: Bearer <bearer>`.
pub async fn connect_with(app: &TestApp, query: &str, bearer: Option<&str>) -> Ws {
    let url = format!("ws://{}/ws?{query}", app.addr);
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next text message as JSON; a close frame as `{"close": code, "reason": …}`.
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("stream open")
            .expect("frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return serde_json::json!({"close": code, "reason": reason});
            }
            _ => continue,
        }
    }
}

/// The next message of `kind`, skipping others.
/// The next message that is not a queued job's new wait reason (the scheduler publishes a
/// `job` event with `wait_reason` whenever why a job waits changes, as timing makes them;
/// the deliveries' own `job` events carry none).
pub async fn next_change(ws: &mut Ws) -> Value {
    loop {
        let m = next(ws).await;
        if !is_wait_update(&m) {
            return m;
        }
    }
}

/// A `job` event the scheduler published because a queued job's wait reason changed.
pub fn is_wait_update(m: &Value) -> bool {
    m["type"] == "job" && m["data"].get("wait_reason").is_some()
}

pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = next(ws).await;
        assert!(
            m.get("close").is_none(),
            "closed while waiting for {kind}: {m}"
        );
        if m["type"] == kind {
            return m;
        }
    }
}

/// State-change messages until one has `seq >= last`; control messages are returned too.
pub async fn read_through(ws: &mut Ws, last: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = next(ws).await;
        assert!(m.get("close").is_none(), "closed early: {m}");
        let done = is_change(&m) && m["seq"].as_i64().unwrap() >= last;
        seen.push(m);
        if done {
            return seen;
        }
    }
}

/// Messages until a state change satisfies `done` (called on state changes only, in order);
/// control messages are returned too.
pub async fn read_until(ws: &mut Ws, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = next(ws).await;
        assert!(m.get("close").is_none(), "closed early: {m}");
        let stop = is_change(&m) && done(&m);
        seen.push(m);
        if stop {
            return seen;
        }
    }
}

/// The live event types that deliveries make; `runner` and `pool` come from the scheduler.
pub const DELIVERY_KINDS: &[&str] = &["webhook", "job", "workflow_run"];

/// Whether `m` is a state change of one of `kinds`.
pub fn is_kind(m: &Value, kinds: &[&str]) -> bool {
    is_change(m) && kinds.iter().any(|k| m["type"] == *k)
}

/// The state changes among `messages` of one of `kinds`, in order.
pub fn of_kinds<'a>(messages: &'a [Value], kinds: &[&str]) -> Vec<&'a Value> {
    messages.iter().filter(|m| is_kind(m, kinds)).collect()
}

/// Whether `m` is the `job` event of job `id`.
/// A delivery's `job` event for job `id` (not a wait-reason update).
pub fn is_job(m: &Value, id: i64) -> bool {
    is_kind(m, &["job"]) && !is_wait_update(m) && m["data"]["id"] == id
}

/// The ids of the deliveries' `job` events among `messages` (wait-reason updates left out),
/// in order.
pub fn job_ids(messages: &[Value]) -> Vec<i64> {
    of_kinds(messages, &["job"])
        .iter()
        .filter(|m| !is_wait_update(m))
        .map(|m| m["data"]["id"].as_i64().unwrap())
        .collect()
}

/// The seq of the last state change among `messages`.
pub fn last_seq(messages: &[Value]) -> i64 {
    *seqs(messages).last().expect("no state change")
}

/// The state changes among `messages`, without control messages.
pub fn changes(messages: &[Value]) -> Vec<Value> {
    messages.iter().filter(|m| is_change(m)).cloned().collect()
}

/// What the live log of the database at `url` holds with `after < seq <= through`, as the
/// messages a client receives (replay sends the stored text byte for byte).
pub async fn logged(url: &str, after: i64, through: i64) -> Vec<Value> {
    let store = runnerhub::app::open_store(url).await.unwrap();
    store
        .live_events_after(after, through, u32::MAX)
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(&row.message).unwrap())
        .collect()
}

/// State changes carry a `time`; control messages do not.
pub fn is_change(m: &Value) -> bool {
    m.get("time").is_some()
}

pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .filter(|m| is_change(m))
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// A signed `workflow_job` delivery for job `id` of `repository`.
pub fn job_in(repository: &str, id: i64, action: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&job_payload(
        id,
        action,
        &["self-hosted", "linux", "x64", "docker"],
    ))
    .unwrap();
    v["repository"]["full_name"] = repository.into();
    serde_json::to_vec(&v).unwrap()
}

/// Delivers `job_in(repository, id, action)` and checks it was accepted.
pub async fn deliver_job(app: &TestApp, repository: &str, id: i64, action: &str) {
    let body = job_in(repository, id, action);
    let r = app
        .deliver(
            "workflow_job",
            &format!("d-{id}-{action}-{}", uuid()),
            &body,
        )
        .await;
    assert!(r.status().is_success(), "delivery refused: {}", r.status());
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
