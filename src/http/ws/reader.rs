//! The read half of a connection, in a task of its own.
//!
//! Why not one more branch in the writer's `select!`: every poll of tungstenite's read half
//! zero-fills its read buffer before it asks the socket, and the writer loop wakes for every
//! live message. With 1,000 clients at 500 messages/s that was a third of the daemon's CPU.
//! A task of its own is polled only when the socket has something to read.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::StreamExt;
use futures::stream::SplitStream;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

/// Client frames waiting for the writer loop; the reader stops reading while it is full.
const QUEUE: usize = 8;

/// What the client sent, as the writer loop needs it.
pub(super) enum Heard {
    /// A text frame: a request.
    Text(Utf8Bytes),
    /// A binary frame: not part of the protocol.
    Binary,
    /// A ping or pong: only proof of life (tungstenite answers pings itself).
    Alive,
    /// A message larger than the limit: the connection is closed with 1009 (message too big),
    /// so the client learns why instead of seeing the connection drop.
    TooBig,
}

/// Starts reading; the receiver yields `None` once the client closed or the connection broke.
/// Dropping the handle stops the task.
pub(super) fn spawn(
    mut stream: SplitStream<WebSocket>,
) -> (mpsc::Receiver<Heard>, AbortOnDropHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(read) = stream.next().await {
            let heard = match read {
                Ok(Message::Text(text)) => Heard::Text(text),
                Ok(Message::Binary(_)) => Heard::Binary,
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => Heard::Alive,
                Err(error) if is_too_big(&error) => Heard::TooBig,
                Err(_) => break,
            };
            let stop = matches!(heard, Heard::TooBig);
            if tx.send(heard).await.is_err() || stop {
                break;
            }
        }
    });
    (rx, AbortOnDropHandle::new(task))
}

/// True for tungstenite's "message/frame larger than `max_message_size`" error (the version
/// axum uses: the downcast fails, and the test of 1009 with it, if they ever differ).
fn is_too_big(error: &axum::Error) -> bool {
    use std::error::Error;
    matches!(
        error
            .source()
            .and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}
