//! Item 1: memory stays bounded whatever bodies arrive, and each way a body fails has its own
//! answer.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{self, deliver, exchange, peak_rss, status, webhook_head};
use super::{SECRET_REAL, base, common::daemon::Daemon};

const MIB: usize = 1024 * 1024;
const UPLOAD: usize = 25 * MIB;

/// 100 signed-looking 25 MiB uploads that stall one byte short, plus 20 unsigned ones: the
/// unsigned are refused (401) before their body is read, the rest hold at most the body budget
/// (64 MiB) between them; those past it get 503, the others 408 at the body deadline (3 s here,
/// `server.body_timeout`). Deliveries acknowledged before and after are all in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_bounded_by_the_budget_and_cut_off_at_the_deadline() {
    let d = Daemon::start(
        &base(
            "body_timeout = \"3s\"",
            &format!("webhook_secrets = [\"{SECRET_REAL}\"]"),
        ),
        &[],
        &[],
    );
    assert_eq!(deliver(d.addr, SECRET_REAL, "before-1", 15_101).await, 202);
    let started = Instant::now();
    let mut uploads = tokio::task::JoinSet::new();
    for i in 0..120 {
        let addr = d.addr;
        uploads.spawn(async move {
            let signature = (i >= 20).then_some("sha256=00");
            let head = webhook_head(&format!("stalled-{i}"), UPLOAD, signature);
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 256 * 1024];
            let mut sent = 0;
            while signature.is_some() && sent + chunk.len() < UPLOAD {
                if tcp.write_all(&chunk).await.is_err() {
                    break; // the daemon answered and closed
                }
                sent += chunk.len();
            }
            // Stalled: one byte short (or, unsigned, nothing sent). Wait for the daemon.
            let answer = raw::read_answer(&mut tcp, Duration::from_secs(30)).await;
            (i, status(&answer), started.elapsed())
        });
    }
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    let mut last_cut = Duration::ZERO;
    while let Some(done) = uploads.join_next().await {
        let (i, code, at) = done.unwrap();
        if i < 20 {
            assert_eq!(code, 401, "unsigned upload {i}");
        }
        *answers.entry(code).or_default() += 1;
        last_cut = last_cut.max(at);
    }
    let peak = peak_rss(d.pid());
    eprintln!(
        "answers {answers:?}; last connection cut after {last_cut:?}; daemon peak RSS {} MiB",
        peak / MIB as u64
    );
    assert!(
        peak < 400 * MIB as u64,
        "peak RSS {} MiB",
        peak / MIB as u64
    );
    // 0: the daemon's answer was lost in the reset of a connection still sending.
    assert!(
        answers.keys().all(|c| [0, 401, 408, 503].contains(c)),
        "{answers:?}"
    );
    assert!(answers.get(&408).is_some_and(|n| *n > 0), "{answers:?}");
    assert!(
        last_cut < Duration::from_secs(15),
        "a stalled upload was held {last_cut:?}"
    );
    assert_eq!(deliver(d.addr, SECRET_REAL, "after-1", 15_102).await, 202);
    let events: serde_json::Value = reqwest::get(d.url("/api/webhooks/events?limit=500"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = events.to_string();
    assert!(
        text.contains("before-1") && text.contains("after-1"),
        "{text}"
    );
}

/// Too large, too slow and broken are three answers, not one "larger than the limit".
#[tokio::test]
async fn each_failed_body_gets_its_own_answer() {
    let d = Daemon::start(
        &base(
            "body_timeout = \"1s\"",
            &format!("webhook_secrets = [\"{SECRET_REAL}\"]"),
        ),
        &[],
        &[],
    );
    let too_large = webhook_head("big-1", UPLOAD + 1, Some("sha256=00"));
    let answer = exchange(d.addr, too_large.as_bytes()).await;
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(raw::json(&answer)["error"]["code"], "PAYLOAD_TOO_LARGE");

    let slow = format!(
        "{}{{\"action\"",
        webhook_head("slow-1", 100, Some("sha256=00"))
    );
    let started = Instant::now();
    let answer = exchange(d.addr, slow.as_bytes()).await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert_eq!(raw::json(&answer)["error"]["code"], "REQUEST_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));

    let chunked = webhook_head("broken-1", 0, Some("sha256=00"))
        .replace("Content-Length: 0\r\n", "Transfer-Encoding: chunked\r\n")
        + "zz\r\nnot a chunk\r\n";
    let answer = exchange(d.addr, chunked.as_bytes()).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(raw::json(&answer)["error"]["code"], "BAD_BODY");

    // A missing signature is refused before the body is read, and recorded.
    let unsigned = webhook_head("unsigned-1", UPLOAD, None);
    let answer = exchange(d.addr, unsigned.as_bytes()).await;
    assert_eq!(status(&answer), 401, "{answer}");
    let event: serde_json::Value = reqwest::get(d.url("/api/webhooks/events/unsigned-1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["data"]["signature_valid"], false, "{event}");
}
