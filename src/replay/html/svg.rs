//! Inline SVG charts, drawn here rather than by a script so the page needs nothing but a
//! browser (no JavaScript, no external asset) and shows the same thing everywhere, printed too.
//! Colours and line styles are in `report.css`; the classes here name what a mark shows.

use std::fmt::Write;

use chrono::DateTime;

use super::escape;
use super::series::Buckets;
use crate::replay::stats::WaitSeconds;

/// The drawing area, in viewBox units; the SVG scales to its column's width.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 210.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// The time range shared by every chart over time (both configurations), epoch ms.
#[derive(Debug, Clone, Copy)]
pub struct TimeFrame {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One line on a chart: the configuration it belongs to (`base`, `other`: a CSS class) and a
/// human label.
pub struct Curve<'a, T: ?Sized> {
    pub config: &'static str,
    pub label: &'a str,
    pub data: &'a T,
}

struct Plot {
    x_min: f64,
    x_max: f64,
    y_max: f64,
}

impl Plot {
    fn x(&self, v: f64) -> f64 {
        let span = (self.x_max - self.x_min).max(f64::MIN_POSITIVE);
        LEFT + (v - self.x_min) / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - v / self.y_max * (HEIGHT - TOP - BOTTOM)
    }
}

/// Queue depth over time, on one scale for both configurations: per configuration, the mean
/// of each slice as a line over a light area up to its maximum.
pub fn queue_chart(pool: &str, frame: TimeFrame, curves: &[Curve<'_, Buckets>]) -> String {
    let most = curves
        .iter()
        .flat_map(|c| c.data.max.queued.iter())
        .max()
        .copied()
        .unwrap_or(0);
    let plot = time_plot(frame, most);
    let mut svg = open("queue", pool, None, "queue depth over time");
    axes_over_time(&mut svg, &plot);
    for c in curves {
        let peak = step_path(&plot, c.data, &as_f64(&c.data.max.queued), true);
        let _ = write!(
            svg,
            r#"<path class="peak {config}" data-config="{config}" d="{peak}"><title>most jobs queued, {label}</title></path>"#,
            config = c.config,
            label = escape(c.label),
        );
    }
    for c in curves {
        let mean = step_path(&plot, c.data, &c.data.mean.queued, false);
        let _ = write!(
            svg,
            r#"<path class="line {config}" data-config="{config}" d="{mean}"><title>jobs queued (mean), {label}</title></path>"#,
            config = c.config,
            label = escape(c.label),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Runners over time for one configuration: the means of busy, starting and idle stacked, and
/// a line at the most runners; `y_max` is shared with the other configuration's chart so the
/// two compare at a glance.
pub fn runners_chart(
    pool: &str,
    frame: TimeFrame,
    y_max: u32,
    curve: &Curve<'_, Buckets>,
) -> String {
    let plot = time_plot(frame, y_max);
    let mut svg = open("runners", pool, Some(curve.config), "runners over time");
    axes_over_time(&mut svg, &plot);
    let b = curve.data;
    // Painted back to front: each band is the area under its cumulative edge.
    for (class, edge, what) in [
        ("idle", &b.mean.runners, "idle"),
        ("starting", &b.mean.busy_starting, "starting"),
        ("busy", &b.mean.busy, "busy"),
    ] {
        let d = step_path(&plot, b, edge, true);
        let _ = write!(
            svg,
            r#"<path class="band {class}" data-config="{config}" d="{d}"><title>runners {what} (mean), {label}</title></path>"#,
            config = curve.config,
            label = escape(curve.label),
        );
    }
    let d = step_path(&plot, b, &as_f64(&b.max.runners), false);
    let _ = write!(
        svg,
        r#"<path class="line most" data-config="{config}" d="{d}"><title>most runners, {label}</title></path>"#,
        config = curve.config,
        label = escape(curve.label),
    );
    svg.push_str("</svg>");
    svg
}

fn as_f64(values: &[u32]) -> Vec<f64> {
    values.iter().copied().map(f64::from).collect()
}

/// The most runners of either configuration, for [`runners_chart`]'s shared scale.
pub fn runners_max(buckets: &[&Buckets]) -> u32 {
    buckets
        .iter()
        .flat_map(|b| b.max.runners.iter())
        .max()
        .copied()
        .unwrap_or(0)
}

/// A wait CDF (`(seconds, share)` points) and the percentiles marked on it.
pub type WaitCurve<'a> = (Curve<'a, [(f64, f64)]>, WaitSeconds);

/// The distribution of queue waits (CDF), one curve per configuration, p50/p95/p99 marked.
pub fn wait_chart(pool: &str, curves: &[WaitCurve<'_>]) -> String {
    let longest = curves
        .iter()
        .filter_map(|(c, _)| c.data.last())
        .map(|(wait, _)| *wait)
        .fold(0.0, f64::max);
    let unit = WaitUnit::for_seconds(longest);
    let step = nice_step(longest / unit.seconds, 5).max(f64::MIN_POSITIVE);
    let x_max = ((longest / unit.seconds / step).ceil() * step).max(step) * unit.seconds;
    let plot = Plot {
        x_min: 0.0,
        x_max,
        y_max: 1.0,
    };
    let mut svg = open("waits", pool, None, "distribution of queue waits");
    for percent in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = plot.y(percent);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{p}%</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 3.5,
            p = percent * 100.0,
        );
    }
    let mut tick = 0.0;
    while tick <= x_max / unit.seconds + step / 2.0 {
        let x = plot.x(tick * unit.seconds);
        let _ = write!(
            svg,
            r#"<text class="tick" x="{x:.1}" y="{y:.1}" text-anchor="middle">{label}</text>"#,
            y = HEIGHT - BOTTOM + 14.0,
            label = unit.format(tick),
        );
        tick += step;
    }
    if curves.iter().all(|(c, _)| c.data.is_empty()) {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{x:.1}" y="{y:.1}" text-anchor="middle">no served jobs</text>"#,
            x = WIDTH / 2.0,
            y = HEIGHT / 2.0,
        );
    }
    for (c, percentiles) in curves {
        if c.data.is_empty() {
            continue;
        }
        // A staircase from (0, 0): the share of jobs that waited at most x.
        let mut d = format!("M{:.1},{:.1}", plot.x(0.0), plot.y(0.0));
        for (wait, share) in c.data.iter() {
            let _ = write!(d, "H{:.1}V{:.1}", plot.x(*wait), plot.y(*share));
        }
        let _ = write!(
            svg,
            r#"<path class="line {config}" data-config="{config}" d="{d}"><title>waits, {label}</title></path>"#,
            config = c.config,
            label = escape(c.label),
        );
        for (name, value, share) in [
            ("p50", percentiles.p50, 0.50),
            ("p95", percentiles.p95, 0.95),
            ("p99", percentiles.p99, 0.99),
        ] {
            let _ = write!(
                svg,
                r#"<circle class="mark {config}" cx="{x:.1}" cy="{y:.1}" r="2.5"><title>{name} {value:.1} s, {label}</title></circle>"#,
                config = c.config,
                x = plot.x(value),
                y = plot.y(share),
                label = escape(c.label),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn open(chart: &str, pool: &str, config: Option<&str>, what: &str) -> String {
    let config = config
        .map(|c| format!(r#" data-config="{c}""#))
        .unwrap_or_default();
    format!(
        r#"<svg class="chart" data-chart="{chart}" data-pool="{pool}"{config} viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{what}, {pool}">"#,
        pool = escape(pool),
    )
}

fn time_plot(frame: TimeFrame, most: u32) -> Plot {
    let step = nice_step(f64::from(most), 4).max(1.0);
    Plot {
        x_min: frame.start_ms as f64,
        x_max: (frame.end_ms.max(frame.start_ms + 1)) as f64,
        y_max: ((f64::from(most) / step).ceil() * step).max(step),
    }
}

/// A step line (or the area under it) through the buckets: flat over each bucket, one vertical
/// move where the drawn value changes, so flat stretches cost nothing.
fn step_path(plot: &Plot, b: &Buckets, values: &[f64], area: bool) -> String {
    let x_at = |i: usize| plot.x(b.start_ms as f64 + b.bucket_ms * i as f64);
    let y_at = |v: f64| format!("{:.1}", plot.y(v));
    let base = y_at(0.0);
    let mut last = y_at(values.first().copied().unwrap_or(0.0));
    let mut d = if area {
        format!("M{:.1},{base}V{last}", x_at(0))
    } else {
        format!("M{:.1},{last}", x_at(0))
    };
    for (i, v) in values.iter().enumerate().skip(1) {
        let y = y_at(*v);
        if y != last {
            let _ = write!(d, "H{:.1}V{y}", x_at(i));
            last = y;
        }
    }
    let _ = write!(d, "H{:.1}", x_at(values.len()));
    if area {
        let _ = write!(d, "V{base}Z");
    }
    d
}

fn axes_over_time(svg: &mut String, plot: &Plot) {
    let step = nice_step(plot.y_max, 4).max(1.0);
    let mut v = 0.0;
    while v <= plot.y_max + step / 2.0 {
        let y = plot.y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{v}</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 3.5,
        );
        v += step;
    }
    let span_ms = plot.x_max - plot.x_min;
    let step_ms = time_step_ms(span_ms);
    let mut at = (plot.x_min / step_ms).ceil() * step_ms;
    while at <= plot.x_max {
        let x = plot.x(at);
        let _ = write!(
            svg,
            r#"<line class="tick-mark" x1="{x:.1}" x2="{x:.1}" y1="{y1:.1}" y2="{y2:.1}"/><text class="tick" x="{x:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"#,
            y1 = HEIGHT - BOTTOM,
            y2 = HEIGHT - BOTTOM + 3.0,
            ty = HEIGHT - BOTTOM + 14.0,
            label = time_label(at as i64, step_ms, span_ms),
        );
        at += step_ms;
    }
}

/// Around five ticks at a round interval (1 s … 7 days).
fn time_step_ms(span_ms: f64) -> f64 {
    const STEPS_S: [f64; 20] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0, 43200.0, 86400.0, 172_800.0, 604_800.0,
    ];
    STEPS_S
        .iter()
        .map(|s| s * 1000.0)
        .find(|step| span_ms / step <= 6.0)
        .unwrap_or(604_800_000.0 * (span_ms / 604_800_000.0 / 6.0).ceil())
}

fn time_label(ms: i64, step_ms: f64, span_ms: f64) -> String {
    let Some(at) = DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    let format = if step_ms >= 86_400_000.0 {
        "%b %d"
    } else if span_ms > 86_400_000.0 {
        "%b %d %H:%M"
    } else if step_ms >= 60_000.0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    at.format(format).to_string()
}

/// 1, 2 or 5 × 10ⁿ such that about `ticks` of them span `max`.
fn nice_step(max: f64, ticks: u32) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let rough = max / f64::from(ticks);
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// Waits are labelled in the unit that keeps the numbers short.
struct WaitUnit {
    seconds: f64,
    suffix: &'static str,
}

impl WaitUnit {
    fn for_seconds(longest: f64) -> WaitUnit {
        let (seconds, suffix) = if longest < 180.0 {
            (1.0, "s")
        } else if longest < 3.0 * 3600.0 {
            (60.0, "min")
        } else {
            (3600.0, "h")
        };
        WaitUnit { seconds, suffix }
    }

    fn format(&self, value: f64) -> String {
        // Ticks are multiples of a 1-2-5 step: at most one decimal is ever needed.
        let text = format!("{value:.1}");
        let text = text.strip_suffix(".0").unwrap_or(&text);
        format!("{text} {}", self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(7.0, 4), 2.0);
        assert_eq!(nice_step(40.0, 4), 10.0);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(time_step_ms(300_000.0), 60_000.0);
        assert_eq!(time_step_ms(30.0 * 86_400_000.0), 604_800_000.0);
    }

    #[test]
    fn a_step_path_moves_only_where_the_value_changes() {
        let b = Buckets {
            start_ms: 0,
            bucket_ms: 1.0,
            ..Buckets::default()
        };
        let plot = Plot {
            x_min: 0.0,
            x_max: 4.0,
            y_max: 3.0,
        };
        let d = step_path(&plot, &b, &[1.0, 1.0, 3.0, 3.0], false);
        assert_eq!(d.matches('V').count(), 1, "{d}");
        assert!(d.ends_with(&format!("H{:.1}", WIDTH - RIGHT)), "{d}");
    }
}
