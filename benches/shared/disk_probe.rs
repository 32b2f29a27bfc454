//! How the disk answers fdatasync right now: the floor under every durable acknowledgement.
//!
//! On this VM an fdatasync usually takes 0.2 ms, but for stretches (one right after a long
//! release build; others with no cause we could find) it stalls for 20–80 ms every few
//! seconds with nothing else running. A latency bench run in such a stretch measures the
//! disk, so the ingest bench probes it first and says so.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const FILE_SIZE: u64 = 32 << 20;
const WRITE_SIZE: usize = 64 << 10;
/// An fdatasync slower than this is a stall: a hundred times the usual 0.2 ms here.
pub const STALL: Duration = Duration::from_millis(20);

pub struct DiskProbe {
    /// Every fdatasync, sorted.
    pub latencies: Vec<Duration>,
    /// When each stall began (from the start of the probe) and how long it took.
    pub stalls: Vec<(Duration, Duration)>,
    /// What each fdatasync made durable, KiB.
    pub write_kib: usize,
}

/// Writes 64 KiB at a time over a 32 MiB file in `dir` (as SQLite reuses its WAL) and
/// fdatasyncs each write, about 400 times a second, for `length`.
pub fn probe_disk(dir: &Path, length: Duration) -> std::io::Result<DiskProbe> {
    let file = tempfile::tempfile_in(dir)?;
    // Written once in full first, so that the measured writes allocate nothing.
    let chunk = vec![0x5au8; WRITE_SIZE];
    let mut writer = std::io::BufWriter::new(&file);
    for _ in 0..FILE_SIZE / WRITE_SIZE as u64 {
        writer.write_all(&chunk)?;
    }
    drop(writer);
    file.sync_all()?;

    let mut latencies = Vec::new();
    let mut stalls = Vec::new();
    let start = Instant::now();
    let mut offset = 0;
    while start.elapsed() < length {
        let took = write_and_sync(&file, &chunk, offset)?;
        offset = (offset + WRITE_SIZE as u64) % FILE_SIZE;
        record(took, start, &mut latencies, &mut stalls);
        std::thread::sleep(Duration::from_millis(2));
    }
    latencies.sort_unstable();
    Ok(DiskProbe {
        latencies,
        stalls,
        write_kib: WRITE_SIZE >> 10,
    })
}

/// Writes `data` at `offset` and fdatasyncs it; how long the fdatasync took.
fn write_and_sync(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<Duration> {
    file.write_all_at(data, offset)?;
    let synced = Instant::now();
    file.sync_data()?;
    Ok(synced.elapsed())
}

/// Keeps one fdatasync's time, and a stall with when it began (from `start`).
fn record(
    took: Duration,
    start: Instant,
    latencies: &mut Vec<Duration>,
    stalls: &mut Vec<(Duration, Duration)>,
) {
    if took > STALL {
        stalls.push((start.elapsed() - took, took));
    }
    latencies.push(took);
}

impl DiskProbe {
    /// The `p` quantile (0..=1) of fdatasync latency, ms.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        let at = ((self.latencies.len().saturating_sub(1)) as f64 * p) as usize;
        self.latencies
            .get(at)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    pub fn stalled_ms(&self) -> f64 {
        // A fold from +0.0: an empty f64 sum is -0.0, printed "-0".
        self.stalls
            .iter()
            .fold(0.0, |sum, (_, d)| sum + d.as_secs_f64() * 1e3)
    }

    /// One line: how many syncs, p50/p99/max, and the stalls.
    pub fn summary(&self) -> String {
        format!(
            "{} fdatasyncs of {} KiB: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} stalls over {} ms ({:.0} ms in all)",
            self.latencies.len(),
            self.write_kib,
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.stalls.len(),
            STALL.as_millis(),
            self.stalled_ms(),
        )
    }
}

/// Writes out what this system still holds, so that a probe after it sees the host's backlog
/// and not ours (`sync` the command: the crate forbids unsafe code).
pub fn flush_system() {
    let _ = std::process::Command::new("sync").status();
}

/// The disk watched while a phase runs: the probes before and after a run miss a stall in the
/// middle of it (the kernel writing back what an earlier phase left dirty, most often). A small
/// write and an fdatasync every 20 ms, on a thread of its own, add little to the load measured.
#[allow(dead_code)] // the ingest bench's; the other benches that share this file probe only
pub struct DiskWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::io::Result<DiskProbe>>,
}

#[allow(dead_code)]
impl DiskWatch {
    pub fn start(dir: &Path) -> std::io::Result<DiskWatch> {
        let file = tempfile::tempfile_in(dir)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let block = [0x5au8; 4096];
            let (mut latencies, mut stalls) = (Vec::new(), Vec::new());
            let start = Instant::now();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let took = write_and_sync(&file, &block, 0)?;
                record(took, start, &mut latencies, &mut stalls);
                std::thread::sleep(Duration::from_millis(20));
            }
            latencies.sort_unstable();
            Ok(DiskProbe {
                latencies,
                stalls,
                write_kib: block.len() >> 10,
            })
        });
        Ok(DiskWatch { stop, thread })
    }

    pub fn stop(self) -> std::io::Result<DiskProbe> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the disk watch panicked")
    }
}
