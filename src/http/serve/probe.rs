//! The watchdog's self-probe: `GET /healthz` over loopback through the listener, as a client
//! would. A daemon whose database answers but whose listener no longer accepts or serves (out
//! of file descriptors, a wedged accept loop) takes no deliveries, and must not be kept alive.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where to reach a listener bound to `local`: an unspecified address (`0.0.0.0`, `::`) is
/// reached over loopback.
pub fn probe_address(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// `Ok` once the listener answered `/healthz` with 200 within `within`.
pub async fn probe(local: SocketAddr, within: Duration) -> Result<(), String> {
    let attempt = async {
        let mut tcp = TcpStream::connect(probe_address(local))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        if &head == b"HTTP/1.1 200" {
            Ok(())
        } else {
            Err(format!("answered `{}`", String::from_utf8_lossy(&head)))
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}
