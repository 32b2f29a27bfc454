//! Replay speed: 100,000 jobs (300,000 `workflow_job` deliveries: queued, in_progress,
//! completed) over a simulated month on three pools, through `replay_under` — the code
//! `runnerhub replay` runs. Prints the wall time of the replay and the peak resident memory.
//!
//! With `--html FILE`, then runs `runnerhub replay --html FILE` on the same events (the binary,
//! as a user would) and prints the page's size and the command's time.
//!
//! With `--matrix`, the linux pool's jobs come instead from one repository's matrix builds (40
//! jobs queued at once, 40% of all jobs) and five repositories' single jobs: the traffic that
//! fair share and quotas are for. `--write-events FILE` only writes the events there (for
//! `runnerhub replay --compare`, see docs/capacity-planning.md).
//!
//! `cargo bench --bench replay -- [--jobs 100000] [--matrix] [--write-events FILE] [--html report.html]`

use std::io::Write;
use std::time::{Duration, Instant};

use runnerhub::config::Config;

/// The allocator of the `runnerhub` binary (src/main.rs), so that the bench times what
/// `runnerhub replay` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POOLS: &str = r#"
[database]
url = "sqlite:///nonexistent/replay-bench.db"
[limits]
max_runners = 40
[[pools]]
name = "linux"
labels = ["self-hosted", "linux", "x64"]
max_runners = 24
[[pools]]
name = "large"
labels = ["self-hosted", "linux", "x64", "large"]
max_runners = 10
[[pools]]
name = "gpu"
labels = ["self-hosted", "linux", "gpu"]
max_runners = 4
min_idle = 1
repository = "acme/ml"
"#;

/// A small deterministic generator: the same workload every run, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Jobs of one matrix build, queued within the same second.
const MATRIX_SIZE: u64 = 40;
/// Repositories whose jobs come one at a time in `--matrix` traffic.
const SMALL_REPOS: [&str; 5] = ["acme/web", "acme/docs", "acme/cli", "acme/api", "acme/site"];

fn write_events(path: &std::path::Path, jobs: u64, matrix: bool) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = Lcg(42);
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
        .unwrap()
        .to_utc();
    let month_ms = 30 * 24 * 3_600_000u64;
    let mut lines = 0;
    for id in 1..=jobs {
        let mut created = start + chrono::Duration::milliseconds((id * month_ms / jobs) as i64);
        let (labels, repo) = match rng.next(10) {
            0..=6 => (r#"["self-hosted","linux","x64"]"#, "acme/app"),
            7 | 8 => (r#"["self-hosted","linux","x64","large"]"#, "acme/build"),
            _ => (r#"["self-hosted","linux","gpu"]"#, "acme/ml"),
        };
        let (labels, repo) = if !matrix {
            (labels, repo)
        } else if id % 100 < MATRIX_SIZE {
            // The matrix: queued a few ms apart, amid the single jobs of ids 140..199 (for a
            // matrix of ids 100..139), so that they arrive while it runs.
            let at = id - id % 100 + 50;
            created =
                start + chrono::Duration::milliseconds((at * month_ms / jobs + id % 100) as i64);
            (r#"["self-hosted","linux","x64"]"#, "acme/monorepo")
        } else {
            let small = SMALL_REPOS[rng.next(SMALL_REPOS.len() as u64) as usize];
            (r#"["self-hosted","linux","x64"]"#, small)
        };
        let started = created + chrono::Duration::seconds(5 + rng.next(60) as i64);
        let completed = started + chrono::Duration::seconds(60 + rng.next(20 * 60) as i64);
        for (action, at) in [
            ("queued", created),
            ("in_progress", started),
            ("completed", completed),
        ] {
            let runner = if action == "queued" {
                "null".to_owned()
            } else {
                format!("\"r-{id}\"")
            };
            writeln!(
                out,
                r#"{{"received_at":"{at}","event":"workflow_job","delivery":"{id}-{action}","payload":{{"action":"{action}","repository":{{"full_name":"{repo}"}},"workflow_job":{{"id":{id},"run_id":{id},"workflow_name":"ci","name":"build","labels":{labels},"runner_name":{runner},"conclusion":"success","created_at":"{c}","started_at":"{s}","completed_at":"{e}"}}}}}}"#,
                at = at.to_rfc3339(),
                c = created.to_rfc3339(),
                s = started.to_rfc3339(),
                e = completed.to_rfc3339(),
            )
            .unwrap();
            lines += 1;
        }
    }
    out.flush().unwrap();
    lines
}

fn peak_resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of this process so far (user + system), from `/proc/self/stat` (in USER_HZ =
/// 1/100 s, fixed by the kernel's ABI): unlike the wall time, other work on the machine does
/// not inflate it.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line: 11 and 12 counted from field 3.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let jobs = args
        .iter()
        .position(|a| a == "--jobs")
        .and_then(|i| args.get(i + 1))
        .map_or(100_000, |v| v.parse().expect("--jobs N"));
    let matrix = args.iter().any(|a| a == "--matrix");
    if let Some(path) = args
        .iter()
        .position(|a| a == "--write-events")
        .and_then(|i| args.get(i + 1))
    {
        let lines = write_events(std::path::Path::new(path), jobs, matrix);
        println!("wrote {lines} deliveries of {jobs} jobs to {path}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let lines = write_events(&events, jobs, matrix);
    let size = std::fs::metadata(&events).unwrap().len() as f64 / 1e6;
    let env = vec![("GITHUB_WEBHOOK_SECRET".to_owned(), "bench".to_owned())];
    let config =
        Config::from_toml_with_env(POOLS, std::path::Path::new("bench.toml"), &env).unwrap();
    let before = peak_resident_mib();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (_, report) =
        runnerhub::replay::cli::replay_under(&config, &events, Duration::from_secs(10)).unwrap();
    let took = started.elapsed();
    println!(
        "replay: {jobs} jobs, {lines} deliveries ({size:.0} MB) in {:.2} s ({:.2} s of CPU); \
         peak resident {:.0} MiB (before the replay {before:.0} MiB)",
        took.as_secs_f64(),
        cpu_seconds() - cpu_before,
        peak_resident_mib()
    );
    println!(
        "  served {} of {}, wait p50 {:.0} s p95 {:.0} s max {:.0} s, {:.0} runner-minutes, peak {} runners",
        report.overall.served,
        report.overall.jobs,
        report.overall.wait_seconds.p50,
        report.overall.wait_seconds.p95,
        report.overall.wait_seconds.max,
        report.overall.runner_minutes,
        report.overall.peak_runners
    );
    assert_eq!(report.overall.served, jobs, "every job served");
    if let Some(page) = args
        .iter()
        .position(|a| a == "--html")
        .and_then(|i| args.get(i + 1))
    {
        html_report(dir.path(), &events, std::path::Path::new(page));
    }
}

fn html_report(dir: &std::path::Path, events: &std::path::Path, page: &std::path::Path) {
    let config = dir.join("bench.toml");
    std::fs::write(&config, POOLS).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .arg("--events")
        .arg(events)
        .args(["--boot-time", "10s", "--html"])
        .arg(page)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "  runnerhub replay --html {}: {:.0} KB, {:.2} s (the replay included)",
        page.display(),
        std::fs::metadata(page).unwrap().len() as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
}
