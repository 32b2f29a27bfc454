//! The replay report as text: overall and per pool, side by side with `--compare`.

use std::fmt::Write;

use super::stats::{Report, Summary};
use super::workload::Counts;

/// Text for one configuration, or two side by side.
pub fn render(counts: &Counts, base: &Report, other: Option<(&str, &Report)>) -> String {
    let mut out = counts_line(counts, base);
    out.push('\n');
    let mut sections: Vec<(String, &Summary, Option<&Summary>)> = vec![(
        "all pools".into(),
        &base.overall,
        other.map(|(_, o)| &o.overall),
    )];
    let mut names: Vec<&String> = base.pools.keys().collect();
    if let Some((_, o)) = other {
        names.extend(o.pools.keys().filter(|k| !base.pools.contains_key(*k)));
    }
    static EMPTY: std::sync::OnceLock<Summary> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(Summary::default);
    for name in names {
        sections.push((
            format!("pool {name}"),
            base.pools.get(name).unwrap_or(empty),
            other.map(|(_, o)| o.pools.get(name).unwrap_or(empty)),
        ));
    }
    let by_repository = repository_rows(base, other.map(|(_, o)| o));
    for (title, a, b) in sections {
        let _ = writeln!(out, "\n{title}");
        match (b, other) {
            (Some(b), Some((label, _))) => {
                let _ = writeln!(out, "  {:<22} {:>12} {:>12}", "", "base", label);
                for (name, x, y) in rows(a)
                    .into_iter()
                    .zip(rows(b))
                    .map(|((n, x), (_, y))| (n, x, y))
                {
                    let _ = writeln!(out, "  {name:<22} {x:>12} {y:>12}");
                }
            }
            _ => {
                for (name, x) in rows(a) {
                    let _ = writeln!(out, "  {name:<22} {x:>12}");
                }
            }
        }
    }
    if !by_repository.is_empty() {
        let _ = writeln!(
            out,
            "\nwait p50 / p95 (s) by repository (the {} with the most jobs)",
            base.repositories.len()
        );
        if let Some((label, _)) = other {
            let _ = writeln!(out, "  {:<22} {:>12} {:>12}", "", "base", label);
        }
        out.push_str(&by_repository);
    }
    out
}

/// `repository  p50 / p95` rows, with the other configuration's beside when comparing.
fn repository_rows(base: &Report, other: Option<&Report>) -> String {
    let mut out = String::new();
    let cell = |r: Option<&super::stats::RepositoryWaits>| {
        r.map_or("–".to_owned(), |r| {
            format!("{:.0} / {:.0}", r.wait_seconds.p50, r.wait_seconds.p95)
        })
    };
    for repo in &base.repositories {
        let _ = write!(out, "  {:<22} {:>12}", repo.repository, cell(Some(repo)));
        if let Some(other) = other {
            let theirs = other
                .repositories
                .iter()
                .find(|r| r.repository == repo.repository);
            let _ = write!(out, " {:>12}", cell(theirs));
        }
        out.push('\n');
    }
    out
}

/// What the log held and what of it was simulated (shared with the HTML report).
pub fn counts_line(counts: &Counts, base: &Report) -> String {
    let skipped: u64 = counts.skipped_events.values().sum();
    format!(
        "{} deliveries: {} jobs simulated, {} cancelled while queued; not simulated: {} no pool \
         serves, {} unfinished (no completed delivery), {} without a run time; {} duplicates \
         counted once, {} deliveries of other events skipped",
        counts.deliveries,
        base.overall.jobs,
        base.cancelled,
        counts.no_pool,
        counts.unfinished,
        counts.without_run_time,
        counts.duplicates,
        skipped
    )
}

fn rows(s: &Summary) -> Vec<(&'static str, String)> {
    vec![
        ("jobs", s.jobs.to_string()),
        ("served", s.served.to_string()),
        ("unserved", s.unserved.to_string()),
        ("wait p50 (s)", format!("{:.1}", s.wait_seconds.p50)),
        ("wait p95 (s)", format!("{:.1}", s.wait_seconds.p95)),
        ("wait p99 (s)", format!("{:.1}", s.wait_seconds.p99)),
        ("wait max (s)", format!("{:.1}", s.wait_seconds.max)),
        ("runner-minutes", format!("{:.1}", s.runner_minutes)),
        ("peak runners", s.peak_runners.to_string()),
    ]
}
