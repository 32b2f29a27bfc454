// runnerhub dashboard: the history charts (`GET /api/history`), drawn as inline SVG without any
// library. Per pool: runners busy and idle stacked, the queue as a line, one point per minute;
// then the queue wait's p50 and p95 per hour. A gap in the samples (the daemon was down) stays
// a gap. app.js fetches the data and calls drawHistory().
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// In CSS pixels at about the size a chart is shown, so that its text reads at 11 px.
const CHART = { width: 480, height: 170, left: 38, right: 10, top: 12, bottom: 22 };
// Round ends for a time axis, in seconds, each with a round half.
const NICE_SECONDS = [2, 4, 10, 20, 30, 60, 120, 240, 600, 1200, 1800, 3600, 7200, 14400, 21600, 43200, 86400];

function svgEl(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// The smallest of 2, 4, 10 × 10^k at or above `max` (at least 2): a round axis end whose
// half, the middle label, is a whole count too.
function niceMax(max) {
  if (!(max > 2)) return 2;
  const power = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [2, 4, 10]) if (m * power >= max) return m * power;
  return 10 * power;
}

function niceSeconds(max) {
  return NICE_SECONDS.find((s) => s >= max) || Math.ceil(max / 86400) * 86400;
}

// Durations short enough to sit above a bar: 41s, 3.5m, 1.2h.
function shortDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds === 0) return "0";
  if (seconds < 60) return (seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)) + "s";
  if (seconds < 3600) return (seconds / 60).toFixed(seconds < 600 ? 1 : 0) + "m";
  return (seconds / 3600).toFixed(1) + "h";
}

const clockLabel = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

// The frame shared by every chart: x is time over the window, y is 0..yMax.
function frame(data, yMax, yLabel, width = CHART.width) {
  const since = Date.parse(data.since);
  const span = data.hours * 3600 * 1000;
  const { height, left, right, top, bottom } = CHART;
  const x = (ms) => left + ((ms - since) / span) * (width - left - right);
  const y = (v) => height - bottom - (v / yMax) * (height - top - bottom);
  const root = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const axes = svgEl("g", { class: "axes" });
  for (const v of [0, yMax / 2, yMax]) {
    axes.append(svgEl("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: v ? "grid" : "base" }));
    axes.append(svgEl("text", { x: left - 6, y: y(v) + 4, class: "y-label", "text-anchor": "end" }, yLabel(v)));
  }
  // A label every few hours, on whole hours: 8 labels at most.
  const every = Math.max(1, Math.ceil(data.hours / 8));
  for (let h = 0; h <= data.hours; h += every) {
    const at = since + h * 3600 * 1000;
    axes.append(svgEl("line", { x1: x(at), x2: x(at), y1: height - bottom, y2: height - bottom + 4, class: "base" }));
    axes.append(svgEl("text", { x: x(at), y: height - 6, class: "x-label", "text-anchor": h === 0 ? "start" : h === data.hours ? "end" : "middle" }, clockLabel(at)));
  }
  root.append(axes);
  return { root, x, y, since, width };
}

// Runs of points without a gap (consecutive steps), for lines and areas that break at gaps.
function runs(points, stepMs) {
  const out = [];
  let current = [];
  for (const p of points) {
    const at = Date.parse(p.at);
    if (current.length && at - current[current.length - 1].ms > stepMs) { out.push(current); current = []; }
    current.push({ ...p, ms: at });
  }
  if (current.length) out.push(current);
  return out;
}

// An area between `lower(p)` and `upper(p)`, or a line along `upper(p)` when `lower` is null.
// A lone point (a run of one) is drawn one step wide so it shows.
function pathOf(run, f, x, y, stepMs, lower) {
  const xs = run.length === 1 ? [run[0].ms, run[0].ms + stepMs] : run.map((p) => p.ms);
  const vals = run.length === 1 ? [run[0], run[0]] : run;
  let d = xs.map((ms, i) => `${i ? "L" : "M"}${x(ms).toFixed(1)},${y(f(vals[i])).toFixed(1)}`).join("");
  if (lower) {
    for (let i = xs.length - 1; i >= 0; i--) d += `L${x(xs[i]).toFixed(1)},${y(lower(vals[i])).toFixed(1)}`;
    d += "Z";
  }
  return d;
}

function poolChart(data, pool) {
  const stepMs = data.step_seconds * 1000;
  const points = pool.points;
  const peak = points.reduce((m, p) => Math.max(m, p.queued, p.busy + p.idle), 0);
  const { root, x, y } = frame(data, niceMax(peak), String);
  root.setAttribute("data-pool", pool.name);
  root.setAttribute("data-points", points.length);
  const last = points[points.length - 1];
  root.setAttribute("aria-label", `${pool.name}: ${points.length} samples` +
    (last ? `, last ${last.queued} queued, ${last.busy} busy, ${last.idle} idle` : ", none yet"));
  const plot = svgEl("g", { class: "plot" });
  for (const run of runs(points, stepMs)) {
    plot.append(svgEl("path", { class: "area busy", d: pathOf(run, (p) => p.busy, x, y, stepMs, () => 0) }));
    plot.append(svgEl("path", { class: "area idle", d: pathOf(run, (p) => p.busy + p.idle, x, y, stepMs, (p) => p.busy) }));
    plot.append(svgEl("path", { class: "line queued", d: pathOf(run, (p) => p.queued, x, y, stepMs, null) }));
  }
  root.append(plot);
  if (!points.length) {
    root.append(svgEl("text", { x: CHART.width / 2, y: CHART.height / 2, class: "no-data", "text-anchor": "middle" },
      "no samples yet: one is taken every minute"));
  }
  const peakQueued = points.reduce((m, p) => Math.max(m, p.queued), 0);
  const legend = el("div", { class: "legend" },
    el("strong", {}, pool.name), " ",
    el("span", { class: "key busy" }, "busy"), el("span", { class: "key idle" }, "idle"),
    el("span", { class: "key queued" }, "queued"),
    el("span", { class: "muted" }, last ? ` now ${last.busy} busy · ${last.idle} idle · ${last.queued} queued · peak queue ${peakQueued}` : ""));
  return el("figure", { class: "history-chart" }, legend, root);
}

function waitChart(data) {
  const hours = data.waits || [];
  const max = hours.reduce((m, h) => Math.max(m, h.p95_seconds || 0), 0);
  // As wide as its place, in CSS pixels: its text stays 11 px and each hour gets its room.
  const { root, x, y, since, width } = frame(data, niceSeconds(max), shortDuration,
    Math.max(CHART.width, $("history-waits").clientWidth || 0));
  root.setAttribute("id", "wait-chart");
  const hourMs = 3600 * 1000;
  const bars = svgEl("g", { class: "plot" });
  let withJobs = 0;
  hours.forEach((h, i) => {
    if (!h.jobs) return;
    withJobs++;
    const x0 = x(since + i * hourMs), x1 = x(since + (i + 1) * hourMs);
    const w = (x1 - x0) * 0.7, pad = (x1 - x0 - w) / 2;
    // A value above each bar when there is room for it (the bar's title has it anyway).
    const label = x1 - x0 >= 30 ? shortDuration(h.p95_seconds) : "";
    const pools = Object.entries(h.pools || {}).map(([name, s]) => `\n${name}: ${s.jobs} jobs, p50 ${duration(s.p50_seconds)}, p95 ${duration(s.p95_seconds)}`).join("");
    const title = `${clockLabel(Date.parse(h.hour))}: ${h.jobs} jobs started · p50 ${duration(h.p50_seconds)} · p95 ${duration(h.p95_seconds)}${pools}`;
    bars.append(svgEl("g", { class: "hour", "data-hour": h.hour, "data-jobs": h.jobs, "data-p50": h.p50_seconds, "data-p95": h.p95_seconds },
      svgEl("title", {}, title),
      svgEl("rect", { class: "p95", x: x0 + pad, width: w, y: y(h.p95_seconds), height: Math.max(1, y(0) - y(h.p95_seconds)) }),
      svgEl("rect", { class: "p50", x: x0 + pad + w * 0.2, width: w * 0.6, y: y(h.p50_seconds), height: Math.max(1, y(0) - y(h.p50_seconds)) }),
      svgEl("text", { class: "bar-label", x: x0 + (x1 - x0) / 2, y: y(h.p95_seconds) - 3, "text-anchor": "middle" }, label)));
  });
  root.append(bars);
  root.setAttribute("aria-label", `queue wait per hour: ${withJobs} hours with started jobs`);
  if (!withJobs) {
    root.append(svgEl("text", { x: width / 2, y: CHART.height / 2, class: "no-data", "text-anchor": "middle" },
      `no job started in the last ${data.hours} h`));
  }
  const legend = el("div", { class: "legend" }, el("span", { class: "key p95" }, "p95"), el("span", { class: "key p50" }, "p50"),
    el("span", { class: "muted" }, " hover a bar for the jobs and each pool"));
  return el("figure", { class: "history-chart" }, legend, root);
}

function drawHistory(data) {
  $("history-window").textContent = `last ${data.hours} h · every repository · times local`;
  $("history-pools").replaceChildren(...data.pools.map((p) => poolChart(data, p)));
  if (!data.pools.length) $("history-pools").append(el("p", { class: "empty" }, "No pool is configured or sampled."));
  $("history-waits").replaceChildren(waitChart(data));
}
