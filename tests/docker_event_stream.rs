//! The event stream's behaviour when the engine goes away, against a fake engine on loopback
//! (the real daemon is shared and must not be restarted by tests).

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use futures::StreamExt;
use runnerhub::docker::{BollardRuntime, ContainerEvent, ContainerRuntime, DockerError};

/// Time of the one event the fake engine sends.
const EVENT_TIME_NANOS: i64 = 1_700_000_000_123_456_789;

/// Answers `/version` like Engine 20.10 and `/events` with one `die` event, then closes the
/// stream as a restarting daemon does. Records each `/events` query string.
async fn fake_engine() -> (String, Arc<Mutex<Vec<String>>>) {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let events = axum::routing::get(
        |State(queries): State<Arc<Mutex<Vec<String>>>>, RawQuery(query): RawQuery| async move {
            queries.lock().unwrap().push(query.unwrap_or_default());
            let event = serde_json::json!({
                "Type": "container",
                "Action": "die",
                "Actor": {"ID": "abc123", "Attributes": {"exitCode": "0", "runnerhub.runner-id": "r1"}},
                "time": EVENT_TIME_NANOS / 1_000_000_000,
                "timeNano": EVENT_TIME_NANOS,
            });
            format!("{event}\n")
        },
    );
    let version = axum::routing::get(|| async {
        axum::Json(serde_json::json!({"ApiVersion": "1.41", "Version": "20.10.24"}))
    });
    // bollard 0.18 sends unversioned paths (its URL join drops the `/vX.Y` prefix); accept both.
    let app = axum::Router::new()
        .route("/version", version.clone())
        .route("/{version}/version", version)
        .route("/events", events.clone())
        .route("/{version}/events", events)
        .with_state(queries.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("tcp://{addr}"), queries)
}

#[tokio::test]
async fn stream_ends_with_an_error_and_resubscription_replays_from_last_event() {
    let (host, queries) = fake_engine().await;
    let runtime = BollardRuntime::connect(&host).await.unwrap();
    assert_eq!(runtime.client().client_version().to_string(), "1.41");

    let items: Vec<_> = runtime.events().collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[0].as_ref().unwrap(),
        &ContainerEvent::Exited {
            container_id: "abc123".into(),
            runner_id: Some("r1".into()),
            exit_code: Some(0),
            oom: false,
        }
    );
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(err, DockerError::Unavailable(m) if m.contains("subscribe again")),
        "{err:?}"
    );

    // The caller subscribes again: Docker is asked for everything since the last event seen.
    let _ = runtime.events().collect::<Vec<_>>().await;
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 2);
    assert!(queries[0].contains("filters="), "{}", queries[0]);
    assert!(
        queries[1].contains("since=1700000000.123456789"),
        "{}",
        queries[1]
    );
}
