//! `runnerhub replay --html FILE`: one self-contained page (inline CSS and SVG, no script, no
//! external asset) with, overall and per pool, the summary numbers of `--json`, the queue depth
//! and the runners (busy, starting, idle) over time and the distribution of queue waits; with
//! `--compare`, both configurations on the same scales.
//!
//! Everything that comes from input (file names, pool names) goes through [`escape`]; the
//! numbers are formatted here. The page size does not grow with the replay (see [`series`]).

pub mod series;
mod svg;

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use chrono::DateTime;

use super::stats::{Report, Summary, WaitSeconds};
use super::workload::Counts;
use series::RunSeries;
use svg::{Curve, TimeFrame};

const STYLE: &str = include_str!("report.css");

/// Where the replay came from, shown at the top of the page.
pub struct Source<'a> {
    pub events: &'a Path,
    pub boot: Duration,
    pub base_config: &'a Path,
    pub other_config: Option<&'a Path>,
}

/// One configuration's results.
pub struct Run<'a> {
    pub report: &'a Report,
    pub series: &'a RunSeries,
}

/// The whole page.
pub fn render(
    source: &Source<'_>,
    counts: &Counts,
    base: Run<'_>,
    other: Option<Run<'_>>,
) -> String {
    let labels = Labels::new();
    let mut page = String::with_capacity(256 * 1024);
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>runnerhub replay: {events}</title>
<style>{STYLE}</style></head><body>
"#,
        events = escape(&file_name(source.events)),
    );
    header(&mut page, source, counts, &base, other.as_ref(), &labels);
    let frame = TimeFrame {
        start_ms: other.as_ref().map_or(base.series.start_ms, |o| {
            o.series.start_ms.min(base.series.start_ms)
        }),
        end_ms: other.as_ref().map_or(base.series.end_ms, |o| {
            o.series.end_ms.max(base.series.end_ms)
        }),
    };
    section(
        &mut page,
        &labels,
        frame,
        None,
        (&base.report.overall, Some(&base.series.overall)),
        other
            .as_ref()
            .map(|o| (&o.report.overall, Some(&o.series.overall))),
    );
    // Pools in the base configuration's order, then those only the other one has.
    let mut names: Vec<&str> = base.series.pools.iter().map(|p| p.name.as_str()).collect();
    if let Some(o) = &other {
        for p in &o.series.pools {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
    }
    for name in names {
        fn of<'a>(run: &Run<'a>, name: &str) -> (&'a Summary, Option<&'a series::PoolSeries>) {
            (
                run.report.pools.get(name).unwrap_or(&EMPTY),
                run.series.pool(name),
            )
        }
        section(
            &mut page,
            &labels,
            frame,
            Some(name),
            of(&base, name),
            other.as_ref().map(|o| of(o, name)),
        );
    }
    page.push_str(
        "<footer>Written by <code>runnerhub replay --html</code>. Over time, the window is cut \
         into at most 600 slices: lines and bands show each slice's time-weighted mean, the \
         shading and the dark line its maximum, so short peaks stay visible. Times in \
         UTC.</footer>\n</body></html>\n",
    );
    page
}

static EMPTY: Summary = Summary {
    jobs: 0,
    served: 0,
    unserved: 0,
    wait_seconds: WaitSeconds {
        p50: 0.0,
        p95: 0.0,
        p99: 0.0,
        max: 0.0,
    },
    runner_minutes: 0.0,
    peak_runners: 0,
};

/// How the two configurations are named on the page: `base` and `other`, the `--json` keys
/// (the header maps them to their files; file names can be long and alike).
struct Labels {
    base: String,
    other: String,
}

impl Labels {
    fn new() -> Labels {
        Labels {
            base: "base".into(),
            other: "other".into(),
        }
    }
}

fn header(
    page: &mut String,
    source: &Source<'_>,
    counts: &Counts,
    base: &Run<'_>,
    other: Option<&Run<'_>>,
    labels: &Labels,
) {
    let window = |s: &RunSeries| format!("{} → {}", utc(s.start_ms), utc(s.end_ms));
    let _ = write!(
        page,
        r#"<header><h1>Replay of <span class="file" id="events-file">{events}</span></h1>
<dl class="sources">
<dt>events</dt><dd><code>{events_path}</code></dd>
<dt>boot time</dt><dd id="boot-time">{boot}</dd>
<dt><span class="key base"></span>{base_label} · {base_file}</dt><dd><code data-config="base">{base_path}</code> · {base_window}</dd>
"#,
        events = escape(&file_name(source.events)),
        events_path = escape(&source.events.display().to_string()),
        boot = humantime::format_duration(source.boot),
        base_label = escape(&labels.base),
        base_file = escape(&file_name(source.base_config)),
        base_path = escape(&source.base_config.display().to_string()),
        base_window = window(base.series),
    );
    if let (Some(o), Some(path)) = (other, source.other_config) {
        let _ = write!(
            page,
            r#"<dt><span class="key other"></span>{label} · {file}</dt><dd><code data-config="other">{path}</code> · {window}</dd>"#,
            label = escape(&labels.other),
            file = escape(&file_name(path)),
            path = escape(&path.display().to_string()),
            window = window(o.series),
        );
    }
    let _ = write!(
        page,
        "</dl>\n<p class=\"counts\">{}</p></header>\n",
        escape(&super::report::counts_line(counts, base.report))
    );
}

/// One section (all pools, or one pool): the summary table and the charts.
fn section(
    page: &mut String,
    labels: &Labels,
    frame: TimeFrame,
    pool: Option<&str>,
    base: (&Summary, Option<&series::PoolSeries>),
    other: Option<(&Summary, Option<&series::PoolSeries>)>,
) {
    let key = pool.unwrap_or("*");
    let title = match pool {
        Some(name) => format!("Pool <span class=\"pool-name\">{}</span>", escape(name)),
        None => "All pools".to_owned(),
    };
    let compare = if other.is_some() { " compare" } else { "" };
    let _ = write!(
        page,
        r#"<section class="pool{compare}" data-pool="{key}"><h2>{title}</h2><div class="grid">"#,
        key = escape(key),
    );
    summary_table(page, labels, key, base.0, other.map(|o| o.0));

    // (config, label, its series, its numbers) for the configurations that have this pool.
    let mut runs: Vec<(&'static str, &str, &series::PoolSeries, &Summary)> = Vec::new();
    if let Some(s) = base.1 {
        runs.push(("base", labels.base.as_str(), s, base.0));
    }
    if let Some((summary, Some(s))) = other {
        runs.push(("other", labels.other.as_str(), s, summary));
    }
    let legend_lines: String = runs
        .iter()
        .map(|(config, label, _, _)| {
            format!(
                r#"<span><i class="key {config}"></i>{}</span>"#,
                escape(label)
            )
        })
        .collect();

    let queue: Vec<Curve<'_, series::Buckets>> = runs
        .iter()
        .map(|(config, label, s, _)| Curve {
            config,
            label,
            data: &s.over_time,
        })
        .collect();
    let queue_figure = figure(
        "Queue depth",
        "mean; shaded: most",
        &legend_lines,
        &svg::queue_chart(key, frame, &queue),
    );

    let waits: Vec<svg::WaitCurve<'_>> = runs
        .iter()
        .map(|(config, label, s, summary)| {
            (
                Curve {
                    config,
                    label,
                    data: s.wait_cdf.as_slice(),
                },
                summary.wait_seconds,
            )
        })
        .collect();
    let waits_figure = figure(
        "Queue waits",
        "cumulative; dots at p50, p95, p99",
        &legend_lines,
        &svg::wait_chart(key, &waits),
    );

    let y_max = svg::runners_max(&runs.iter().map(|r| &r.2.over_time).collect::<Vec<_>>());
    let bands = r#"<span><i class="key busy"></i>busy</span><span><i class="key starting"></i>starting</span><span><i class="key idle"></i>idle</span>"#;
    let mut runner_figures = Vec::new();
    for (config, label, s, _) in &runs {
        let title = if runs.len() > 1 {
            format!("Runners · {}", escape(label))
        } else {
            "Runners".to_owned()
        };
        runner_figures.push(figure(
            &title,
            "mean; line: most",
            bands,
            &svg::runners_chart(
                key,
                frame,
                y_max,
                &Curve {
                    config,
                    label,
                    data: &s.over_time,
                },
            ),
        ));
    }
    // Two configurations: the overlays side by side, then the runners side by side. One:
    // queue and runners side by side (one time axis), waits below.
    page.push_str(&queue_figure);
    if runner_figures.len() > 1 {
        page.push_str(&waits_figure);
        page.push_str(&runner_figures.concat());
    } else {
        page.push_str(&runner_figures.concat());
        page.push_str(&waits_figure);
    }
    page.push_str("</div></section>\n");
}

/// `title` is HTML (already escaped); `legend` too.
fn figure(title: &str, note: &str, legend: &str, chart: &str) -> String {
    format!(
        r#"<figure><figcaption><b>{title}</b> <span class="note">{note}</span><span class="legend">{legend}</span></figcaption>{chart}</figure>"#
    )
}

/// The `--json` numbers, with `data-key` (the JSON key) and `data-value` (the exact number
/// `--json` prints) on each cell.
fn summary_table(
    page: &mut String,
    labels: &Labels,
    pool: &str,
    base: &Summary,
    other: Option<&Summary>,
) {
    let _ = write!(
        page,
        r#"<table class="summary" data-pool="{}"><thead><tr><th></th><th><i class="key base"></i>{}</th>"#,
        escape(pool),
        escape(&labels.base)
    );
    if other.is_some() {
        let _ = write!(
            page,
            r#"<th><i class="key other"></i>{}</th>"#,
            escape(&labels.other)
        );
    }
    page.push_str("</tr></thead><tbody>");
    for (name, key) in ROWS {
        let _ = write!(page, "<tr><th>{name}</th>");
        for (config, summary) in [("base", Some(base)), ("other", other)] {
            let Some(summary) = summary else { continue };
            let value = json_value(summary, key);
            let shown = match value.as_f64() {
                Some(v) if key.starts_with("wait") || key == "runner_minutes" => {
                    format!("{v:.1}")
                }
                _ => value.to_string(),
            };
            let _ = write!(
                page,
                r#"<td data-config="{config}" data-key="{key}" data-value="{value}">{shown}</td>"#,
            );
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table>");
}

/// Row labels and their `--json` keys (a dot for `wait_seconds.p50`).
const ROWS: [(&str, &str); 9] = [
    ("jobs", "jobs"),
    ("served", "served"),
    ("unserved", "unserved"),
    ("wait p50 (s)", "wait_seconds.p50"),
    ("wait p95 (s)", "wait_seconds.p95"),
    ("wait p99 (s)", "wait_seconds.p99"),
    ("wait max (s)", "wait_seconds.max"),
    ("runner-minutes", "runner_minutes"),
    ("peak runners", "peak_runners"),
];

/// The value `--json` prints under `key`, through the same serialisation.
fn json_value(summary: &Summary, key: &str) -> serde_json::Value {
    let all = serde_json::to_value(summary).unwrap_or_default();
    key.split('.')
        .try_fold(&all, |v, k| v.get(k))
        .cloned()
        .unwrap_or_default()
}

fn utc(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Text and attribute values: the five characters HTML gives a meaning.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
