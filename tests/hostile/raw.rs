//! Raw HTTP/1.1 over loopback, for requests no client library sends.

use std::net::SocketAddr;
use std::time::Duration;

use runnerhub::webhook::signature::sign;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is and reads the answer until the server closes (or 10 s pass).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_answer(&mut tcp, Duration::from_secs(10)).await
}

/// Whatever arrives until the server closes, or `within` passes.
pub async fn read_answer(tcp: &mut TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of an answer (0 if there is none).
pub fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The JSON body of an answer with `content-length` (Null if none).
pub fn json(answer: &str) -> Value {
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null)
}

/// A webhook request head for `delivery`, declaring `length` bytes of body, with the
/// signature header `signature` if any.
pub fn webhook_head(delivery: &str, length: usize, signature: Option<&str>) -> String {
    let signature = signature.map_or(String::new(), |s| format!("X-Hub-Signature-256: {s}\r\n"));
    format!(
        "POST /api/webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         X-GitHub-Event: workflow_job\r\n\
         X-GitHub-Delivery: {delivery}\r\nContent-Type: application/json\r\n{signature}\
         Content-Length: {length}\r\n\r\n"
    )
}

/// A genuine delivery of a queued job, answered with its status.
pub async fn deliver(addr: SocketAddr, secret: &str, delivery: &str, job: i64) -> u16 {
    let body = crate::common::job_payload(job, "queued", &["self-hosted", "linux"]);
    let head = webhook_head(delivery, body.len(), Some(&sign(secret, &body)));
    let request = [head.into_bytes(), body].concat();
    status(&exchange(addr, &request).await)
}

/// The peak resident memory (VmHWM) of process `pid`, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}
