//! `GET /ws`: the live feed. Every state change as `{seq, type, repository?, time, data}`.
//!
//! # Protocol
//!
//! Connect with optional query parameters: `repository=a/b,c/d` and `type=job,webhook`
//! (comma-separated filters; an event with no repository, such as a `pool` counter, passes every
//! repository filter), `since=<seq>` (resume), `token=<api token>` (or `Authorization: Bearer`).
//!
//! Server → client, text frames, always `{seq, type, data}` (+ `repository`, `time` on state
//! changes):
//! - state changes (`webhook`, `job`, `workflow_run`, `runner`, `pool`): `seq` strictly
//!   increasing, across daemon restarts.
//! - `snapshot`: the current state ([`super::snapshot`]); its `seq` is the last state change it
//!   includes, the stream continues after it. Sent on connect without `since`, after a
//!   `resync`, and on request. Applying a later change that the snapshot already shows is
//!   harmless: changes carry the whole new state of their object.
//! - `resync` `{reason, since, oldest?}`: the missed messages cannot be replayed (`since_too_old`:
//!   pruned from the log; `since_ahead`: `since` is from another database; `too_far_behind`); a
//!   `snapshot` follows.
//! - `lagged` `{missed, resume_from}`: the client read too slowly and fell off the live buffer;
//!   the missed messages are replayed from the log next, then the live stream continues.
//! - `subscribed` `{repository, type}` (the filter now in force), `pong`, `error` `{message}`.
//!
//! Control messages carry the `seq` of the last state change the client is up to date with.
//!
//! Client → server, JSON text frames:
//! - `{"op": "subscribe", "repository": "a/b,c/d" | [..] | null, "type": "job" | [..] | null,
//!   "snapshot": true}`: replace the filter (null: all), and get a new snapshot if asked.
//! - `{"op": "snapshot"}`: a fresh snapshot (at most one per [`SNAPSHOT_MIN_INTERVAL`]).
//! - `{"op": "ping"}`: answered with `pong` (browsers cannot send ping frames).
//!
//! Heartbeat: a ping frame every [`HEARTBEAT`]; a client silent for [`CLIENT_TIMEOUT`] is closed.
//!
//! Close codes: 1001 daemon shutting down; 1009 a client message over 64 KiB; 4400 bad request
//! (the reason says what); 4401 missing or wrong token; 4403 (open mode only) an `Origin` that
//! is not the daemon's own, `server.public_url`'s or in `server.allowed_origins`; 4408 heartbeat
//! timeout. Auth, origin and query errors are reported after the upgrade, as close frames,
//! because a browser cannot read the status of a refused handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use crate::app::AppState;
use crate::events::BusMessage;
use filter::{Filter, check_types, list, parse_query, query_token, truncate_reason};
use reader::Heard;

/// How often the server pings.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// A client that sent nothing (not even a pong) for this long is gone.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(50);
/// A client that cannot take one burst (at most `SEND_BURST` messages, ~110 KB) in this long is
/// dropped: it is not reading, or reads slower than anyone can use (~11 KB/s). Bursts are
/// bounded so that a client reading slowly but steadily is never mistaken for one that stopped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Requested snapshots are served at most this often per connection (they cost queries).
pub const SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How long a resume waits for the log writer to catch up with the live stream.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// Log rows read per replay query.
const REPLAY_PAGE: u32 = 1000;
/// A lagging client further behind than this gets a snapshot instead of a replay.
const LAG_REPLAY_MAX: i64 = 20_000;
/// Messages written before one flush (one syscall for a burst; see `SEND_TIMEOUT`). Large
/// enough that a batch of changes published together (the processor commits in groups, and
/// after a stall of the disk a group is large) reaches each client in one write: a write of
/// many changes costs the daemon little more than one of a single change, so the time to
/// reach all clients grows with the number of writes more than with the bytes. 256 typical
/// changes (~0.4 KB) are ~110 KB, under tungstenite's 128 KiB write buffer; with larger ones
/// tungstenite simply writes before the flush.
const SEND_BURST: usize = 256;
/// Largest client message accepted.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Read buffer per connection (tungstenite's default is 128 KiB, allocated and zeroed up
/// front: 128 MiB for 1,000 clients who send a few bytes a minute). It grows for larger frames.
const READ_BUFFER: usize = 4 * 1024;
/// Close code: bad query or request.
pub const CLOSE_BAD_REQUEST: u16 = 4400;
/// Close code: API tokens are set and none (or a wrong one) was given.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: open mode, and the page's `Origin` is not the daemon's own or an allowed one.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: the client stopped answering.
pub const CLOSE_TIMEOUT: u16 = 4408;
/// Close code: a client message over [`MAX_CLIENT_MESSAGE`] (standard "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the daemon is shutting down (standard "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

mod filter;
mod reader;

/// `GET /ws`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

/// Why a connection is refused: reported as a close frame after the upgrade.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), String> {
    let tokens = state.api_tokens();
    if tokens.is_empty() {
        return Ok(());
    }
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match header.or(query_token) {
        Some(token) if super::token_matches(&tokens, token) => Ok(()),
        Some(_) => Err("unauthorized: the token is not valid".into()),
        None => Err("unauthorized: give token=<api token> or Authorization: Bearer".into()),
    }
}

/// In the open mode (no API token) a page of another origin must not read the feed: a
/// browser connects cross-origin without asking (WebSockets have no CORS). Clients that send
/// no `Origin` (not browsers) pass.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), String> {
    let config = state.config();
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return Ok(());
    };
    if !config.server.api_tokens.is_empty() {
        return Ok(());
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("(not text)");
    if super::browser::origin_allowed(&config.server, host, origin) {
        Ok(())
    } else {
        Err(format!(
            "origin {} not allowed; add it to server.allowed_origins",
            origin.chars().take(60).collect::<String>()
        ))
    }
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let parsed = parse_query(query.as_deref());
    let token = query_token(query.as_deref());
    let refusal = match (
        authorize(&state, &headers, token.as_deref()),
        check_origin(&state, &headers),
    ) {
        (Err(reason), _) => Some((CLOSE_UNAUTHORIZED, reason)),
        (Ok(()), Err(reason)) => Some((CLOSE_FORBIDDEN, reason)),
        (Ok(()), Ok(())) => parsed
            .as_ref()
            .err()
            .map(|reason| (CLOSE_BAD_REQUEST, reason.clone())),
    };
    let ws = match ws {
        Ok(ws) => ws,
        // Not a WebSocket handshake: plain HTTP answers with the usual envelope.
        Err(rejection) => {
            return match refusal {
                Some((CLOSE_UNAUTHORIZED, reason)) => ApiError::Unauthorized(reason),
                Some((CLOSE_FORBIDDEN, reason)) => ApiError::Status {
                    status: axum::http::StatusCode::FORBIDDEN,
                    code: "CROSS_SITE_REFUSED",
                    message: reason,
                },
                Some((_, reason)) => ApiError::bad_request(reason),
                None => ApiError::bad_request(format!(
                    "GET /ws needs a WebSocket upgrade: {}",
                    rejection.body_text()
                )),
            }
            .into_response();
        }
    };
    // The frame limit too: a frame is read whole before the message limit is checked, and
    // tungstenite's default frame limit is 16 MiB per connection.
    let ws = ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER);
    match (refusal, parsed) {
        (Some((code, reason)), _) => ws.on_upgrade(move |socket| refuse(socket, code, reason)),
        (None, Ok(request)) => ws.on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let mut client = Client {
                state,
                sink,
                filter: request.filter,
                position: 0,
                last_snapshot: None,
            };
            let _gauge = ClientGauge::new();
            if let Err(end) = client.serve(stream, request.since).await {
                client.end(end).await;
            }
        }),
        (None, Err(_)) => unreachable!("a parse error is a refusal"),
    }
}

async fn refuse(mut socket: WebSocket, code: u16, reason: String) {
    tracing::debug!(code, reason, "WebSocket refused");
    let frame = CloseFrame {
        code,
        reason: truncate_reason(&reason).into(),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Counts connected clients in `runnerhub_websocket_clients`.
struct ClientGauge;

impl ClientGauge {
    fn new() -> Self {
        metrics::gauge!(crate::metrics::WEBSOCKET_CLIENTS).increment(1.0);
        ClientGauge
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::WEBSOCKET_CLIENTS).decrement(1.0);
    }
}

/// Why a connection ends.
enum End {
    /// Close with this code and reason.
    Close(u16, String),
    /// The peer is gone or not reading: nothing more can be sent.
    Gone,
}

type Live = broadcast::Receiver<Arc<BusMessage>>;

/// One connected client.
struct Client {
    state: AppState,
    sink: SplitSink<WebSocket, Message>,
    filter: Filter,
    /// The last seq the client is up to date with (sent, or filtered out).
    position: i64,
    last_snapshot: Option<Instant>,
}

impl Client {
    async fn serve(
        &mut self,
        stream: SplitStream<WebSocket>,
        since: Option<i64>,
    ) -> Result<(), End> {
        let (mut heard, _reader) = reader::spawn(stream);
        let mut live = match since {
            Some(since) => self.resume(since).await?,
            None => self.fresh_start(None).await?,
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        let mut last_heard = Instant::now();
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return Err(End::Close(CLOSE_GOING_AWAY, "daemon shutting down".into()));
                }
                received = live.recv() => match received {
                    Ok(message) => self.forward(message, &mut live).await?,
                    Err(RecvError::Lagged(missed)) => {
                        live = self.recover_lag(missed).await?;
                    }
                    Err(RecvError::Closed) => {
                        return Err(End::Close(CLOSE_GOING_AWAY, "daemon shutting down".into()));
                    }
                },
                frame = heard.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Heard::Text(text)) => self.on_request(&text).await?,
                        Some(Heard::Binary) => {
                            self.control("error", json!({"message": "send JSON text frames"})).await?;
                        }
                        Some(Heard::Alive) => {}
                        Some(Heard::TooBig) => {
                            let reason = format!("message larger than {MAX_CLIENT_MESSAGE} bytes");
                            return Err(End::Close(CLOSE_TOO_BIG, reason));
                        }
                        None => return Ok(()), // closed by the client, or broken
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > CLIENT_TIMEOUT {
                        return Err(End::Close(CLOSE_TIMEOUT, "heartbeat timeout: no pong".into()));
                    }
                    self.send(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Subscribes and sends a snapshot (after a `resync` notice when `resync` is given).
    async fn fresh_start(&mut self, resync: Option<Value>) -> Result<Live, End> {
        let (live, at) = self.state.bus.subscribe();
        self.position = at;
        if let Some(notice) = resync {
            self.control("resync", notice).await?;
        }
        self.send_snapshot().await?;
        Ok(live)
    }

    /// Replays what came after `since` from the log, then hands over to the live stream: the
    /// receiver is taken first, so everything after `at` is in it and everything up to `at`
    /// is in the log once the writer has caught up. No gap, no duplicate.
    async fn resume(&mut self, since: i64) -> Result<Live, End> {
        let (live, at) = self.state.bus.subscribe();
        if since > at {
            return self
                .fresh_start(Some(
                    json!({"reason": "since_ahead", "since": since, "latest": at}),
                ))
                .await;
        }
        if !self.state.bus.wait_logged(at, LOG_WAIT).await {
            tracing::warn!(
                since,
                at,
                "live log writer is behind; replay may be incomplete"
            );
        }
        let bounds = self
            .state
            .store
            .live_event_bounds()
            .await
            .map_err(|e| internal("reading the live log bounds", e))?;
        if since < bounds.pruned_through {
            let notice = json!({"reason": "since_too_old", "since": since, "oldest": bounds.pruned_through + 1});
            return self.fresh_start(Some(notice)).await;
        }
        let mut cursor = since;
        while cursor < at {
            let rows = self
                .state
                .store
                .live_events_after(cursor, at, REPLAY_PAGE)
                .await
                .map_err(|e| internal("replaying the live log", e))?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            let mut fed = 0;
            for row in rows {
                if self.filter.matches(&row.kind, row.repository.as_deref()) {
                    self.feed(Message::Text(row.message.into())).await?;
                    fed += 1;
                    if fed % SEND_BURST == 0 {
                        self.flush().await?;
                    }
                }
            }
            self.flush().await?;
            cursor = last;
        }
        self.position = at;
        Ok(live)
    }

    async fn recover_lag(&mut self, missed: u64) -> Result<Live, End> {
        let behind = self.state.bus.last_seq() - self.position;
        tracing::debug!(missed, behind, "WebSocket client lagged");
        if behind > LAG_REPLAY_MAX {
            let notice = json!({"reason": "too_far_behind", "since": self.position});
            return self.fresh_start(Some(notice)).await;
        }
        self.control(
            "lagged",
            json!({"missed": missed, "resume_from": self.position}),
        )
        .await?;
        self.resume(self.position).await
    }

    /// Sends `first` and whatever else is already waiting, with one flush, under one timeout
    /// (a clock read per message adds up at 1,000 clients).
    async fn forward(&mut self, first: Arc<BusMessage>, live: &mut Live) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.write_burst(first, live)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn write_burst(
        &mut self,
        first: Arc<BusMessage>,
        live: &mut Live,
    ) -> Result<(), axum::Error> {
        let mut pending = Some(first);
        let mut fed = 0;
        while let Some(message) = pending.take() {
            // A duplicate cannot come from the bus; the check keeps a bug from showing twice.
            if message.seq > self.position {
                self.position = message.seq;
                if self
                    .filter
                    .matches(&message.kind, message.repository.as_deref())
                {
                    // Serialized once for every client; tungstenite copies it into the frame.
                    self.sink.feed(Message::Text(message.text.clone())).await?;
                    fed += 1;
                }
            }
            if fed < SEND_BURST {
                // A lag found here is handled by the next recv().
                pending = live.try_recv().ok();
            }
        }
        if fed > 0 {
            self.sink.flush().await?;
        }
        Ok(())
    }

    async fn on_request(&mut self, text: &str) -> Result<(), End> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            Csv(String),
            List(Vec<String>),
        }
        #[derive(Deserialize)]
        #[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
        enum Request {
            Subscribe {
                repository: Option<OneOrMany>,
                #[serde(rename = "type")]
                types: Option<OneOrMany>,
                #[serde(default)]
                snapshot: bool,
            },
            Snapshot,
            Ping,
        }
        let to_list = |v: Option<OneOrMany>| match v {
            None => None,
            Some(OneOrMany::Csv(s)) => list(&s),
            Some(OneOrMany::List(l)) => list(&l.join(",")),
        };
        match serde_json::from_str::<Request>(text) {
            Ok(Request::Subscribe {
                repository,
                types,
                snapshot,
            }) => {
                let filter = Filter {
                    repositories: to_list(repository),
                    types: to_list(types),
                };
                if let Err(message) = check_types(&filter.types) {
                    return self.control("error", json!({"message": message})).await;
                }
                self.filter = filter;
                self.control("subscribed", self.filter.describe()).await?;
                if snapshot {
                    self.send_snapshot().await?;
                }
                Ok(())
            }
            Ok(Request::Snapshot) => {
                if self
                    .last_snapshot
                    .is_some_and(|t| t.elapsed() < SNAPSHOT_MIN_INTERVAL)
                {
                    let message = "snapshot requested too often; wait 2 s";
                    return self.control("error", json!({"message": message})).await;
                }
                self.send_snapshot().await
            }
            Ok(Request::Ping) => self.control("pong", Value::Null).await,
            Err(error) => {
                let message = format!(
                    "bad request: {error}; send {{\"op\": \"subscribe\"|\"snapshot\"|\"ping\"}}"
                );
                self.control("error", json!({"message": message})).await
            }
        }
    }

    async fn send_snapshot(&mut self) -> Result<(), End> {
        let repositories = self.filter.repositories.clone().unwrap_or_default();
        let data = super::snapshot::snapshot_for(&self.state, &repositories)
            .await
            .map_err(|e| internal("building a snapshot", e))?;
        self.last_snapshot = Some(Instant::now());
        self.control("snapshot", data).await
    }

    async fn control(&mut self, kind: &str, data: Value) -> Result<(), End> {
        let text = json!({"seq": self.position, "type": kind, "data": data}).to_string();
        self.send(Message::Text(Utf8Bytes::from(text))).await
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.feed(message).await?;
        self.flush().await
    }

    async fn feed(&mut self, message: Message) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.feed(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn end(&mut self, end: End) {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: truncate_reason(&reason).into(),
            };
            let _ = self.send(Message::Close(Some(frame))).await;
        }
    }
}

fn internal(what: &str, error: impl std::fmt::Display) -> End {
    tracing::error!(%error, "WebSocket: {what} failed");
    End::Close(1011, format!("internal error {what}; reconnect"))
}
