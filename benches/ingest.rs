//! Webhook ingest load: signed ~7 KB `workflow_job` deliveries over loopback, durable acks.
//!
//! `cargo bench --bench ingest` (options: `-- --seconds N --steady-seconds N --connections N
//! --rate N --random-guids --slow-timeline --prune --postgres SERVER_URL --instances N
//! --compare`; with `--postgres` the daemon runs on a fresh database made on that server and
//! dropped after; `--instances N` runs N daemons on it as a fleet, the load generator's
//! connections going to them in turn; `--compare` runs SQLite, one PostgreSQL instance and a
//! PostgreSQL fleet (of `--instances`, at least 2) one after another and prints them side by
//! side, between two probes of the disk). Delivery GUIDs are time-based UUIDs like
//! GitHub's, so they arrive nearly in index order; `--random-guids` uses random (v4) ones
//! instead, the worst case for the unique index (every insert lands on a different page).
//! Phase 1 saturates with N closed-loop connections for `--seconds` (acks/s, p50/p99). Phase 2
//! sends a steady open-loop rate for `--steady-seconds` (default: the same) after
//! [`STEADY_WARMUP`] at that rate that is not counted, and reports latency at that rate;
//! `--slow-timeline` also prints when the slow (> 5 ms) acknowledgements of that phase
//! happened, to tell a periodic stall (a checkpoint) from scattered ones (the disk's).
//! `--prune` ages phase 1's deliveries by 10 days and has `DELETE /api/webhooks/cleanup`
//! delete them during phase 2, to see what retention costs the acknowledgements. The daemon runs in its own runtime, configured as in
//! production: every acknowledged delivery is on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use runnerhub::config::Config;
use runnerhub::webhook::signature::sign;
use tokio_util::sync::CancellationToken;

#[path = "shared/disk_probe.rs"]
mod disk_probe;
#[path = "shared/resident.rs"]
mod resident;
use resident::resident_mib;

const SECRET: &str = "bench-secret";

/// The daemon's allocator (see src/main.rs), so that the in-process daemon runs as in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    seconds: u64,
    steady_seconds: Option<u64>,
    connections: usize,
    rate: u64,
    random_guids: bool,
    slow_timeline: bool,
    /// Delete phase 1's deliveries (aged first) through the cleanup endpoint during phase 2.
    prune: bool,
    /// A PostgreSQL server to run on instead of SQLite (a fresh database is made there).
    postgres: Option<String>,
    /// Daemons sharing the PostgreSQL database as a fleet (`database.fleet = true`); the load
    /// generator's connections go to them in turn.
    instances: usize,
    /// SQLite, one PostgreSQL instance and `--instances` PostgreSQL instances one after
    /// another in this run, each on a fresh database, summed up side by side.
    compare: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        steady_seconds: None,
        connections: 64,
        rate: 1000,
        random_guids: false,
        slow_timeline: false,
        prune: false,
        postgres: None,
        instances: 1,
        compare: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match argv[i].as_str() {
            "--seconds" => a.seconds = value().expect("--seconds N"),
            "--steady-seconds" => a.steady_seconds = value(),
            "--connections" => a.connections = value().expect("--connections N") as usize,
            "--rate" => a.rate = value().expect("--rate N"),
            "--random-guids" => a.random_guids = true,
            "--slow-timeline" => a.slow_timeline = true,
            "--prune" => a.prune = true,
            "--instances" => a.instances = value().expect("--instances N") as usize,
            "--compare" => a.compare = true,
            "--postgres" => {
                a.postgres = Some(argv.get(i + 1).expect("--postgres SERVER_URL").clone())
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

impl Args {
    fn steady_seconds(&self) -> u64 {
        self.steady_seconds.unwrap_or(self.seconds)
    }
}

/// The steady phase's first seconds, not counted: what phase 1 left behind (its last WAL
/// checkpoint, above all) settles meanwhile, so that phase 2 measures a steady state.
const STEADY_WARMUP: Duration = Duration::from_secs(2);

fn payload_template() -> serde_json::Value {
    let dir = format!("{}/tests/fixtures/github", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(format!(
        "{dir}/webhooks/workflow_job.selfhosted.queued.json"
    ))
    .expect("fixture workflow_job.selfhosted.queued.json");
    serde_json::from_str(&text).unwrap()
}

/// Distinct signed bodies prepared before the run: the load generator shares the 2 cores with
/// the daemon, so it must not spend them serialising and signing 7 KB per request.
const PREPARED_BODIES: u64 = 4096;

/// Signed bodies (signature, body), built once; each request adds a fresh delivery GUID.
fn prepare(template: &serde_json::Value) -> Arc<Vec<(String, Bytes)>> {
    Arc::new(
        (0..PREPARED_BODIES)
            .map(|n| {
                let (_, signature, body) = delivery(template, n);
                (signature, body)
            })
            .collect(),
    )
}

/// A signed delivery: (guid, signature, body).
fn delivery(template: &serde_json::Value, n: u64) -> (String, String, Bytes) {
    let mut v = template.clone();
    v["workflow_job"]["id"] = (1_000_000 + n).into();
    let body = serde_json::to_vec(&v).unwrap();
    (
        runnerhub::webhook::new_delivery_guid(),
        sign(SECRET, &body),
        Bytes::from(body),
    )
}

async fn connect(addr: std::net::SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn post(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    d: &(String, String, Bytes),
) -> Duration {
    let request = hyper::Request::post("/api/webhooks/github")
        .header("Host", "127.0.0.1")
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", &d.0)
        .header("X-Hub-Signature-256", &d.1)
        .header("Content-Type", "application/json")
        .body(Full::new(d.2.clone()))
        .unwrap();
    let start = Instant::now();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    assert_eq!(status, 202, "delivery not accepted");
    start.elapsed()
}

fn guid(random: bool) -> String {
    if random {
        uuid::Uuid::new_v4().to_string()
    } else {
        runnerhub::webhook::new_delivery_guid()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// What one phase measured.
#[derive(Clone, Copy)]
struct Summary {
    acks_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The disk while the phase ran (the steady phase's): slowest fdatasync, ms, and stalls.
    disk: Option<(f64, usize)>,
}

fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) -> Summary {
    latencies.sort_unstable();
    let summary = Summary {
        acks_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().unwrap().as_secs_f64() * 1000.0,
        disk: None,
    };
    // The phase's wall-clock bounds, to line it up with samples taken outside the bench
    // (the server's sessions, its log).
    let ended = chrono::Utc::now();
    let began = ended - chrono::TimeDelta::from_std(elapsed).unwrap_or_default();
    println!(
        "{name} ({} to {} UTC)",
        began.format("%H:%M:%S%.3f"),
        ended.format("%H:%M:%S%.3f")
    );
    println!(
        "{name}: {} acks in {:.1} s = {:.0} acks/s; latency p50 {:.2} ms, p90 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        summary.acks_per_second,
        summary.p50_ms,
        percentile(&latencies, 0.90),
        summary.p99_ms,
        summary.max_ms,
    );
    println!(
        "  resident memory (daemons and load generator): {:.0} MiB",
        resident_mib()
    );
    summary
}

/// Where a scenario's daemons keep their state; each scenario gets a fresh database.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Sqlite,
    /// The server's URL (`--postgres`).
    Postgres(&'a str),
}

struct Scenario<'a> {
    backend: Backend<'a>,
    instances: usize,
    /// Run phase 2 (the steady rate) after phase 1.
    steady: bool,
}

impl Scenario<'_> {
    fn name(&self) -> String {
        match self.backend {
            Backend::Sqlite => "SQLite, 1 instance".to_owned(),
            Backend::Postgres(_) if self.instances == 1 => "PostgreSQL, 1 instance".to_owned(),
            Backend::Postgres(_) => format!("PostgreSQL, fleet of {}", self.instances),
        }
    }
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    // The temp dir's disk: with `--postgres` on this host it is usually the server's too.
    let probe_before = report_disk_before_run(dir.path());
    let template = Arc::new(payload_template());
    println!(
        "payload {} bytes; {} connections for {} s, then {}/s for {} s",
        delivery(&template, 0).2.len(),
        args.connections,
        args.seconds,
        args.rate,
        args.steady_seconds()
    );
    if std::env::var_os("BENCH_STORE_ONLY").is_some() {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(store_only(dir.path(), &template));
    }
    if !args.compare {
        let backend = match args.postgres.as_deref() {
            Some(server) => Backend::Postgres(server),
            None => Backend::Sqlite,
        };
        let scenario = Scenario {
            backend,
            instances: args.instances,
            steady: true,
        };
        run_scenario(&args, &scenario, dir.path(), &template);
        return;
    }
    let server = args
        .postgres
        .as_deref()
        .expect("--compare needs --postgres SERVER_URL");
    let fleet = args.instances.max(2);
    let scenarios = [
        Scenario {
            backend: Backend::Sqlite,
            instances: 1,
            steady: false,
        },
        Scenario {
            backend: Backend::Postgres(server),
            instances: 1,
            steady: true,
        },
        Scenario {
            backend: Backend::Postgres(server),
            instances: fleet,
            steady: true,
        },
    ];
    let results: Vec<_> = scenarios
        .iter()
        .map(|scenario| run_scenario(&args, scenario, dir.path(), &template))
        .collect();
    let probe_after = report_disk_before_run(dir.path());
    print_comparison(&args, &scenarios, &results, [&probe_before, &probe_after]);
}

/// The side-by-side table of a `--compare` run, with the disk probes that frame it.
fn print_comparison(
    args: &Args,
    scenarios: &[Scenario],
    results: &[(Summary, Option<Summary>)],
    probes: [&str; 2],
) {
    let sqlite = results[0].0.acks_per_second;
    println!(
        "\n| setup | saturation, {} connections | vs SQLite | steady {}/s: p50 / p99 / max | disk meanwhile: slowest fdatasync, stalls > 20 ms |",
        args.connections, args.rate
    );
    println!("|---|---|---|---|---|");
    for (scenario, (saturation, steady)) in scenarios.iter().zip(results) {
        let disk = steady
            .and_then(|s| s.disk)
            .map_or("-".to_owned(), |(max, stalls)| {
                format!("{max:.1} ms, {stalls}")
            });
        let steady = steady.map_or("-".to_owned(), |s| {
            format!("{:.2} / {:.2} / {:.1} ms", s.p50_ms, s.p99_ms, s.max_ms)
        });
        println!(
            "| {} | {:.0} acks/s (p99 {:.1} ms) | {:.2} | {steady} | {disk} |",
            scenario.name(),
            saturation.acks_per_second,
            saturation.p99_ms,
            saturation.acks_per_second / sqlite,
        );
    }
    println!(
        "disk probe before: {}\ndisk probe after: {}",
        probes[0], probes[1]
    );
}

/// Starts the scenario's daemons on a fresh database, runs the phases, stops them and drops
/// the database; returns phase 1's summary and phase 2's if it ran.
fn run_scenario(
    args: &Args,
    scenario: &Scenario,
    dir: &std::path::Path,
    template: &Arc<serde_json::Value>,
) -> (Summary, Option<Summary>) {
    println!("\n== {}", scenario.name());
    let postgres = match scenario.backend {
        Backend::Postgres(server) => Some(BenchDatabase::create(server)),
        Backend::Sqlite => None,
    };
    let database_url = match &postgres {
        Some(db) => db.url.clone(),
        None => format!(
            "sqlite://{}/bench-{}.db",
            dir.display(),
            uuid::Uuid::new_v4().simple()
        ),
    };
    // The daemons get their own runtime, as in production; the load generator another.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("daemon")
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut daemons = Vec::new();
    let mut addrs = Vec::new();
    for n in 0..scenario.instances {
        let listener = server_rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        addrs.push(listener.local_addr().unwrap());
        let config = daemon_config(&database_url, scenario.instances, n);
        daemons.push(server_rt.spawn(runnerhub::app::run(config, listener, shutdown.clone())));
        // The first migrates the schema; the others join once it serves.
        server_rt.block_on(wait_until_ready(addrs[n]));
    }
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();
    let results = client_rt.block_on(async {
        let bodies = prepare(template);
        let saturation = saturate(&addrs, &bodies, args).await;
        if !scenario.steady {
            return (saturation, None);
        }
        // The steady phase measures a steady state, not the drain of phase 1's backlog.
        let drained = wait_until_processed(addrs[0]).await;
        println!(
            "backlog of phase 1 processed {:.1} s after it ended",
            drained.as_secs_f64()
        );
        let cleanup = if args.prune {
            age_deliveries(&database_url).await;
            Some(tokio::spawn(cleanup_request(addrs[0])))
        } else {
            None
        };
        let watch = disk_probe::DiskWatch::start(dir).unwrap();
        let mut steady = steady(&addrs, &bodies, args).await;
        let disk = watch.stop().unwrap();
        println!("  disk during the steady phase: {}", disk.summary());
        steady.disk = Some((disk.quantile_ms(1.0), disk.stalls.len()));
        if let Some(cleanup) = cleanup {
            let (elapsed, answer) = cleanup.await.unwrap();
            println!(
                "cleanup during phase 2: {:.1} s, {answer}",
                elapsed.as_secs_f64()
            );
        }
        (saturation, Some(steady))
    });
    shutdown.cancel();
    for daemon in daemons {
        server_rt.block_on(daemon).unwrap().unwrap();
    }
    if let Some(db) = postgres {
        db.drop_now();
    }
    results
}

/// The configuration of daemon `n` of `instances` (a fleet when there are several).
fn daemon_config(database_url: &str, instances: usize, n: usize) -> Config {
    let mut config_text = format!("[database]\nurl = \"{database_url}\"\n");
    if instances > 1 {
        config_text += &format!("fleet = true\n[server]\ninstance_id = \"bench-{n}\"\n");
    }
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    Config::from_toml_with_env(&config_text, std::path::Path::new("bench"), &env).unwrap()
}

/// Waits until the daemon at `addr` answers `/readyz` with 200.
async fn wait_until_ready(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let request = hyper::Request::get("/readyz")
                .header("Host", "127.0.0.1")
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(response) = sender.send_request(request).await
                && response.status() == 200
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon at {addr} did not become ready within 60 s");
}

/// Makes every stored delivery 10 days old, from outside the daemon, as time would.
async fn age_deliveries(database_url: &str) {
    use sqlx::Connection;
    let old = chrono::Utc::now() - chrono::TimeDelta::days(10);
    let sql = "UPDATE webhook_events SET received_at = $1";
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query(sql).bind(old).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query(sql).bind(old).execute(&mut conn).await.unwrap();
    }
}

/// `DELETE /api/webhooks/cleanup?older_than=7d`: how long it took and its answer.
async fn cleanup_request(addr: std::net::SocketAddr) -> (Duration, String) {
    let mut sender = connect(addr).await;
    let request = hyper::Request::delete("/api/webhooks/cleanup?older_than=7d")
        .header("Host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let start = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (start.elapsed(), String::from_utf8_lossy(&body).into_owned())
}

/// A database of its own on the `--postgres` server for one run, dropped after it.
struct BenchDatabase {
    server: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    fn create(server: &str) -> BenchDatabase {
        let name = format!("rh_bench_{}", uuid::Uuid::new_v4().simple());
        admin(server, &format!("CREATE DATABASE {name}"));
        // The server URL with its database (the path) replaced.
        let (base, query) = server.split_once('?').unwrap_or((server, ""));
        let (scheme, rest) = base.split_once("://").expect("--postgres postgres://…");
        let authority = rest.split('/').next().unwrap_or(rest);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let url = format!("{scheme}://{authority}/{name}{query}");
        BenchDatabase {
            server: server.to_owned(),
            name,
            url,
        }
    }

    fn drop_now(self) {
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn admin(server: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "--postgres {}: {e}",
                    runnerhub::config::redact_url_password(server)
                )
            });
        conn.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// Flushes what the system holds, probes the disk for a few seconds and prints what it saw,
/// with a warning when it stalled: latencies measured around it would be the host's.
pub fn report_disk_before_run(dir: &std::path::Path) -> String {
    disk_probe::flush_system();
    match disk_probe::probe_disk(dir, Duration::from_secs(3)) {
        Ok(probe) => {
            println!("disk probe: {}", probe.summary());
            if !probe.stalls.is_empty() {
                println!(
                    "  warning: the disk is stalling (the host is likely still flushing earlier \
                     writes, e.g. a build); latencies measured now are the host's. \
                     `cargo bench --bench fsync_probe` tells when it has settled."
                );
            }
            probe.summary()
        }
        Err(e) => {
            println!("disk probe failed: {e}");
            format!("failed: {e}")
        }
    }
}

/// The store alone, no HTTP: the ceiling the endpoint can approach (diagnostics).
async fn store_only(dir: &std::path::Path, template: &serde_json::Value) {
    use runnerhub::store::Store;
    let store = runnerhub::store::sqlite::SqliteStore::connect(&format!(
        "sqlite://{}/store-only.db",
        dir.display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    for batch_size in [64usize, 256] {
        let batches = 60;
        let mut n = 0;
        let start = Instant::now();
        for _ in 0..batches {
            let batch: Vec<_> = (0..batch_size)
                .map(|_| {
                    n += 1;
                    let (guid, _, body) = delivery(template, 500_000_000 + n);
                    runnerhub::webhook::intake::NewDelivery {
                        delivery_id: guid,
                        event: "workflow_job".into(),
                        action: Some("queued".into()),
                        repository: Some("o/r".into()),
                        payload: runnerhub::webhook::payload_codec::Payload::compress(
                            std::str::from_utf8(&body).unwrap(),
                        ),
                        signature_valid: true,
                        received_at: chrono::Utc::now(),
                        settled: None,
                    }
                })
                .collect();
            store.insert_deliveries(&batch).await.unwrap();
        }
        let el = start.elapsed();
        println!(
            "store only, batches of {batch_size}: {:.0} rows/s ({:.2} ms per commit)",
            n as f64 / el.as_secs_f64(),
            el.as_secs_f64() * 1000.0 / batches as f64
        );
    }
}

/// Waits until `/api/webhooks/health` reports nothing pending; returns how long that took.
async fn wait_until_processed(addr: std::net::SocketAddr) -> Duration {
    let start = Instant::now();
    let mut sender = connect(addr).await;
    loop {
        let request = hyper::Request::get("/api/webhooks/health")
            .header("Host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let body = sender
            .send_request(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        let health: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        if health["data"]["pending"] == 0 {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn saturate(
    addrs: &[std::net::SocketAddr],
    bodies: &Arc<Vec<(String, Bytes)>>,
    args: &Args,
) -> Summary {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let bodies = bodies.clone();
        let random_guids = args.random_guids;
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            let mut n = c as u64 * 7919;
            while Instant::now() < deadline {
                let (signature, body) = &bodies[(n % PREPARED_BODIES) as usize];
                let d = (guid(random_guids), signature.clone(), body.clone());
                latencies.push(post(&mut sender, &d).await);
                n += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    report(
        &format!("saturation ({} connections)", args.connections),
        all,
        start.elapsed(),
    )
}

async fn steady(
    addrs: &[std::net::SocketAddr],
    bodies: &Arc<Vec<(String, Bytes)>>,
    args: &Args,
) -> Summary {
    const CONNECTIONS: usize = 16;
    let per_connection = args.rate as f64 / CONNECTIONS as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let total = (per_connection * (STEADY_WARMUP.as_secs() + args.steady_seconds()) as f64) as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let bodies = bodies.clone();
        let random_guids = args.random_guids;
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            // (when it was sent, relative to the phase's start; latency)
            let mut samples = Vec::new();
            // Connections take turns (connection c sends at c/16 of the interval), so that the
            // rate is steady rather than 16 requests at once every 16 ms.
            let first = start + interval * c as u32 / CONNECTIONS as u32;
            let mut ticker = tokio::time::interval_at(first.into(), interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut previous_answered = start;
            for i in 0..total {
                let (signature, body) = &bodies[((c as u64 * 7919 + i) % PREPARED_BODIES) as usize];
                let d = (guid(random_guids), signature.clone(), body.clone());
                let due = ticker.tick().await.into_std();
                // A request held back by the previous answer counts from when it was due:
                // timing it from its late start would hide the stall that delayed it
                // (coordinated omission). Otherwise it counts from when it went out, which
                // leaves out the load generator's own timer slack (up to a millisecond).
                let counted_from = if previous_answered > due {
                    due
                } else {
                    Instant::now()
                };
                post(&mut sender, &d).await;
                previous_answered = Instant::now();
                if counted_from - start >= STEADY_WARMUP {
                    samples.push((counted_from - start - STEADY_WARMUP, counted_from.elapsed()));
                }
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed() - STEADY_WARMUP;
    if args.slow_timeline {
        print_slow_timeline(&all);
    }
    let latencies = all.into_iter().map(|(_, latency)| latency).collect();
    report(&format!("steady {}/s", args.rate), latencies, elapsed)
}

/// Acknowledgements slower than 5 ms per 100 ms window in which they were sent (windows with
/// none are left out), with the slowest of each window.
fn print_slow_timeline(samples: &[(Duration, Duration)]) {
    const SLOW: Duration = Duration::from_millis(5);
    let mut windows = std::collections::BTreeMap::<u128, (usize, Duration)>::new();
    for &(sent, latency) in samples.iter().filter(|(_, l)| *l > SLOW) {
        let window = windows.entry(sent.as_millis() / 100).or_default();
        window.0 += 1;
        window.1 = window.1.max(latency);
    }
    println!("slow acknowledgements (> 5 ms) by the 100-ms window they were sent in:");
    for (window, (count, worst)) in windows {
        println!(
            "  t={:5.1} s: {count:3} slow, worst {:.1} ms",
            window as f64 / 10.0,
            worst.as_secs_f64() * 1000.0
        );
    }
}
