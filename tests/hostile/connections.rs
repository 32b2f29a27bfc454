//! Item 2: connections time out, are bounded below the open-file limit, and the watchdog is
//! fed only while the listener serves.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use super::raw::{deliver, webhook_head};
use super::{SECRET_REAL, base, common::daemon::Daemon};

/// Under a 1,024 file limit (soft and hard, as a unit without `LimitNOFILE=` runs it), 1,100
/// idle connections do not take the daemon down: it keeps serving while they are held (the
/// longest-idle are shed to make room), and the rest are closed at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_a_1024_file_limit_are_shed_and_time_out() {
    // The attacker (this test) needs 1,100 descriptors of its own (raising the hard limit
    // too needs root, which CI is).
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if soft < 4096 {
        rlimit::Resource::NOFILE
            .set(4096, hard.max(4096))
            .expect("an open-file limit of 4,096 for the test's own connections");
    }
    let d = Daemon::start_with_open_files(
        &base(
            "header_timeout = \"3s\"",
            &format!("webhook_secrets = [\"{SECRET_REAL}\"]"),
        ),
        &[],
        &[],
        Some((1024, 1024)),
    );
    let limits = d.wait_for_log("connection limits", Duration::from_secs(10));
    assert!(limits.contains("max_connections=896"), "{limits}");
    let mut idle: Vec<std::net::TcpStream> = (0..1100)
        .map(|_| std::net::TcpStream::connect(d.addr).unwrap())
        .collect();
    let started = Instant::now();
    // Serving again within seconds, while the idle connections are still open.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut healthy = false;
    while !healthy && started.elapsed() < Duration::from_secs(5) {
        healthy = client
            .get(d.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
    }
    assert!(healthy, "no /healthz within 5 s:\n{}", d.logs());
    eprintln!(
        "serving {:?} after opening 1,100 idle connections",
        started.elapsed()
    );
    assert_eq!(
        deliver(d.addr, SECRET_REAL, "beside-idle-1", 15_201).await,
        202
    );
    // Every idle connection is closed by the daemon by the header timeout.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut open = idle.len();
    while open > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        open = idle.iter_mut().filter(|s| !closed_by_peer(s)).count();
    }
    assert_eq!(
        open, 0,
        "idle connections still open after the header timeout"
    );
    assert!(
        !d.logs().contains("Too many open files"),
        "ran out of descriptors:\n{}",
        d.logs()
    );
}

/// A soft limit below the hard one is raised at start, and the connection bound follows it.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let d = Daemon::start_with_open_files(
        &base("", "webhook_secrets = [\"x\"]"),
        &[],
        &[],
        Some((1024, 4096)),
    );
    let limits = d.wait_for_log("connection limits", Duration::from_secs(10));
    // 4,096 less an eighth kept for the database, Docker and GitHub.
    assert!(limits.contains("max_connections=3584"), "{limits}");
    let status = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        line.split_whitespace().filter(|w| *w == "4096").count() == 2,
        "{line}"
    );
}

fn closed_by_peer(mut socket: &std::net::TcpStream) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => true, // the 503 of a refused connection: it is closed next
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// A half-sent request head is cut off at the header timeout, and a kept-alive connection that
/// sends nothing more is closed at it too (the idle timeout).
#[tokio::test]
async fn half_sent_heads_and_idle_keep_alives_are_closed() {
    let d = Daemon::start(
        &base("header_timeout = \"1s\"", "webhook_secrets = [\"x\"]"),
        &[],
        &[],
    );
    let mut half = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(&mut half, b"GET /healthz HTTP/1.1\r\nHost: loc").unwrap();
    let mut kept = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(
        &mut kept,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    for (name, socket) in [
        ("half-sent head", &mut half),
        ("idle keep-alive", &mut kept),
    ] {
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut rest = Vec::new();
        let read = socket.read_to_end(&mut rest);
        assert!(read.is_ok(), "{name}: still open ({read:?})");
    }
}

/// Collects sd_notify datagrams for `window`; returns how many were `WATCHDOG=1`.
fn watchdog_pings(socket: &UnixDatagram, window: Duration) -> usize {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + window;
    let mut pings = 0;
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            pings += String::from_utf8_lossy(&buf[..n])
                .lines()
                .filter(|l| *l == "WATCHDOG=1")
                .count();
        }
    }
    pings
}

/// With every connection busy (slow bodies, at `server.max_connections`), the listener cannot
/// serve a new client, so the watchdog is not fed although the database answers; once they
/// go, it is fed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_only_while_the_listener_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let notify = path.display().to_string();
    let d = Daemon::start(
        &base(
            "max_connections = 4\nbody_timeout = \"60s\"",
            "webhook_secrets = [\"x\"]",
        ),
        &[
            ("NOTIFY_SOCKET", &notify),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "self"),
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    while watchdog_pings(&socket, Duration::from_millis(500)) == 0 {
        assert!(Instant::now() < deadline, "never fed:\n{}", d.logs());
    }
    let busy: Vec<std::net::TcpStream> = (0..4)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(d.addr).unwrap();
            let head = webhook_head(&format!("slow-{i}"), 100, Some("sha256=00"));
            std::io::Write::write_all(&mut s, format!("{head}{{").as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    watchdog_pings(&socket, Duration::from_millis(100)); // what was sent before
    assert_eq!(
        watchdog_pings(&socket, Duration::from_millis(1500)),
        0,
        "fed while no client could be served:\n{}",
        d.logs()
    );
    assert!(d.logs().contains("watchdog: the listener does not serve"));
    drop(busy);
    assert!(
        watchdog_pings(&socket, Duration::from_secs(3)) > 0,
        "not fed again:\n{}",
        d.logs()
    );
}
