//! Live feed fan-out: N WebSocket clients while signed webhooks make M state changes per second.
//!
//! `ulimit -n 20000; cargo bench --bench ws_fanout -- --clients 1000 --rate 500 --seconds 10`
//! (more options below). Three processes, so that each one's CPU and memory are its own:
//! - the daemon: the real binary on a temp SQLite database;
//! - the clients: this bench re-run as `--role clients`, raw-socket WebSocket clients (see
//!   `clients.rs`) on a single-threaded runtime;
//! - this process: the load generator. Each `workflow_job` delivery (a new job each) makes two
//!   state changes (`webhook`, `job`), so deliveries are sent at half the event rate, open-loop,
//!   with bodies signed before the run.
//!
//! Latency is per message, from the change's `time` (stamped when the bus publishes it, after
//! the delivery is committed) to the client parsing the frame. `--daemon-cpus` and
//! `--client-cpus` pin the processes with `taskset` (e.g. `0` and `1`; the load generator goes
//! with the clients).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnerhub::webhook::signature::sign;

mod clients;

const SECRET: &str = "bench-secret";
/// Concurrent senders of deliveries; each sends at rate / 2 / SENDERS, open-loop.
const SENDERS: u64 = 16;
/// After the last delivery: time for the last changes to reach every client.
const DRAIN: Duration = Duration::from_secs(2);

struct Args {
    clients: usize,
    rate: u64,
    seconds: u64,
    /// `taskset -c` lists, if pinning.
    daemon_cpus: Option<String>,
    client_cpus: Option<String>,
    /// `--role clients --port P`: this process is the clients of another run.
    clients_role: Option<u16>,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        rate: 500,
        seconds: 10,
        daemon_cpus: None,
        client_cpus: None,
        clients_role: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut role_clients = false;
    let mut port = None;
    for (i, arg) in argv.iter().enumerate() {
        let text = || argv.get(i + 1).cloned().unwrap_or_default();
        let number = || text().parse::<u64>().unwrap_or_else(|_| panic!("{arg} N"));
        match arg.as_str() {
            "--clients" => a.clients = number() as usize,
            "--rate" => a.rate = number(),
            "--seconds" => a.seconds = number(),
            "--daemon-cpus" => a.daemon_cpus = Some(text()),
            "--client-cpus" => a.client_cpus = Some(text()),
            "--role" => role_clients = text() == "clients",
            "--port" => port = Some(number() as u16),
            _ => {} // cargo bench passes --bench
        }
    }
    if role_clients {
        a.clients_role = Some(port.expect("--role clients needs --port"));
    }
    a
}

/// `program` as a command, under `taskset -c cpus` when given.
fn pinned(program: &std::path::Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
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

/// Busy and total jiffies of the whole machine (every CPU), from /proc/stat.
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    // idle and iowait are fields 3 and 4.
    let idle = fields.get(3).unwrap_or(&0.0) + fields.get(4).unwrap_or(&0.0);
    (total - idle, total)
}

fn stop(child: &Child) {
    // SIGTERM for a clean stop (the daemon flushes its log and closes clients with 1001).
    let _ = Command::new("kill").arg(child.id().to_string()).status();
}

/// Stops the daemon however the bench ends, a panic included (a daemon left running would
/// hold the bench lock's pipe open and keep its port).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&self.0);
        let _ = self.0.wait();
    }
}

fn main() {
    let args = args();
    if let Some(port) = args.clients_role {
        return clients_role(port, args.clients);
    }
    if let Some(cpus) = &args.client_cpus {
        // The load generator shares the clients' CPUs (threads made later inherit this).
        let me = std::process::id().to_string();
        let mut taskset = Command::new("taskset");
        taskset.args(["-a", "-pc", cpus, &me]).stdout(Stdio::null());
        assert!(taskset.status().unwrap().success());
    }
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
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_runnerhub"));
    let daemon = pinned(binary, args.daemon_cpus.as_deref())
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        // The fake GitHub is unreachable: runner launches fail by design, quietly.
        .env(
            "RUST_LOG",
            "warn,runnerhub::github=error,runnerhub::scheduler=error",
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("runnerhub binary starts");
    let daemon = Daemon(daemon);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&args, port, &daemon.0));
}

/// The clients' process: connect, say `ready`, read until the daemon closes, print a summary.
fn clients_role(port: u16, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tallies = runtime.block_on(clients::run(port, count, || println!("ready")));
    let last = tallies.iter().map(|t| t.last_seq).max().unwrap_or(0);
    // Missing: gaps inside each stream, and whatever a client had not received by the end.
    let missing: u64 = tallies
        .iter()
        .map(|t| t.gaps + (last - t.last_seq) as u64)
        .sum();
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let ms = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    // Mean latency of each tenth of the clients, in connection order: shows whether the daemon
    // serves them one after another.
    let tenth = tallies.len().div_ceil(10).max(1);
    let by_tenth: Vec<f64> = tallies
        .chunks(tenth)
        .map(|chunk| {
            let all = chunk.iter().flat_map(|t| &t.latencies_us);
            let (sum, n) = all.fold((0u64, 0u64), |(s, n), &us| (s + us as u64, n + 1));
            (sum as f64 / n.max(1) as f64 / 100.0).round() / 10.0
        })
        .collect();
    // Per change, the first and the last client to get it: how long one fan-out takes.
    let mut spread: std::collections::HashMap<i64, (u32, u32)> = Default::default();
    for t in &tallies {
        for (&seq, &us) in t.latency_seqs.iter().zip(&t.latencies_us) {
            let e = spread.entry(seq).or_insert((u32::MAX, 0));
            *e = (e.0.min(us), e.1.max(us));
        }
    }
    let median_ms = |mut v: Vec<u32>| {
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |&us| us as f64 / 1000.0)
    };
    let first_client_ms = median_ms(spread.values().map(|e| e.0).collect());
    let last_client_ms = median_ms(spread.values().map(|e| e.1).collect());
    let summary = serde_json::json!({
        "first_client_median_ms": first_client_ms,
        "last_client_median_ms": last_client_ms,
        "mean_ms_by_tenth": by_tenth,
        "clients": tallies.len(),
        "changes": tallies.iter().map(|t| t.changes).sum::<u64>(),
        "reads": tallies.iter().map(|t| t.reads).sum::<u64>(),
        "change_bytes": tallies.iter().map(|t| t.change_bytes).sum::<u64>(),
        "delivery_changes_min": tallies.iter().map(|t| t.delivery_changes).min(),
        "delivery_changes_max": tallies.iter().map(|t| t.delivery_changes).max(),
        "missing": missing,
        "out_of_order": tallies.iter().map(|t| t.out_of_order).sum::<u64>(),
        "lagged": tallies.iter().map(|t| t.lagged).sum::<u64>(),
        "resyncs": tallies.iter().map(|t| t.resyncs).sum::<u64>(),
        "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": ms(1.0),
    });
    println!("{summary}");
}

/// The signed bodies, one new job each: (delivery id, signature, body).
fn prepare_deliveries(count: u64) -> Vec<(String, String, Bytes)> {
    let dir = format!("{}/tests/fixtures/github", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(format!(
        "{dir}/webhooks/workflow_job.selfhosted.queued.json"
    ))
    .expect("fixture workflow_job.selfhosted.queued.json");
    let template: serde_json::Value = serde_json::from_str(&text).unwrap();
    (0..count)
        .map(|n| {
            let mut v = template.clone();
            v["workflow_job"]["id"] = (10_000_000 + n).into();
            let body = serde_json::to_vec(&v).unwrap();
            (
                format!("fanout-{n}"),
                sign(SECRET, &body),
                Bytes::from(body),
            )
        })
        .collect()
}

async fn run(args: &Args, port: u16, daemon: &Child) {
    let pid = daemon.id();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("daemon idle: RSS {:.1} MiB", process_usage(pid).1);

    let exe = std::env::current_exe().unwrap();
    let mut client_process = pinned(&exe, args.client_cpus.as_deref())
        .args(["--role", "clients", "--port", &port.to_string()])
        .args(["--clients", &args.clients.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bench re-runs itself as the clients");
    let client_pid = client_process.id();
    let mut client_out = BufReader::new(client_process.stdout.take().unwrap());
    let mut line = String::new();
    client_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the clients connect");
    println!(
        "{} clients connected: daemon RSS {:.1} MiB",
        args.clients,
        process_usage(pid).1
    );

    let per_sender = args.rate as f64 / 2.0 / SENDERS as f64;
    let total_per_sender = (per_sender * args.seconds as f64) as u64;
    let deliveries = Arc::new(prepare_deliveries(SENDERS * total_per_sender));
    let (daemon_cpu0, client_cpu0) = (process_usage(pid).0, process_usage(client_pid).0);
    let (machine_cpu0, load_cpu0) = (machine_jiffies(), process_usage(std::process::id()).0);
    let start = Instant::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, base, deliveries) = (http.clone(), base.clone(), deliveries.clone());
        senders.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sender));
            for i in 0..total_per_sender {
                let (id, signature, body) = &deliveries[(i * SENDERS + s) as usize];
                ticker.tick().await;
                let r = http
                    .post(format!("{base}/api/webhooks/github"))
                    .header("X-GitHub-Event", "workflow_job")
                    .header("X-GitHub-Delivery", id)
                    .header("Content-Type", "application/json")
                    .header("X-Hub-Signature-256", signature)
                    .body(body.clone())
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
    let sent_for = start.elapsed().as_secs_f64();
    // CPU while the load runs (the drain after it is mostly idle).
    let (daemon_cpu1, client_cpu1) = (process_usage(pid).0, process_usage(client_pid).0);
    let (machine_cpu1, load_cpu1) = (machine_jiffies(), process_usage(std::process::id()).0);
    tokio::time::sleep(DRAIN).await;
    let elapsed = start.elapsed().as_secs_f64();
    let (_, rss, hwm) = process_usage(pid);
    let events = 2 * SENDERS * total_per_sender;

    // Closing the daemon closes every connection: the clients then report.
    stop(daemon);
    line.clear();
    client_out.read_line(&mut line).unwrap();
    let _ = client_process.wait();
    let summary: serde_json::Value = serde_json::from_str(&line).expect("the clients' summary");
    let at_least = summary["delivery_changes_min"].as_u64().unwrap_or(0);
    println!(
        "load: {events} delivery events in {sent_for:.1} s = {:.0} events/s to {} clients",
        events as f64 / sent_for,
        args.clients,
    );
    println!(
        "clients: {} state changes received ({:.0} messages/s over {elapsed:.1} s); missing (seq gaps + short at the end): {}; out of order: {}; lagged: {}, resyncs: {}; delivery events per client: {at_least}..{} of {events}",
        summary["changes"],
        summary["changes"].as_f64().unwrap_or(0.0) / elapsed,
        summary["missing"],
        summary["out_of_order"],
        summary["lagged"],
        summary["resyncs"],
        summary["delivery_changes_max"],
    );
    println!(
        "delivery latency (publish → client): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        summary["p50_ms"], summary["p99_ms"], summary["p999_ms"], summary["max_ms"]
    );
    let changes = summary["changes"].as_f64().unwrap_or(0.0);
    let bytes = summary["change_bytes"].as_f64().unwrap_or(0.0);
    println!(
        "reads with data: {:.0} per client per second ({:.0} changes each); {:.0} bytes per change, {:.0} MB/s to all clients",
        summary["reads"].as_f64().unwrap_or(0.0) / args.clients as f64 / elapsed,
        changes / summary["reads"].as_f64().unwrap_or(1.0),
        bytes / changes.max(1.0),
        bytes / elapsed / 1e6,
    );
    println!(
        "per change, median latency of the first client to get it {} ms, of the last {} ms",
        summary["first_client_median_ms"], summary["last_client_median_ms"]
    );
    println!(
        "mean latency of each tenth of the clients in connection order, ms: {}",
        summary["mean_ms_by_tenth"]
    );
    println!(
        "daemon: {:.2} cores average under load; RSS {rss:.1} MiB at the end, {peak_rss:.1} MiB peak sampled, {hwm:.1} MiB high-water",
        (daemon_cpu1 - daemon_cpu0) / sent_for,
    );
    // The machine's share counts every process, the bench's and anyone else's.
    // Counted from /proc/stat: this process may be pinned to fewer.
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count() as f64;
    let machine = (machine_cpu1.0 - machine_cpu0.0) / (machine_cpu1.1 - machine_cpu0.1) * cores;
    println!(
        "client process: {:.2} cores; load generator: {:.2} cores; the whole machine: {machine:.2} of {cores} cores busy (under load)",
        (client_cpu1 - client_cpu0) / sent_for,
        (load_cpu1 - load_cpu0) / sent_for,
    );
}
