//! Live feed fan-out: N WebSocket clients while signed webhooks make M state changes per second.
//!
//! `cargo bench --bench ws_fanout` (options: `-- --clients N --rate EVENTS_PER_S --seconds N`).
//! The daemon is the real binary in its own process (so its CPU and memory are its own), on a
//! temp SQLite database. Each `workflow_job` delivery makes two state changes (`webhook`, `job`),
//! so deliveries are sent at half the event rate, open-loop. Latency is measured per message
//! from the change's `time` (stamped when the bus publishes it) to its arrival at the client.
//! Needs `ulimit -n` above the client count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use runnerhub::webhook::signature::sign;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "bench-secret";

struct Args {
    clients: usize,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        rate: 500,
        seconds: 10,
    };
    let argv: Vec<String> = std::env::args().collect();
    for (i, arg) in argv.iter().enumerate() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--clients" => a.clients = value().expect("--clients N") as usize,
            "--rate" => a.rate = value().expect("--rate N"),
            "--seconds" => a.seconds = value().expect("--seconds N"),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// utime + stime of `pid` in seconds, and its current and peak resident memory in MiB.
fn process_usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime 11, stime 12; clock ticks are 100 Hz on Linux.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// The `time` of a state-change message, read without parsing the whole JSON.
fn published_at(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = text.find("\"time\":\"")? + 8;
    let end = start + text[start..].find('"')?;
    text[start..end].parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/bench.db\"\n[github]\napi_url = \"http://127.0.0.1:9\"\ntoken = \"bench\"\n[[pools]]\nname = \"linux\"\nlabels = [\"self-hosted\", \"linux\", \"x64\", \"docker\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("runnerhub binary starts");
    let pid = daemon.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args, port, pid));
    // SIGTERM for a clean stop (the daemon flushes its logs).
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = daemon.wait();
}

async fn run(args: Args, port: u16, pid: u32) {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = process_usage(pid);
    println!("daemon idle: RSS {:.1} MiB", idle.1);

    // Clients connect and read the snapshot before the load starts.
    let measuring = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .expect("client connects (check ulimit -n)");
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("\"snapshot\""));
        let measuring = measuring.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies_ms = Vec::new();
            let mut count = 0u64;
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame {
                    if text.contains("\"type\":\"stop\"") {
                        break;
                    }
                    if let Some(at) = published_at(&text) {
                        count += 1;
                        if measuring.load(Ordering::Relaxed) == 1 {
                            let ms = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0);
                            latencies_ms.push(ms as f64 / 1000.0);
                        }
                    }
                }
            }
            (count, latencies_ms)
        }));
    }
    let connected = process_usage(pid);
    println!(
        "{} clients connected: daemon RSS {:.1} MiB",
        args.clients, connected.1
    );

    // Open-loop load: deliveries at half the event rate from 16 connections.
    let template = {
        let dir = std::env::var("RUNNERHUB_FIXTURES").unwrap_or_else(|_| {
            format!("{}/../shared/fixtures/github", env!("CARGO_MANIFEST_DIR"))
        });
        let text = std::fs::read_to_string(format!(
            "{dir}/webhooks/workflow_job.selfhosted.queued.json"
        ))
        .expect("fixture workflow_job.selfhosted.queued.json");
        Arc::new(serde_json::from_str::<serde_json::Value>(&text).unwrap())
    };
    const SENDERS: u64 = 16;
    let deliveries_per_s = args.rate as f64 / 2.0;
    let per_sender = deliveries_per_s / SENDERS as f64;
    let total_per_sender = (per_sender * args.seconds as f64) as u64;
    measuring.store(1, Ordering::Relaxed);
    let (cpu0, start) = (process_usage(pid).0, Instant::now());
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, base, template) = (http.clone(), base.clone(), template.clone());
        senders.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sender));
            for i in 0..total_per_sender {
                let mut v = (*template).clone();
                v["workflow_job"]["id"] = (10_000_000 * (s + 1) + i).into();
                let body = serde_json::to_vec(&v).unwrap();
                ticker.tick().await;
                let r = http
                    .post(format!("{base}/api/webhooks/github"))
                    .header("X-GitHub-Event", "workflow_job")
                    .header("X-GitHub-Delivery", format!("fanout-{s}-{i}"))
                    .header("Content-Type", "application/json")
                    .header("X-Hub-Signature-256", sign(SECRET, &body))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }));
    }
    let mut peak_rss: f64 = 0.0;
    while senders.iter().any(|s| !s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(process_usage(pid).1);
    }
    // Let the last changes reach everyone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu1, rss, hwm) = process_usage(pid);
    let expected = 2 * SENDERS * total_per_sender;
    drop(senders);

    // Stop the readers by closing their connections: stop the daemon's feed for them.
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let mut all = Vec::new();
    let (mut short, mut received) = (0, 0u64);
    for c in clients {
        let (count, latencies) = c.await.unwrap();
        received += count;
        if count < expected {
            short += 1;
        }
        all.extend(latencies);
    }
    all.sort_by(f64::total_cmp);
    println!(
        "load: {} events in {:.1} s ({:.0}/s) to {} clients = {} messages ({:.0}/s); clients short of messages: {short}",
        expected,
        elapsed,
        expected as f64 / elapsed,
        args.clients,
        received,
        received as f64 / elapsed,
    );
    if !all.is_empty() {
        println!(
            "delivery latency (publish → client): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            percentile(&all, 0.999),
            all.last().unwrap()
        );
    }
    println!(
        "daemon: CPU {:.2} cores average under load; RSS {:.1} MiB at the end, {:.1} MiB peak sampled, {:.1} MiB high-water",
        (cpu1 - cpu0) / elapsed,
        rss,
        peak_rss,
        hwm
    );
}
