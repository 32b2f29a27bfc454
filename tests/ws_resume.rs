//! `GET /ws` resume: no gap and no duplicate across a daemon restart, `since` too old, slow
//! consumers that lag and catch up without slowing anyone else.

mod common;

use std::time::{Duration, Instant};

use common::ws::*;
use common::{TestApp, spawn_app_on, spawn_app_with, test_config};
use futures::StreamExt;
use serde_json::Value;

async fn start(dir: &std::path::Path) -> TestApp {
    spawn_app_with(test_config(dir)).await
}

/// Every state change the client saw, checked to be exactly `from..=to` in order.
#[track_caller]
fn assert_contiguous(messages: &[Value], from: i64, to: i64) {
    let got = seqs(messages);
    assert_eq!(got, (from..=to).collect::<Vec<_>>(), "gap or duplicate");
}

#[tokio::test]
async fn resume_after_a_restart_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path()).await;
    let mut ws = connect(&app, "").await;
    let start_seq = next_of(&mut ws, "snapshot").await["seq"].as_i64().unwrap();
    for id in 1..=5 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    // The client reads part of the stream, then goes away.
    let first = read_through(&mut ws, start_seq + 4).await;
    assert_contiguous(&first, start_seq + 1, start_seq + 4);
    drop(ws);
    for id in 6..=8 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    app.settle().await;
    app.stop().await;

    // While the daemon is down nothing happens; after the restart more changes arrive.
    let app = start(dir.path()).await;
    for id in 9..=10 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    app.settle().await;
    let last = start_seq + 20; // 10 deliveries, each a webhook and a job event
    let mut ws = connect(&app, &format!("since={}", start_seq + 4)).await;
    let rest = read_through(&mut ws, last).await;
    assert!(
        rest.iter().all(is_change),
        "a resume within the log sends no snapshot: {rest:?}"
    );
    assert_contiguous(&rest, start_seq + 5, last);
    let ids: Vec<i64> = rest
        .iter()
        .filter(|m| m["type"] == "job")
        .map(|m| m["data"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (3..=10).collect::<Vec<_>>());

    // Then the live stream continues from there.
    deliver_job(&app, "acme/api", 11, "queued").await;
    let live = read_through(&mut ws, last + 2).await;
    assert_contiguous(&live, last + 1, last + 2);

    // A resume with a filter replays only what matches.
    let mut ws = connect(&app, &format!("since={start_seq}&type=job")).await;
    let jobs = read_through(&mut ws, last + 2).await;
    assert_eq!(jobs.len(), 11);
    assert!(jobs.iter().all(|m| m["type"] == "job"));
    app.stop().await;
}

#[tokio::test]
async fn a_since_older_than_the_log_gets_a_resync_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path()).await;
    for id in 1..=3 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    app.settle().await;
    app.stop().await;

    // Retention drops all but the newest two messages.
    let url = test_config(dir.path()).database.url;
    let store = runnerhub::app::open_store(&url).await.unwrap();
    let pruned = store
        .prune_live_events(2, chrono::Utc::now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    drop(store);

    let app = start(dir.path()).await;
    let mut ws = connect(&app, "since=1").await;
    let resync = next(&mut ws).await;
    assert_eq!(resync["type"], "resync", "{resync}");
    assert_eq!(resync["data"]["reason"], "since_too_old");
    assert_eq!(resync["data"]["oldest"], 5);
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["seq"], 6);
    assert_eq!(snapshot["data"]["queue_total"], 3);

    // From exactly the boundary the log still serves it.
    let mut ws = connect(&app, "since=4").await;
    let rest = read_through(&mut ws, 6).await;
    assert_contiguous(&rest, 5, 6);

    // A seq from the future (another database) is not trusted either.
    let mut ws = connect(&app, "since=999999999").await;
    let resync = next(&mut ws).await;
    assert_eq!(resync["data"]["reason"], "since_ahead", "{resync}");
    assert_eq!(next(&mut ws).await["type"], "snapshot");
    app.stop().await;
}

/// A client with a tiny receive buffer, so that the daemon cannot buffer much for it.
async fn connect_small_buffer(app: &TestApp) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!("ws://{}/ws", app.addr);
    tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn a_slow_consumer_lags_alone_and_catches_up_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    // Small kernel buffers on the daemon's side too (accepted sockets inherit them), so that
    // what piles up for the slow client is in the daemon's bounded buffers, not in the kernel.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let app = spawn_app_on(socket.listen(1024).unwrap(), test_config(dir.path())).await;
    let mut slow = connect_small_buffer(&app).await;
    let mut fast = connect(&app, "").await;
    let at = next_of(&mut fast, "snapshot").await["seq"]
        .as_i64()
        .unwrap();

    // More changes than the shared live buffer (1024) plus what the sockets hold.
    const JOBS: i64 = 1000;
    let last = at + 2 * JOBS;
    let loading = tokio_util::sync::CancellationToken::new();
    // The slow client reads one message per 50 ms while the load runs, then as fast as it can.
    let slow_reader = {
        let loading = loading.clone();
        tokio::spawn(async move {
            let (mut messages, mut lagged) = (Vec::new(), 0);
            loop {
                if !loading.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let m = next(&mut slow).await;
                assert!(m.get("close").is_none(), "{m}");
                match m["type"].as_str().unwrap() {
                    "lagged" => lagged += 1,
                    "snapshot" if messages.is_empty() => {}
                    "snapshot" | "resync" => panic!("a small lag is replayed, not resynced: {m}"),
                    _ => {}
                }
                let done = is_change(&m) && m["seq"].as_i64().unwrap() >= last;
                messages.push(m);
                if done {
                    return (messages, lagged, slow);
                }
            }
        })
    };
    let senders: Vec<_> = (0..8)
        .map(|k| {
            let (addr, client) = (app.addr, app.client.clone());
            tokio::spawn(async move {
                for id in (1..=JOBS).filter(|id| id % 8 == k) {
                    let body = job_in("acme/api", id, "queued");
                    let r = client
                        .post(format!("http://{addr}/api/webhooks/github"))
                        .header("X-GitHub-Event", "workflow_job")
                        .header("X-GitHub-Delivery", format!("slow-{id}"))
                        .header("Content-Type", "application/json")
                        .header(
                            "X-Hub-Signature-256",
                            runnerhub::webhook::signature::sign(common::SECRET, &body),
                        )
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                }
            })
        })
        .collect();
    // The fast client keeps up while the slow one crawls.
    let started = Instant::now();
    let seen = read_through(&mut fast, last).await;
    let fast_took = started.elapsed();
    for s in senders {
        s.await.unwrap();
    }
    loading.cancel();
    assert_contiguous(&seen, at + 1, last);

    // The slow client was told it lagged, then got every change once, in order.
    let (messages, lagged, mut slow) = slow_reader.await.unwrap();
    assert!(lagged >= 1, "the slow client was never told it lagged");
    assert_contiguous(&messages, at + 1, last);
    eprintln!(
        "fast client: {} changes in {fast_took:?}; slow client lagged {lagged}x",
        2 * JOBS
    );
    // Nothing else pending on the slow socket beyond pings.
    let extra = tokio::time::timeout(Duration::from_millis(200), slow.next()).await;
    assert!(extra.is_err() || matches!(extra, Ok(Some(Ok(ref m))) if !m.is_text()));
    app.stop().await;
}
