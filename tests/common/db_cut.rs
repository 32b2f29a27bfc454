//! A TCP proxy between a daemon and PostgreSQL that a test cuts and heals, to cut one fleet
//! instance off from the database while the others still reach it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to PostgreSQL that the test can cut (every connection closed, new ones refused)
/// and heal.
#[derive(Clone)]
pub struct Cut {
    open: Arc<Mutex<bool>>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cut {
    /// A proxy to the server of `database_url`; returns it and the URL through it.
    pub async fn start(database_url: &str) -> (Cut, String) {
        let upstream = server_of(database_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Cut {
            open: Arc::new(Mutex::new(true)),
            connections: Arc::default(),
        };
        let me = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !*me.open.lock().unwrap() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                me.connections.lock().unwrap().push(pipe);
            }
        });
        (cut, url_via(database_url, addr))
    }

    pub fn cut(&self) {
        *self.open.lock().unwrap() = false;
        for pipe in self.connections.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    pub fn heal(&self) {
        *self.open.lock().unwrap() = true;
    }
}

/// `postgres://user@127.0.0.1:5432/db?x` → `127.0.0.1:5432`.
fn server_of(url: &str) -> SocketAddr {
    let (_, host) = split(url);
    std::net::ToSocketAddrs::to_socket_addrs(host)
        .unwrap()
        .next()
        .unwrap()
}

/// The URL with its server replaced by `via`.
fn url_via(url: &str, via: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    let (user, _) = split(url);
    format!("{scheme}://{user}{via}/{path}")
}

/// (`user@` or nothing, host:port) of a URL.
fn split(url: &str) -> (String, &str) {
    let (_, rest) = url.split_once("://").unwrap();
    let (authority, _) = rest.split_once('/').unwrap();
    match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    }
}
