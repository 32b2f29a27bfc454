//! `GET /ws` resume: no gap and no duplicate across a daemon restart, `since` too old, slow
//! consumers that lag and catch up without slowing anyone else.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::ws::*;
use common::{TestApp, spawn_app_on, spawn_app_with, test_config, test_config_without_pools};
use futures::StreamExt;
use serde_json::Value;

async fn start(dir: &std::path::Path) -> TestApp {
    spawn_app_with(test_config(dir)).await
}

/// Every state change the client saw, checked to be exactly `from..=to` in order.
#[track_caller]
fn assert_contiguous(messages: &[Value], from: i64, to: i64) {
    let got = seqs(messages);
    let want: Vec<i64> = (from..=to).collect();
    if got != want {
        let i = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
        let around = |v: &[i64]| v[i.saturating_sub(3)..(i + 3).min(v.len())].to_vec();
        panic!(
            "gap or duplicate: {} seqs, {from}..={to} wanted; first difference at #{i}: got {:?}, wanted {:?}",
            got.len(),
            around(&got),
            around(&want),
        );
    }
}

#[tokio::test]
async fn resume_after_a_restart_has_no_gap_and_no_duplicate() {
    // The pool's launches fail, so `runner` and `pool` events interleave with the deliveries'
    // in numbers that depend on timing: seqs are checked over every change, contents against
    // the log in the database.
    let dir = tempfile::tempdir().unwrap();
    let url = test_config(dir.path()).database.url;
    let app = start(dir.path()).await;
    let mut ws = connect(&app, "").await;
    let start_seq = next_of(&mut ws, "snapshot").await["seq"].as_i64().unwrap();
    for id in 1..=5 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    // The client reads part of the stream (through job 2), then goes away.
    let first = read_until(&mut ws, |m| is_job(m, 2)).await;
    let cut = last_seq(&first);
    assert_contiguous(&first, start_seq + 1, cut);
    assert_eq!(job_ids(&first), [1, 2]);
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
    let mut ws = connect(&app, &format!("since={cut}")).await;
    let rest = read_until(&mut ws, |m| is_job(m, 10)).await;
    assert!(
        rest.iter().all(is_change),
        "a resume within the log sends no snapshot: {rest:?}"
    );
    let last = last_seq(&rest);
    assert_contiguous(&rest, cut + 1, last);
    assert_eq!(job_ids(&rest), (3..=10).collect::<Vec<_>>());

    // Then the live stream continues from there.
    deliver_job(&app, "acme/api", 11, "queued").await;
    let live = read_until(&mut ws, |m| is_job(m, 11)).await;
    let end = last_seq(&live);
    assert_contiguous(&live, last + 1, end);
    assert_eq!(job_ids(&live), [11]);

    // A resume with a filter replays only what matches.
    let mut ws = connect(&app, &format!("since={start_seq}&type=job")).await;
    let jobs = read_until(&mut ws, |m| is_job(m, 11)).await;
    assert!(jobs.iter().all(|m| is_kind(m, &["job"])), "{jobs:?}");
    assert_eq!(job_ids(&jobs), (1..=11).collect::<Vec<_>>());
    app.stop().await;

    // Exactly what the log holds, before and after the restart: no gap, no duplicate.
    let log = logged(&url, start_seq, end).await;
    let seen: Vec<Value> = [first, rest, live].concat();
    assert_eq!(seen.len(), log.len(), "gap or duplicate against the log");
    assert_eq!(seen, log, "the stream differs from the log");
    let logged_jobs: Vec<Value> = log.into_iter().filter(|m| m["type"] == "job").collect();
    assert_eq!(
        jobs, logged_jobs,
        "the filtered replay differs from the log"
    );
}

#[tokio::test]
async fn a_since_older_than_the_log_gets_a_resync_and_a_snapshot() {
    // No pool: the deliveries' events are the only ones, so the log's seqs are exact.
    let dir = tempfile::tempdir().unwrap();
    let config = || test_config_without_pools(dir.path());
    let app = spawn_app_with(config()).await;
    for id in 1..=3 {
        deliver_job(&app, "acme/api", id, "queued").await;
    }
    app.settle().await;
    app.stop().await;

    // Retention drops all but the newest two messages.
    let url = config().database.url;
    let store = runnerhub::app::open_store(&url).await.unwrap();
    let pruned = store
        .prune_live_events(2, chrono::Utc::now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    drop(store);

    let app = spawn_app_with(config()).await;
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
    assert_eq!(changes(&rest), logged(&url, 4, 6).await);

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

    // More changes than the shared live buffer (1024) plus what the sockets hold: each job
    // makes a webhook and a job event, and the scheduler adds `runner` and `pool` events (as
    // many as the timing makes). A client is through when it has seen all the deliveries'.
    const JOBS: i64 = 1000;
    let through = || {
        let mut ours = 0;
        move |m: &Value| {
            ours += i64::from(is_kind(m, DELIVERY_KINDS) && !is_wait_update(m));
            ours == 2 * JOBS
        }
    };
    let loading = tokio_util::sync::CancellationToken::new();
    // The seq of the last change the fast client has read.
    let fast_at = Arc::new(AtomicI64::new(at));
    // The slow client reads one message per 50 ms while the load runs, then as fast as it can;
    // it stops crawling early once it is surely lagging: further behind the fast client than
    // the live buffer (1024) plus what the daemon may have taken from it for this client (a
    // burst of 256, and what the small socket buffers hold). The scheduler's events make the
    // load last longer than before, and the daemon drops a client whose single write is not
    // taken within 10 s, which a crawl through a whole burst can exceed.
    const SURELY_LAGGING: i64 = 1024 + 256 + 256;
    let slow_reader = {
        let loading = loading.clone();
        let fast_at = fast_at.clone();
        let mut done = through();
        tokio::spawn(async move {
            let (mut messages, mut lagged, mut slow_at) = (Vec::new(), 0, i64::MAX);
            loop {
                if !loading.is_cancelled()
                    && fast_at.load(Ordering::SeqCst) - slow_at < SURELY_LAGGING
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let m = next(&mut slow).await;
                if let Some(seq) = m["seq"].as_i64() {
                    slow_at = seq;
                }
                assert!(m.get("close").is_none(), "{m}");
                match m["type"].as_str().unwrap() {
                    "lagged" => lagged += 1,
                    "snapshot" if messages.is_empty() => {}
                    "snapshot" | "resync" => panic!("a small lag is replayed, not resynced: {m}"),
                    _ => {}
                }
                let stop = is_change(&m) && done(&m);
                messages.push(m);
                if stop {
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
    let mut done = through();
    let seen = read_until(&mut fast, |m| {
        fast_at.store(m["seq"].as_i64().unwrap(), Ordering::SeqCst);
        done(m)
    })
    .await;
    let fast_took = started.elapsed();
    for s in senders {
        s.await.unwrap();
    }
    loading.cancel();
    let last = last_seq(&seen);
    assert_contiguous(&seen, at + 1, last);
    let mut ids = job_ids(&seen);
    ids.sort_unstable();
    assert_eq!(ids, (1..=JOBS).collect::<Vec<_>>(), "every job once");

    // The slow client was told it lagged, then got every change once, in order: the same
    // changes as the fast client.
    let (messages, lagged, mut slow) = slow_reader.await.unwrap();
    assert!(lagged >= 1, "the slow client was never told it lagged");
    // It connected first: the scheduler may have published between the two snapshots.
    assert_eq!(messages[0]["type"], "snapshot", "{}", messages[0]);
    let slow_at = messages[0]["seq"].as_i64().unwrap();
    assert!(slow_at <= at, "{slow_at} > {at}");
    assert_contiguous(&messages, slow_at + 1, last);
    let mut same = changes(&messages);
    same.retain(|m| m["seq"].as_i64().unwrap() > at);
    assert!(
        same == changes(&seen),
        "the slow client got other changes than the fast one"
    );
    eprintln!(
        "fast client: {} changes ({} from deliveries) in {fast_took:?}; slow client lagged {lagged}x",
        seqs(&seen).len(),
        2 * JOBS
    );
    // Nothing else pending on the slow socket beyond pings, and the scheduler's changes since
    // (runners, pools, and the queued jobs' wait reasons), which continue the seq.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut after = last;
    while let Ok(frame) = tokio::time::timeout_at(deadline, slow.next()).await {
        let frame = frame.expect("stream open").expect("frame");
        if let Ok(text) = frame.to_text()
            && frame.is_text()
        {
            let m: Value = serde_json::from_str(text).unwrap();
            assert!(
                is_kind(&m, &["runner", "pool"]) || is_wait_update(&m),
                "{m}"
            );
            after += 1;
            assert_eq!(m["seq"], after, "gap or duplicate: {m}");
        }
    }
    app.stop().await;
}
