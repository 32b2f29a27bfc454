//! Item 7: the smaller holes, each closed.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::raw::{deliver, exchange, json, status};
use super::{SECRET_REAL, base, common::daemon::Daemon};

async fn close_of(addr: std::net::SocketAddr, query: &str) -> (u16, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?{query}"))
        .await
        .unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Close(Some(f)) => return (u16::from(f.code), f.reason.to_string()),
            Message::Text(text) => panic!("served: {text}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_valid_token_is_honoured_when_another_ws_parameter_is_bad() {
    let d = Daemon::start(
        &base("api_tokens = [\"tok\"]", "webhook_secrets = [\"x\"]"),
        &[],
        &[],
    );
    let (code, reason) = close_of(d.addr, "token=tok&colour=red").await;
    assert_eq!(code, 4400, "{reason}");
    assert!(reason.contains("colour"), "{reason}");
    // Without a valid token nothing is revealed about the other parameters.
    assert_eq!(close_of(d.addr, "token=wrong&colour=red").await.0, 4401);
}

#[tokio::test]
async fn http_layer_errors_carry_the_json_envelope() {
    let d = Daemon::start(&base("", "webhook_secrets = [\"x\"]"), &[], &[]);
    let long = format!(
        "GET /api/jobs?repository={} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    for (request, want, code) in [
        (
            "POST /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                .to_owned(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (long, 414, "URI_TOO_LONG"),
        (many_headers, 431, "HEADERS_TOO_LARGE"),
        (huge_header, 431, "HEADERS_TOO_LARGE"),
        ("BLAH\r\n\r\n".to_owned(), 400, "BAD_REQUEST"),
        ("GET / HTTP/1.1\r\nHost localhost\r\n\r\n".to_owned(), 400, "BAD_REQUEST"),
    ] {
        let answer = exchange(d.addr, request.as_bytes()).await;
        assert_eq!(status(&answer), want, "{answer}");
        let body = json(&answer);
        assert_eq!(body["success"], false, "{answer}");
        assert_eq!(body["error"]["code"], code, "{answer}");
    }
    // Still serving after all that.
    let answer = exchange(
        d.addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200);
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_with_1009() {
    let d = Daemon::start(&base("", "webhook_secrets = [\"x\"]"), &[], &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", d.addr))
        .await
        .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.is_text(), "{first:?}");
    let big = format!(r#"{{"op": "ping", "pad": "{}"}}"#, "p".repeat(100 * 1024));
    ws.send(Message::Text(big.into())).await.unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1009, "{f:?}");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// A job with more than 100 labels, or a label over 256 bytes, is recorded (the delivery is in
/// the log, with why) but never scheduled.
#[tokio::test]
async fn labels_over_the_bounds_are_recorded_and_refused_for_scheduling() {
    let d = Daemon::start(
        &base("", &format!("webhook_secrets = [\"{SECRET_REAL}\"]")),
        &[],
        &[],
    );
    let many: Vec<String> = (0..150).map(|i| format!("label-{i}")).collect();
    let long = vec!["self-hosted".to_owned(), "x".repeat(300)];
    for (guid, id, labels, why) in [
        ("labels-many", 15_301, many, "150 labels"),
        ("labels-long", 15_302, long, "300 bytes"),
    ] {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let body = super::common::job_payload(id, "queued", &labels);
        let sig = runnerhub::webhook::signature::sign(SECRET_REAL, &body);
        let head = super::raw::webhook_head(guid, body.len(), Some(&sig));
        let answer = exchange(d.addr, &[head.into_bytes(), body].concat()).await;
        assert_eq!(status(&answer), 200, "{answer}");
        let reply = json(&answer);
        assert_eq!(reply["status"], "ignored", "{reply}");
        assert!(reply["reason"].as_str().unwrap().contains(why), "{reply}");
        let event: serde_json::Value = reqwest::get(d.url(&format!("/api/webhooks/events/{guid}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(event["data"]["outcome"], "ignored", "{event}");
        assert!(
            event.to_string().contains("refused for scheduling"),
            "{event}"
        );
        let job = reqwest::get(d.url(&format!("/api/jobs/{id}")))
            .await
            .unwrap();
        assert_eq!(job.status(), 404, "a job was created for {guid}");
    }
    assert_eq!(
        deliver(d.addr, SECRET_REAL, "labels-fine", 15_303).await,
        202
    );
}
