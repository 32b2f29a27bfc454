use std::path::Path;
use std::time::Duration;

use super::series::RunSeries;
use super::*;
use crate::domain::JobId;
use crate::replay::sim::{JobResult, PoolSample, RunnerLife, SimOutcome};

/// A month of `jobs` jobs on three pools with a timeline entry every few seconds, as large as
/// the replay bench's.
fn month(jobs: i64) -> (SimOutcome, Vec<String>) {
    let names: Vec<String> = ["linux", "large", "gpu"].map(String::from).to_vec();
    let month_ms = 30 * 86_400_000i64;
    let step = month_ms / (jobs * 5);
    let timeline = (0..jobs * 5)
        .map(|i| {
            let n = (i % 17) as u32;
            let sample = |k: u32| PoolSample {
                queued: (n * k) % 11,
                starting: n % 3,
                idle: k,
                busy: (n + k) % 9,
            };
            (i * step, vec![sample(1), sample(2), sample(3)])
        })
        .collect();
    let outcome = SimOutcome {
        jobs: (0..jobs)
            .map(|i| JobResult {
                id: i as JobId,
                pool: names[(i % 3) as usize].clone(),
                wait_ms: Some((i * 7919) % 600_000),
                cancelled: false,
                live_wait_seconds: None,
            })
            .collect(),
        runners: vec![RunnerLife {
            pool: "linux".into(),
            launched_ms: 0,
            removed_ms: month_ms,
        }],
        timeline,
        start_ms: 1_795_000_000_000,
        end_ms: 1_795_000_000_000 + month_ms,
    };
    (outcome, names)
}

fn source<'a>(events: &'a Path, other: Option<&'a Path>) -> Source<'a> {
    Source {
        events,
        boot: Duration::from_secs(10),
        base_config: Path::new("/etc/runnerhub/runnerhub.toml"),
        other_config: other,
    }
}

#[test]
fn a_month_of_100k_jobs_compared_stays_small() {
    let (mut outcome, names) = month(100_000);
    // Timestamps relative to an epoch in 2026, as recorded deliveries are.
    for (at, _) in outcome.timeline.iter_mut() {
        *at += outcome.start_ms;
    }
    let series = RunSeries::from_outcome(&outcome, &names);
    let report = Report::default();
    let run = || Run {
        report: &report,
        series: &series,
    };
    let page = render(
        &source(Path::new("events.ndjson"), Some(Path::new("other.toml"))),
        &Counts::default(),
        run(),
        Some(run()),
    );
    eprintln!("a compared month of 100,000 jobs: {} bytes", page.len());
    assert!(page.len() < 2_000_000, "{} bytes", page.len());
    assert_eq!(page.matches("data-chart=\"runners\"").count(), 8);
    assert_eq!(page.matches("data-chart=\"waits\"").count(), 4);
}

#[test]
fn input_is_escaped() {
    let (outcome, names) = month(30);
    let series = RunSeries::from_outcome(&outcome, &names);
    let report = Report::default();
    let evil = Path::new("/tmp/<img src=x onerror=alert(1)>&\"'.ndjson");
    let page = render(
        &source(evil, None),
        &Counts::default(),
        Run {
            report: &report,
            series: &series,
        },
        None,
    );
    assert!(!page.contains("<img"), "the file name is not markup");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;.ndjson"));
    assert_eq!(
        escape("<a href='x'>&</a>"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
    );
}

#[test]
fn summary_cells_carry_the_json_numbers() {
    let summary = Summary {
        jobs: 4,
        served: 3,
        unserved: 1,
        wait_seconds: WaitSeconds {
            p50: 70.0,
            p95: 200.25,
            p99: 200.25,
            max: 200.25,
        },
        runner_minutes: 4.333333333333333,
        peak_runners: 2,
    };
    assert_eq!(json_value(&summary, "wait_seconds.p95"), 200.25);
    assert_eq!(json_value(&summary, "peak_runners"), 2);
    let mut page = String::new();
    let labels = Labels {
        base: "base".into(),
        other: String::new(),
    };
    summary_table(&mut page, &labels, "*", &summary, None);
    assert!(
        page.contains(r#"data-key="runner_minutes" data-value="4.333333333333333">4.3</td>"#),
        "{page}"
    );
}
