//! The real binary under signals: SIGTERM drains with 503s and exits in bounded time, SIGHUP
//! reloads (or refuses a bad file and keeps running), and systemd hears READY, WATCHDOG,
//! RELOADING and STOPPING.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::daemon::Daemon;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use runnerhub::webhook::signature::sign;

const SECRET: &str = "lifecycle-secret";

fn config(grace: &str, tokens: &str, extra: &str) -> String {
    format!(
        r#"
[server]
shutdown_grace = "{grace}"
api_tokens = [{tokens}]
[database]
url = "sqlite://{{dir}}/runnerhub.db"
[github]
webhook_secrets = ["{SECRET}"]
api_url = "http://127.0.0.1:9"
token = "lifecycle-token"
[[pools]]
name = "linux"
labels = ["self-hosted", "linux", "x64", "docker"]
{extra}
"#
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

async fn wait_ready(client: &reqwest::Client, d: &Daemon) {
    for _ in 0..500 {
        if let Ok(r) = client.get(d.url("/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not ready:\n{}", d.logs());
}

#[tokio::test]
async fn sigterm_answers_503_on_a_kept_alive_connection_then_exits_in_bounded_time() {
    let grace = Duration::from_secs(1);
    let mut d = Daemon::start(&config("1s", "", ""), &[], &[]);
    wait_ready(&reqwest::Client::new(), &d).await;

    // One HTTP/1.1 connection, kept alive across the signal.
    let stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = common::job_payload(7001, "queued", &["self-hosted", "linux"]);
    let r = sender
        .send_request(delivery("life-1", &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "accepted before the signal");
    r.into_body().collect().await.unwrap();

    d.signal("TERM");
    let signalled = Instant::now();
    d.wait_for_log("webhook intake closed", Duration::from_secs(5));

    sender
        .ready()
        .await
        .expect("connection still open during the grace period");
    let r = sender
        .send_request(delivery("life-2", &body))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "GitHub must see a failure it can redeliver"
    );
    let text = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("\"success\":false"));
    sender.ready().await.unwrap();
    let ready = hyper::Request::get("/readyz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(ready).await.unwrap().status(), 503);

    // Bound: grace + HTTP drain + flush; an idle daemon needs little more than the grace.
    let status = d
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM:\n{}", d.logs()));
    assert!(status.success(), "exit status {status}:\n{}", d.logs());
    let took = signalled.elapsed();
    assert!(
        took >= grace,
        "closed before the grace period ended ({took:?})"
    );
    assert!(took < grace + Duration::from_secs(5), "took {took:?}");
    assert!(d.logs().contains("runnerhub stopped"));
}

#[tokio::test]
async fn sighup_reloads_tokens_and_pools_and_refuses_a_bad_file() {
    let client = reqwest::Client::new();
    let d = Daemon::start(&config("0s", r#""token-one""#, ""), &[], &[]);
    wait_ready(&client, &d).await;
    let get = |token: &'static str| client.get(d.url("/api/jobs")).bearer_auth(token).send();
    assert_eq!(get("token-one").await.unwrap().status(), 200);

    // New token, a new pool, and a restart-only key that must be kept with a warning.
    let gpu = "[[pools]]\nname = \"gpu\"\nlabels = [\"self-hosted\", \"gpu\"]\n";
    let v2 = config("0s", r#""token-two""#, gpu)
        .replace("sqlite://{dir}/runnerhub.db", "sqlite://{dir}/elsewhere.db");
    std::fs::write(
        &d.config_path,
        v2.replace("{dir}", &d.dir.path().display().to_string()),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for_log("configuration reloaded", Duration::from_secs(10));
    let warning = d.wait_for_log("needs a restart", Duration::from_secs(1));
    assert!(warning.contains("database.url"), "{warning}");
    assert_eq!(get("token-one").await.unwrap().status(), 401);
    assert_eq!(get("token-two").await.unwrap().status(), 200);

    // The processor took the new pool.
    let body = common::job_payload(7101, "queued", &["self-hosted", "gpu"]);
    let r = client
        .post(d.url("/api/webhooks/github"))
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "reload-1")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut pool = serde_json::Value::Null;
    for _ in 0..200 {
        let r = client
            .get(d.url("/api/jobs/7101"))
            .bearer_auth("token-two")
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            pool = r.json::<serde_json::Value>().await.unwrap()["data"]["pool"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool, "gpu", "job routed with the reloaded pools");

    // A bad file is refused with the key named; the running configuration stays.
    let bad = config("0s", r#""token-three""#, "")
        .replace("name = \"linux\"", "name = \"linux\"\nmax_runners = 0");
    std::fs::write(
        &d.config_path,
        bad.replace("{dir}", &d.dir.path().display().to_string()),
    )
    .unwrap();
    d.signal("HUP");
    let refused = d.wait_for_log("reload refused", Duration::from_secs(10));
    assert!(refused.contains("pools[0].max_runners"), "{refused}");
    assert_eq!(get("token-two").await.unwrap().status(), 200);
    assert_eq!(get("token-three").await.unwrap().status(), 401);
    let metrics = client
        .get(d.url("/metrics"))
        .bearer_auth("token-two")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("runnerhub_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("runnerhub_config_last_reload_successful 0"));
}

/// Collects sd_notify datagrams until one contains `want`.
fn expect_notification(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(message.clone());
            if message.lines().any(|l| l == want) {
                return;
            }
        }
    }
    panic!("no `{want}` from the daemon; got {seen:?}");
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify = path.display().to_string();
    let mut d = Daemon::start(
        &config("0s", "", ""),
        &[
            ("NOTIFY_SOCKET", &notify),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "self"),
        ],
        &[],
    );
    let mut seen = Vec::new();
    expect_notification(&socket, "READY=1", &mut seen);
    // READY comes after migrations and the listener: the daemon answers now.
    let r = reqwest::get(d.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    expect_notification(&socket, "WATCHDOG=1", &mut seen);
    d.signal("HUP");
    expect_notification(&socket, "RELOADING=1", &mut seen);
    expect_notification(&socket, "READY=1", &mut seen);
    d.signal("TERM");
    expect_notification(&socket, "STOPPING=1", &mut seen);
    let status = d.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", d.logs());
}
