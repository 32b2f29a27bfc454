//! Item 5: in the open mode (no API token) a web page cannot use the daemon through the
//! visitor's browser: DNS rebinding (a foreign `Host`), cross-site writes, `/ws` from another
//! origin. Non-browser clients (curl, GitHub, probes) are not affected.

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::raw::{exchange, json, status};
use super::{base, common::daemon::Daemon};

const OPEN: &str = "public_url = \"https://ci.example.com\"\n\
                    allowed_origins = [\"https://dash.example.com\"]";

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_except_on_the_webhook_and_probes() {
    let d = Daemon::start(&base(OPEN, "webhook_secrets = [\"x\"]"), &[], &[]);
    let own = d.addr.to_string();
    for (path, host, want) in [
        ("/api/jobs", "evil.example:3000", 421),
        ("/api/webhooks/events", "rebind.evil.example", 421),
        ("/", "evil.example", 421),
        ("/ws", "evil.example", 421),
        ("/api/jobs", own.as_str(), 200),
        ("/api/jobs", "localhost", 200),
        ("/api/jobs", "ci.example.com", 200),
        ("/healthz", "evil.example", 200),
        ("/readyz", "evil.example", 200),
        ("/metrics", "evil.example", 200),
    ] {
        let answer = exchange(d.addr, get(path, host).as_bytes()).await;
        assert_eq!(status(&answer), want, "{path} with Host {host}: {answer}");
        if want == 421 {
            assert_eq!(json(&answer)["error"]["code"], "MISDIRECTED_REQUEST");
        }
    }
    // The webhook: HMAC protects it, whatever the Host (a proxy may rewrite it).
    let body = b"{}";
    let sig = runnerhub::webhook::signature::sign("x", body);
    let request = format!(
        "POST /api/webhooks/github HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: host-1\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    assert_eq!(status(&exchange(d.addr, request.as_bytes()).await), 200);
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused_and_curl_still_works() {
    let d = Daemon::start(&base(OPEN, "webhook_secrets = [\"x\"]"), &[], &[]);
    let host = d.addr.to_string();
    let post = |extra: &str, body: &str| {
        format!(
            "POST /api/webhooks/test HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    for (request, want) in [
        // What <form method=post action=http://127.0.0.1:3000/api/webhooks/test> sends.
        (
            post(
                &format!("Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n{form}"),
                "eventType=ping",
            ),
            403,
        ),
        (post("Sec-Fetch-Site: cross-site\r\n", ""), 403),
        // No browser headers, but not JSON either.
        (post(form, "eventType=ping"), 415),
        // `curl -X POST …/api/webhooks/test`, and the seed's JSON variant.
        (post("", ""), 202),
        (
            post(
                "Content-Type: application/json\r\n",
                r#"{"eventType": "ping", "repository": "test/repo"}"#,
            ),
            202,
        ),
        // The daemon's own page, and an allowed origin.
        (
            post(
                &format!("Origin: http://{host}\r\nSec-Fetch-Site: same-origin\r\n"),
                "",
            ),
            202,
        ),
        (post("Origin: https://dash.example.com\r\n", ""), 202),
    ] {
        let answer = exchange(d.addr, request.as_bytes()).await;
        assert_eq!(status(&answer), want, "{request}\n→ {answer}");
    }
    // A runner removal from another site is refused too (and changes nothing: 403 before 404).
    let delete = format!(
        "DELETE /api/runners/nope HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Origin: https://evil.example\r\n\r\n"
    );
    assert_eq!(status(&exchange(d.addr, delete.as_bytes()).await), 403);
}

/// The first message of `/ws` opened with `origin`, as JSON (a close frame as `{"close": …}`).
async fn first_ws_message(addr: std::net::SocketAddr, origin: Option<&str>, query: &str) -> Value {
    let mut request = format!("ws://{addr}/ws?{query}")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // Generous: under a loaded machine (the Docker tests beside it) a snapshot can be slow.
    let frame = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match frame {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        Message::Close(Some(f)) => {
            serde_json::json!({"close": u16::from(f.code), "reason": f.reason.to_string()})
        }
        other => panic!("unexpected frame {other:?}"),
    }
}

#[tokio::test]
async fn ws_refuses_a_foreign_origin_in_the_open_mode_only() {
    let d = Daemon::start(&base(OPEN, "webhook_secrets = [\"x\"]"), &[], &[]);
    let own = format!("http://{}", d.addr);
    for origin in [
        None,
        Some(own.as_str()),
        Some("https://ci.example.com"),
        Some("https://dash.example.com"),
    ] {
        let m = first_ws_message(d.addr, origin, "").await;
        assert_eq!(m["type"], "snapshot", "{origin:?}: {m}");
    }
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        let m = first_ws_message(d.addr, Some(origin), "").await;
        assert_eq!(m["close"], 4403, "{origin}: {m}");
        assert!(m["reason"].as_str().unwrap().contains("origin"), "{m}");
    }
    drop(d);
    // With tokens set, as before: the token decides, not the origin.
    let d = Daemon::start(
        &base("api_tokens = [\"tok\"]", "webhook_secrets = [\"x\"]"),
        &[],
        &[],
    );
    let m = first_ws_message(d.addr, Some("https://evil.example"), "token=tok").await;
    assert_eq!(m["type"], "snapshot", "{m}");
    let answer = exchange(
        d.addr,
        b"GET /api/jobs HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer tok\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
}
