//! Supervision (DESIGN §8): when the scheduler task panics, the real binary logs the task and
//! the cause, stops acknowledging webhooks, exits non-zero so that systemd restarts it, and
//! the next start processes everything that was acknowledged.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::daemon::Daemon;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use runnerhub::webhook::signature::sign;

const SECRET: &str = "supervision-secret";
const JOBS: [i64; 3] = [9101, 9102, 9103];

/// No pools: the scheduler still processes every delivery, and neither GitHub nor Docker is
/// needed. The database is outside the daemon's own temp directory, so a second daemon finds it.
fn config(database: &std::path::Path) -> String {
    format!(
        "[database]\nurl = \"sqlite://{}/runnerhub.db\"\n[github]\nwebhook_secrets = [\"{SECRET}\"]\n",
        database.display()
    )
}

fn delivery(guid: &str, body: &[u8]) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post("/api/webhooks/github")
        .header("host", "localhost")
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", guid)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(SECRET, body))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

#[tokio::test]
async fn a_panicking_scheduler_stops_the_daemon_non_zero_and_loses_nothing_acknowledged() {
    let database = tempfile::tempdir().unwrap();
    let panic_after = JOBS.len().to_string();
    let mut d = Daemon::start(
        &config(database.path()),
        &[("RUNNERHUB_TEST_PANIC_SCHEDULER_AFTER", panic_after.as_str())],
        &[],
    );
    let stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for id in JOBS {
        let body = common::job_payload(id, "queued", &["self-hosted", "linux"]);
        let r = sender
            .send_request(delivery(&format!("sup-{id}"), &body))
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "acknowledged before the fault:\n{}",
            d.logs()
        );
    }

    // The last acknowledged delivery makes the scheduler reach its injected fault.
    let failed_at = Instant::now();
    let line = d.wait_for_log(
        "background task `scheduler` panicked",
        Duration::from_secs(10),
    );
    assert!(line.contains("ERROR"), "logged at ERROR: {line}");
    assert!(
        line.contains("injected fault: the scheduler panics after 3 deliveries"),
        "the panic message is in the log: {line}"
    );
    // From now on nothing is acknowledged: a 503, or no answer once the process is gone.
    let late = common::job_payload(9199, "queued", &["self-hosted", "linux"]);
    if sender.ready().await.is_ok()
        && let Ok(r) = sender.send_request(delivery("sup-late", &late)).await
    {
        assert_eq!(r.status(), 503, "a delivery after the failure is refused");
    }
    let status = d
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after the panic:\n{}", d.logs()));
    assert!(!status.success(), "exit status {status}:\n{}", d.logs());
    assert!(
        failed_at.elapsed() < Duration::from_secs(5),
        "took {:?} to exit",
        failed_at.elapsed()
    );

    // What systemd does next: start it again. Every acknowledged delivery gets processed.
    let d = Daemon::start(&config(database.path()), &[], &[]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in JOBS {
        loop {
            let r = client.get(d.url(&format!("/api/jobs/{id}"))).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} missing after restart:\n{}",
                d.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A scheduler stuck inside a step (a call that never returns) processes nothing more:
/// `/readyz` fails (and so does the watchdog, which asks the same question) while `/healthz`
/// still answers, and the health page says the scheduler does not answer.
#[tokio::test]
async fn a_hung_scheduler_fails_readiness_and_shows_in_health() {
    let database = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &config(database.path()),
        &[("RUNNERHUB_TEST_WEDGE_SCHEDULER_AFTER", "1")],
        &[],
    );
    let get = |path: &str| {
        let url = d.url(path);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(
        get("/readyz").await.0,
        200,
        "ready before the fault:\n{}",
        d.logs()
    );
    let (_, health) = get("/api/webhooks/health").await;
    assert_eq!(health["data"]["status"], "healthy", "{health}");
    assert_eq!(health["data"]["scheduler_answers"], true);
    assert_eq!(health["data"]["stalled_pools"], serde_json::json!([]));

    let stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = common::job_payload(9201, "queued", &["self-hosted", "linux"]);
    let r = sender
        .send_request(delivery("wedge-1", &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    d.wait_for_log(
        "injected fault: the scheduler hangs",
        Duration::from_secs(10),
    );

    let (status, ready) = get("/readyz").await;
    assert_eq!(
        (status, &ready["status"]),
        (503, &"scheduler_unresponsive".into())
    );
    assert_eq!(
        get("/healthz").await.0,
        200,
        "alive: systemd's watchdog decides"
    );
    let (_, health) = get("/api/webhooks/health").await;
    assert_eq!(health["data"]["status"], "degraded", "{health}");
    assert_eq!(health["data"]["scheduler_answers"], false);
}
