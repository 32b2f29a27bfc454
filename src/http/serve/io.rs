//! The socket of one connection as hyper sees it: counted in the registry for as long as it is
//! open, with a write-stall deadline, and with hyper's own answers to malformed requests turned
//! into the API's JSON error envelope.
//!
//! Why rewrite bytes: hyper answers a request it cannot parse (400), a URI too long (414) or a
//! head too large (431) by itself, with an empty body, before any handler runs, and offers no
//! hook to change that answer. Such an answer is recognisable: it is the only head hyper writes
//! with `content-length: 0` and no `content-type` on a 4xx of those three, and it is the last
//! thing written on the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::connections::Slot;

pub struct ServedIo {
    tcp: TcpStream,
    /// Counts the connection until the socket is closed (after a WebSocket upgrade too).
    _slot: Slot,
    /// A peer that reads nothing for this long while a write waits is gone.
    write_stall: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// The JSON answer that replaces hyper's empty one, still to be written.
    replacement: Option<Vec<u8>>,
}

impl ServedIo {
    pub fn new(tcp: TcpStream, slot: Slot, write_stall: Duration) -> Self {
        ServedIo {
            tcp,
            _slot: slot,
            write_stall,
            stalled: None,
            replacement: None,
        }
    }

    /// `Pending` from the socket: starts (or checks) the write-stall deadline.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let write_stall = self.write_stall;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(write_stall)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {write_stall:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_tcp_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.tcp).poll_write(cx, buf) {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.replacement.take() {
            match self.poll_tcp_write(cx, &pending) {
                Poll::Ready(Ok(n)) if n < pending.len() => {
                    self.replacement = Some(pending[n..].to_vec());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.replacement = Some(pending);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's bodiless answer to a request it could not parse, as the JSON envelope, or `None`
/// for any other bytes.
pub fn json_for_hyper_error(buf: &[u8]) -> Option<Vec<u8>> {
    let (status, code, message) = match buf.get(..13)? {
        b"HTTP/1.1 400 " => (
            400,
            "BAD_REQUEST",
            "the request could not be parsed as HTTP/1.1",
        ),
        b"HTTP/1.1 414 " => (414, "URI_TOO_LONG", "the request target is too long"),
        b"HTTP/1.1 431 " => (
            431,
            "HEADERS_TOO_LARGE",
            "the request head is too large (at most 100 headers, 64 KiB in all)",
        ),
        _ => return None,
    };
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.ends_with("\r\n\r\n")
        || head.matches("\r\n\r\n").count() != 1
        || head.contains("\r\ncontent-type:")
        || !head.contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let reason = std::str::from_utf8(&buf[13..]).ok()?.split("\r\n").next()?;
    let body = serde_json::json!({"success": false, "error": {"code": code, "message": message}})
        .to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for ServedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_replacement(cx))?;
        if let Some(json) = json_for_hyper_error(buf) {
            // Claimed written whole: hyper closes the connection after it, and the flush and
            // shutdown it does next write the replacement out.
            this.replacement = Some(json);
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_tcp_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes a head and its body in one buffer, which is what
    // `json_for_hyper_error` looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_error_answers_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 00:00:00 GMT\r\n\r\n";
        let json = String::from_utf8(json_for_hyper_error(hyper).unwrap()).unwrap();
        assert!(
            json.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{json}"
        );
        let body: serde_json::Value =
            serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE");
        // Our own answers have a content type; a 404 or 200 is never touched.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(json_for_hyper_error(ours).is_none());
        assert!(
            json_for_hyper_error(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none()
        );
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}\r\n\r\n";
        assert!(json_for_hyper_error(with_body).is_none());
    }
}
