//! The webhook sender: one task sends deliveries in the order state changes produced them, signs
//! the raw body, applies the delivery faults, and writes every attempt into the delivery log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::Shared;
use super::hooks::{self, Target};
use super::state::{DeliveryRecord, PendingDelivery};

/// GitHub waits 10 s for the receiver's answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery held back to be reordered goes out after this long if nothing follows it.
const REORDER_HOLD_MAX: Duration = Duration::from_secs(2);
/// Response bodies kept in the log.
const MAX_LOGGED_RESPONSE_BYTES: usize = 4096;
pub const USER_AGENT: &str = "GitHub-Hookshot/sim";

/// A delivery ready to go: its GUID and raw body are fixed, so retries and duplicates are identical.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub body: String,
    pub redelivery: bool,
    /// The hook it goes to: each hook gets its own delivery (and GUID) of an event.
    pub target: Target,
}

impl Outgoing {
    pub fn new(d: &PendingDelivery, target: Target) -> Self {
        Self {
            guid: crate::webhook::new_delivery_guid(),
            event: d.event.into(),
            action: d.action.clone(),
            repository: d.repository.clone(),
            repository_id: d.repository_id,
            body: serde_json::to_string(&d.payload).expect("payload serializes"),
            redelivery: false,
            target,
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature_256(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn signature_1(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends deliveries until shutdown.
pub async fn run_sender(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let client = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .build()
        .expect("reqwest client builds");
    let mut held: Option<Outgoing> = None;
    loop {
        let next = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            next = rx.recv() => next,
            _ = tokio::time::sleep(REORDER_HOLD_MAX), if held.is_some() => {
                if let Some(h) = held.take() {
                    send_and_log(&shared, &client, h).await;
                }
                continue;
            }
        };
        let Some(out) = next else { break };
        let faults = if out.redelivery {
            Default::default()
        } else {
            shared.faults().for_delivery()
        };
        if faults.drop {
            log(
                &shared,
                &out,
                None,
                "dropped (simulated fault)".into(),
                0,
                String::new(),
                Duration::ZERO,
            );
        } else if faults.reorder && held.is_none() {
            held = Some(out);
            continue;
        } else if let Some(ms) = faults.delay_ms {
            let (shared2, client2, out2) = (Arc::clone(&shared), client.clone(), out.clone());
            let cancel = shared.cancel.clone();
            shared.tasks.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => send_and_log(&shared2, &client2, out2).await,
                }
            });
        } else {
            send_and_log(&shared, &client, out.clone()).await;
            if faults.duplicate {
                send_and_log(&shared, &client, out).await;
            }
        }
        if let Some(h) = held.take() {
            send_and_log(&shared, &client, h).await;
        }
    }
}

/// Queues a logged delivery again with the same GUID and body, to its hook as configured now
/// (`None` when the delivery or its hook is gone).
pub fn redeliver(shared: &Shared, delivery_id: u64) -> Option<()> {
    let record = shared
        .state()
        .deliveries
        .iter()
        .find(|d| d.id == delivery_id)
        .cloned()?;
    let target = hooks::current_target(shared, record.hook_id)?;
    let out = Outgoing {
        target,
        guid: record.guid,
        event: record.event,
        action: record.action,
        repository: record.repository,
        repository_id: record.repository_id,
        body: record.body,
        redelivery: true,
    };
    shared.deliveries.send(out).ok()
}

fn headers(out: &Outgoing) -> BTreeMap<String, String> {
    let secret = &out.target.secret;
    let mut h = BTreeMap::new();
    h.insert("Accept".into(), "*/*".into());
    // Casing as in GitHub's delivery log (`content-type` is the odd one out there).
    h.insert("content-type".into(), "application/json".into());
    h.insert("User-Agent".into(), USER_AGENT.into());
    h.insert("X-GitHub-Event".into(), out.event.clone());
    h.insert("X-GitHub-Delivery".into(), out.guid.clone());
    h.insert("X-GitHub-Hook-ID".into(), out.target.hook_id.to_string());
    h.insert(
        "X-GitHub-Hook-Installation-Target-Type".into(),
        out.target.target_type.into(),
    );
    h.insert(
        "X-GitHub-Hook-Installation-Target-ID".into(),
        out.repository_id.unwrap_or_default().to_string(),
    );
    h.insert(
        "X-Hub-Signature-256".into(),
        signature_256(secret, out.body.as_bytes()),
    );
    h.insert(
        "X-Hub-Signature".into(),
        signature_1(secret, out.body.as_bytes()),
    );
    h
}

async fn send_and_log(shared: &Shared, client: &reqwest::Client, out: Outgoing) {
    let headers = headers(&out);
    let Some(url) = out.target.url.clone() else {
        log(
            shared,
            &out,
            Some(headers),
            "no webhook URL configured".into(),
            0,
            String::new(),
            Duration::ZERO,
        );
        return;
    };
    let mut request = client.post(&url).body(out.body.clone());
    for (k, v) in &headers {
        request = request.header(k, v);
    }
    let started = Instant::now();
    let (status, code, body) = match request.send().await {
        Ok(resp) => {
            let code = resp.status();
            let mut body = resp.text().await.unwrap_or_default();
            body.truncate(MAX_LOGGED_RESPONSE_BYTES);
            let status = if code.is_success() {
                "OK".to_string()
            } else {
                code.canonical_reason().unwrap_or("Error").to_string()
            };
            (status, code.as_u16(), body)
        }
        Err(e) if e.is_timeout() => ("timed out".into(), 0, String::new()),
        Err(e) => (format!("failed to connect: {e}"), 0, String::new()),
    };
    let elapsed = started.elapsed();
    tracing::debug!(event = %out.event, guid = %out.guid, status_code = code, "webhook delivered");
    log(shared, &out, Some(headers), status, code, body, elapsed);
}

fn log(
    shared: &Shared,
    out: &Outgoing,
    headers: Option<BTreeMap<String, String>>,
    status: String,
    status_code: u16,
    response_body: String,
    duration: Duration,
) {
    let sent = headers.is_some() && out.target.url.is_some();
    let headers = headers.unwrap_or_else(|| self::headers(out));
    let mut state = shared.state();
    let id = state.next_delivery_id();
    state.deliveries.push(DeliveryRecord {
        id,
        guid: out.guid.clone(),
        hook_id: out.target.hook_id,
        event: out.event.clone(),
        action: out.action.clone(),
        repository: out.repository.clone(),
        repository_id: out.repository_id,
        delivered_at: chrono::Utc::now(),
        redelivery: out.redelivery,
        duration: duration.as_secs_f64(),
        status,
        status_code,
        sent,
        request_headers: headers,
        response_body,
        body: out.body.clone(),
    });
}
