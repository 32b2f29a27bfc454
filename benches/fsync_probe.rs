//! The disk alone: how long one fdatasync takes, and how often the disk stalls.
//!
//! `cargo bench --bench fsync_probe -- --seconds 30 [--dir PATH]`. Writes 64 KiB at a time
//! over a 32 MiB file (as SQLite reuses its WAL) and fdatasyncs each write, about 400 times a
//! second, in `--dir` (default: the system temp dir, where the ingest bench keeps its
//! database). Every acknowledgement of the daemon waits for one such sync, so the stalls
//! printed here are a floor under the ingest latency tail: no group commit can hide them.

use std::time::Duration;

#[path = "shared/disk_probe.rs"]
mod disk_probe;

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
    disk_probe::flush_system();
    let probe = disk_probe::probe_disk(&dir, Duration::from_secs(seconds))
        .unwrap_or_else(|e| panic!("probing {}: {e}", dir.display()));
    println!("{} in {}", probe.summary(), dir.display());
    println!("p99.9 {:.2} ms", probe.quantile_ms(0.999));
    for (at, took) in &probe.stalls {
        println!(
            "  stall at {:5.1} s: {:.1} ms",
            at.as_secs_f64(),
            took.as_secs_f64() * 1e3
        );
    }
}
