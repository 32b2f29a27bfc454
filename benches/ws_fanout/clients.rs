//! The client side of the fan-out bench: N WebSocket clients in one process, made cheap.
//!
//! A full client library (tokio-tungstenite) spends more CPU per message than the daemon does
//! to send it, and on 2 cores that makes the load generator the bottleneck. These clients speak
//! just enough of RFC 6455 over a raw `TcpStream`: the upgrade request by hand, server frames
//! (unmasked) parsed from their 2/4/10-byte header, payloads never copied or decoded beyond the
//! first bytes where the daemon writes `seq`, `type` and `time`, and pings answered. The real
//! protocol is exercised by tests/ws.rs with a real client.
//!
//! Every client counts every state change and checks that seqs follow each other with no gap
//! (the bench subscribes with no filter, so every seq is for everyone). Latency is taken on
//! every message: publish `time` (stamped by the daemon's bus) to the moment the frame is parsed.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer per client: a read takes whatever the socket holds, up to this.
const READ_BUFFER: usize = 64 * 1024;
/// The daemon writes `{"seq":N,"type":"..","repository":"..","time":"..",` first; a repository
/// name is at most 140 characters, so the time is always within this many bytes.
const HEADER_SCAN: usize = 400;
/// Connections opened at once while connecting (the daemon builds a snapshot for each).
const CONNECT_CONCURRENCY: usize = 32;

/// What one client saw, from the snapshot it got on connect until the daemon closed.
#[derive(Default)]
pub struct Tally {
    /// State changes received.
    pub changes: u64,
    /// Of those, `webhook` and `job` (the ones the load generator causes, two per delivery).
    pub delivery_changes: u64,
    /// Seqs skipped between two consecutive changes, or between the snapshot and the first.
    pub gaps: u64,
    /// Changes that did not come after the previous one (duplicates, reordering).
    pub out_of_order: u64,
    /// `lagged` and `resync` notices: the client was too slow for the live buffer.
    pub lagged: u64,
    pub resyncs: u64,
    /// The seq of the last change (the snapshot's if none came).
    pub last_seq: i64,
    /// Publish → parsed, microseconds, one per change.
    pub latencies_us: Vec<u32>,
    /// The seq of each latency.
    pub latency_seqs: Vec<i64>,
    /// Reads that returned data: about how many writes the daemon made to this client.
    pub reads: u64,
    /// Payload bytes of state changes.
    pub change_bytes: u64,
}

/// Connects `count` clients to `ws://127.0.0.1:port/ws`, each having read its snapshot; then
/// `ready` is called and every client reads until the daemon closes its connection.
pub async fn run(port: u16, count: usize, ready: impl FnOnce()) -> Vec<Tally> {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = Vec::with_capacity(count);
    for _ in 0..count {
        let semaphore = semaphore.clone();
        connecting.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.unwrap();
            connect(port).await
        }));
    }
    let mut connected = Vec::with_capacity(count);
    for c in connecting {
        connected.push(c.await.unwrap());
    }
    ready();
    let readers: Vec<_> = connected
        .into_iter()
        .map(|client| tokio::spawn(client.read_to_close()))
        .collect();
    let mut tallies = Vec::with_capacity(count);
    for r in readers {
        tallies.push(r.await.unwrap());
    }
    tallies
}

struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    tally: Tally,
}

/// Upgrades one connection and reads up to and including the snapshot.
async fn connect(port: u16) -> Client {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("client connects (check ulimit -n)");
    stream.set_nodelay(true).unwrap();
    // The key is a fixed 16-byte nonce in base64; the accept hash is not checked (bench tool).
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = BytesMut::with_capacity(READ_BUFFER);
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(
            stream.read_buf(&mut buffer).await.unwrap() > 0,
            "closed during upgrade"
        );
    };
    assert!(
        buffer.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&buffer[..end])
    );
    buffer.advance(end);
    let mut client = Client {
        stream,
        buffer,
        tally: Tally::default(),
    };
    loop {
        match client.next_frame().await {
            Some(Frame::Text(header)) => {
                assert_eq!(header.kind, "snapshot", "the first message is the snapshot");
                client.tally.last_seq = header.seq;
                return client;
            }
            Some(Frame::Other) => {}
            None => panic!("the daemon closed before sending a snapshot"),
        }
    }
}

/// What a frame was, as far as the bench cares.
enum Frame {
    Text(TextHeader),
    Other,
}

/// The leading fields of a daemon message.
struct TextHeader {
    seq: i64,
    kind: String,
    /// Microseconds since midnight UTC of the `time` field, if the message has one.
    time_of_day_us: Option<i64>,
}

impl Client {
    async fn read_to_close(mut self) -> Tally {
        while let Some(frame) = self.next_frame().await {
            let Frame::Text(header) = frame else { continue };
            match header.kind.as_str() {
                "lagged" => self.tally.lagged += 1,
                "resync" => self.tally.resyncs += 1,
                // After a resync: the gap is already counted as a resync; continue from here.
                "snapshot" => self.tally.last_seq = header.seq,
                "pong" | "subscribed" | "error" => {}
                _ => self.change(&header),
            }
        }
        self.tally
    }

    fn change(&mut self, header: &TextHeader) {
        let tally = &mut self.tally;
        tally.changes += 1;
        if header.kind == "webhook" || header.kind == "job" {
            tally.delivery_changes += 1;
        }
        if header.seq <= tally.last_seq {
            tally.out_of_order += 1;
            return;
        }
        tally.gaps += (header.seq - tally.last_seq - 1) as u64;
        tally.last_seq = header.seq;
        if let Some(published) = header.time_of_day_us {
            let now = time_of_day_us(chrono::Utc::now().time());
            // Across midnight `now` is the smaller one.
            let latency = (now - published).rem_euclid(86_400_000_000);
            tally.latencies_us.push(latency.min(u32::MAX as i64) as u32);
            tally.latency_seqs.push(header.seq);
        }
    }

    /// The next frame, reading as needed; `None` once the connection is closed.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.parse().await {
                return frame;
            }
            if self.buffer.capacity() - self.buffer.len() < READ_BUFFER / 4 {
                self.buffer.reserve(READ_BUFFER);
            }
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => self.tally.reads += 1,
            }
        }
    }

    /// Takes one whole frame off the buffer: `None` if more bytes are needed, `Some(None)` for
    /// a close frame.
    async fn parse(&mut self) -> Option<Option<Frame>> {
        let b = &self.buffer;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
        let (header, length) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            ),
            126 | 127 => return None,
            n => (2, n as usize),
        };
        if b.len() < header + length {
            return None;
        }
        let frame = match opcode {
            0x1 => {
                let payload = &b[header..header + length];
                let text = text_header(payload).expect("a daemon message with seq and type");
                if text.time_of_day_us.is_some() {
                    self.tally.change_bytes += length as u64;
                }
                Frame::Text(text)
            }
            0x8 => return Some(None),
            0x9 => {
                // Pong with the ping's payload (at most 125 bytes), masked with a zero key.
                let mut pong = vec![0x8a, 0x80 | length as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&b[header..header + length]);
                self.buffer.advance(header + length);
                self.stream.write_all(&pong).await.ok()?;
                return Some(Some(Frame::Other));
            }
            _ => Frame::Other,
        };
        self.buffer.advance(header + length);
        Some(Some(frame))
    }
}

/// Reads `{"seq":N,"type":"T",..,"time":".."` at the start of a state change; control
/// messages (`snapshot`, `lagged`, ..: rare, with sorted keys) are parsed whole.
fn text_header(payload: &[u8]) -> Option<TextHeader> {
    let Some(rest) = payload.strip_prefix(b"{\"seq\":") else {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        return Some(TextHeader {
            seq: value["seq"].as_i64()?,
            kind: value["type"].as_str()?.to_owned(),
            time_of_day_us: None,
        });
    };
    let digits = rest.iter().position(|c| !c.is_ascii_digit())?;
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"type\":\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    let kind = String::from_utf8(rest[..end].to_vec()).ok()?;
    let rest = &rest[end..];
    let rest = &rest[..rest.len().min(HEADER_SCAN)];
    let time_of_day_us =
        find(rest, b"\"time\":\"").and_then(|at| parse_time_of_day(&rest[at + 8..]));
    Some(TextHeader {
        seq,
        kind,
        time_of_day_us,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` → microseconds since midnight (the date is not needed:
/// latencies are far below a day).
fn parse_time_of_day(t: &[u8]) -> Option<i64> {
    let digit = |i: usize| {
        t.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| (c - b'0') as i64)
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if t.get(10) != Some(&b'T') {
        return None;
    }
    let seconds = two(11)? * 3600 + two(14)? * 60 + two(17)?;
    let mut micros = 0;
    if t.get(19) == Some(&b'.') {
        let digits = (0..6).map_while(|i| digit(20 + i));
        let (value, count) = digits.fold((0, 0), |(v, n), d| (v * 10 + d, n + 1));
        micros = value * 10i64.pow(6 - count);
    }
    Some(seconds * 1_000_000 + micros)
}

fn time_of_day_us(t: chrono::NaiveTime) -> i64 {
    use chrono::Timelike;
    t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() / 1000) as i64
}
