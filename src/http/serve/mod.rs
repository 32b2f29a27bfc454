//! The main listener's accept loop and connections, instead of `axum::serve`, which has no
//! header-read or idle timeout and no bound on connections: 1,100 idle connections took every
//! file descriptor under the default limit of 1,024, and `accept` then failed every second
//! while `/healthz` and GitHub's deliveries timed out.
//!
//! - **Timeouts.** A connection must send a whole request head within `server.header_timeout`,
//!   when it opens and between requests (hyper's header-read timer, which also runs while a
//!   kept-alive connection waits: the idle timeout). Bodies have `server.body_timeout`
//!   ([`super::body`]). A write that the peer does not read for [`WRITE_STALL`] fails.
//! - **Bound.** At most `max_connections` are open ([`connections`]); at the limit the
//!   longest-idle one is closed to make room, and when none is idle the new one gets a 503 and
//!   is closed at once, so the listener's backlog never fills with waiting clients.
//! - **File descriptors.** Should `accept` still fail for lack of them (the database or Docker
//!   took more than their reserve), an idle connection is shed and the loop goes on.

pub mod connections;
mod io;
pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::telemetry::repeats::Repeats;
use connections::{Admission, Connections};

/// A peer that reads nothing of a response (or of the WebSocket feed) for this long is gone.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// How long a closing connection gets to finish its response in progress.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);
/// Pause after `accept` failed, so a persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// The largest request head (and read buffer) per connection. hyper's default, ~400 KiB, let
/// 900 half-sent heads hold 360 MB.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers per request (hyper's default, set so that it is one).
const MAX_HEADERS: usize = 100;
/// The listener's limits, from `[server]` (the connection bound is the registry's).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `close` is cancelled, then lets open connections finish
/// their response in progress (bounded by [`CLOSE_DEADLINE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    close: CancellationToken,
    registry: Arc<Connections>,
) {
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    tracing::debug!(?limits, "serving connections");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = close.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(error) => {
                accept_failed(&error, &registry).await;
                continue;
            }
        };
        // Live messages are small writes: with Nagle's algorithm a write made while an earlier
        // one is unacknowledged waits for the client's delayed ACK (up to 40 ms).
        let _ = tcp.set_nodelay(true);
        let slot = match registry.admit() {
            Admission::Admitted(slot) => slot,
            Admission::Full => {
                refuse(tcp);
                continue;
            }
        };
        let connection = slot.connection.clone();
        let io = TokioIo::new(io::ServedIo::new(tcp, slot, WRITE_STALL));
        let http = http.clone();
        let router = router.clone();
        let close = close.clone();
        tracker.spawn(async move {
            let busy_on = connection.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = busy_on.busy();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(axum::body::Body::new)).await;
                    drop(busy);
                    response
                }
            });
            let served = http.serve_connection(io, service).with_upgrades();
            tokio::pin!(served);
            let result = tokio::select! {
                result = served.as_mut() => result,
                _ = connection.shed.cancelled() => finish(served.as_mut()).await,
                _ = close.cancelled() => finish(served.as_mut()).await,
            };
            // After an upgrade the socket lives on in the WebSocket task; it is not idle.
            connection.hand_over();
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    registry.close_all();
    tracker.close();
    tracker.wait().await;
}

/// Closes a connection after its response in progress, within [`CLOSE_DEADLINE`].
async fn finish<C>(mut served: std::pin::Pin<&mut C>) -> Result<(), hyper::Error>
where
    C: GracefulConnection,
{
    served.as_mut().graceful();
    match tokio::time::timeout(CLOSE_DEADLINE, served).await {
        Ok(result) => result,
        Err(_) => Ok(()), // dropped, which closes the socket
    }
}

/// The one thing [`finish`] needs of hyper's connection type (whose full name is unwieldy).
trait GracefulConnection: std::future::Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// At the limit with nothing idle: a 503 if the socket takes it now, then closed.
fn refuse(tcp: TcpStream) {
    metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
    static FULL: Repeats = Repeats::new(crate::telemetry::repeats::WINDOW);
    if let Some(held) = FULL.admit() {
        tracing::warn!("connection refused: every connection is busy at the limit{held}");
    }
    let body = r#"{"success":false,"error":{"code":"UNAVAILABLE","message":"too many connections; retry"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // No request was read; whatever the socket does not take now is not worth waiting for.
    let _ = tcp.try_write(answer.as_bytes());
}

/// `EMFILE`/`ENFILE`: out of file descriptors; anything else is the one connection's problem.
async fn accept_failed(error: &std::io::Error, registry: &Connections) {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    if matches!(error.raw_os_error(), Some(EMFILE | ENFILE)) {
        static EXHAUSTED: Repeats = Repeats::new(crate::telemetry::repeats::WINDOW);
        let shed = registry.shed_one();
        if let Some(held) = EXHAUSTED.admit() {
            tracing::warn!(
                %error,
                open = registry.count(),
                shed,
                "accept failed: out of file descriptors; closing an idle connection{held}"
            );
        }
    } else {
        tracing::debug!(%error, "accept failed");
    }
    tokio::time::sleep(ACCEPT_RETRY).await;
}
