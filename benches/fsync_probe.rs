//! The disk alone: how long one fdatasync takes, and how often the disk stalls.
//!
//! `cargo bench --bench fsync_probe -- --seconds 30 [--dir PATH]`. Writes 64 KiB at a time
//! over a 32 MiB file (as SQLite reuses its WAL) and fdatasyncs each write, about 400 times a
//! second, in `--dir` (default: the system temp dir, where the ingest bench keeps its
//! database). Every acknowledgement of the daemon waits for one such sync, so the stalls
//! printed here are a floor under the ingest latency tail: no group commit can hide them.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const FILE_SIZE: u64 = 32 << 20;
const WRITE_SIZE: usize = 64 << 10;
const STALL: Duration = Duration::from_millis(20);

fn main() {
    let mut seconds = 30;
    let mut dir = std::env::temp_dir();
    let argv: Vec<String> = std::env::args().collect();
    for (i, arg) in argv.iter().enumerate() {
        match arg.as_str() {
            "--seconds" => seconds = argv[i + 1].parse().expect("--seconds N"),
            "--dir" => dir = argv[i + 1].clone().into(),
            _ => {} // cargo bench passes --bench
        }
    }
    let file = tempfile::tempfile_in(&dir).expect("a temp file in --dir");
    // Written once in full first, so that the measured writes allocate nothing.
    let chunk = vec![0x5au8; WRITE_SIZE];
    let mut writer = std::io::BufWriter::new(&file);
    for _ in 0..FILE_SIZE / WRITE_SIZE as u64 {
        writer.write_all(&chunk).unwrap();
    }
    drop(writer);
    file.sync_all().unwrap();

    let mut latencies = Vec::new();
    let mut stalls = Vec::new();
    let start = Instant::now();
    let mut offset = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        file.write_all_at(&chunk, offset).unwrap();
        offset = (offset + WRITE_SIZE as u64) % FILE_SIZE;
        let synced = Instant::now();
        file.sync_data().unwrap();
        let took = synced.elapsed();
        if took > STALL {
            stalls.push((synced - start, took));
        }
        latencies.push(took);
        std::thread::sleep(Duration::from_millis(2));
    }
    latencies.sort_unstable();
    let ms = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{} fdatasyncs of 64 KiB in {}: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latencies.len(),
        dir.display(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        ms(1.0)
    );
    println!(
        "stalls over {} ms: {} ({:.0} ms in all)",
        STALL.as_millis(),
        stalls.len(),
        stalls
            .iter()
            .map(|(_, d)| d.as_secs_f64() * 1e3)
            .sum::<f64>()
    );
    for (at, took) in stalls {
        println!(
            "  at {:5.1} s: {:.1} ms",
            at.as_secs_f64(),
            took.as_secs_f64() * 1e3
        );
    }
}
