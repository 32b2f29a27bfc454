// runnerhub dashboard: one WebSocket (`/ws`) for the live state, and `GET /api/history` each
// minute for the charts (charts.js). The snapshot sets the state, each change replaces one
// object (job by id, runner by id, pool by name and instance, instance by id), and a reconnect
// resumes with `since=<last seq>` so nothing is missed or shown twice. In a fleet the feed is
// the whole fleet's: every instance's runners and pools, and which instance is down.
"use strict";

const WEBHOOKS_SHOWN = 60;
const FINISHED_SHOWN = 25;
const SNAPSHOT_EVERY_MS = 30000; // refreshes the headline numbers (computed by the daemon)
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 50000; // no message at all for this long: the connection is dead
const HISTORY_HOURS = 24;
const HISTORY_EVERY_MS = 60000; // the daemon samples once a minute

const $ = (id) => document.getElementById(id);
const state = {
  seq: null, jobs: new Map(), runners: new Map(), pools: new Map(), webhooks: [],
  stats: {}, queueTotal: 0, limits: {}, repos: new Set(),
};
let repoFilter = new URLSearchParams(location.hash.slice(1)).get("repo") || "";
let token = sessionStorage.getItem("runnerhub.token") || "";
let ws = null, retryMs = 500, lastHeard = 0, timers = [], statsRefresh = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const badge = (text) => el("span", { class: "badge b-" + String(text).replace(/[^a-z_]/gi, "") }, text);

function duration(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return "–";
  seconds = Math.max(0, seconds);
  if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " m " + String(Math.floor(seconds % 60)).padStart(2, "0") + " s";
  return Math.floor(seconds / 3600) + " h " + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + " m";
}
const queuedAt = (j) => Date.parse(j.created_at || j.first_seen_at);
// The scheduler's order: rule score plus aging per minute waited. Comparing two jobs at the
// same instant, "now" cancels out, so the rank needs no clock and the order no re-sorting.
const agedRank = (j) => j.priority - (state.agingPerMinute || 0) * queuedAt(j) / 60000;
// A job refused for good (unusable_repository, unknown_scope, not_found) left the queue; jobs no
// pool serves (no_pool) are shown as before, as work waiting elsewhere.
const isPending = (j) =>
  (j.status === "queued" || j.status === "waiting") && (!j.outcome || j.outcome === "no_pool");

// ---- connection ----

function connect() {
  const q = new URLSearchParams();
  if (repoFilter) q.set("repository", repoFilter);
  if (state.seq !== null) q.set("since", state.seq);
  if (token) q.set("token", token);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  setStatus("connecting…", "");
  ws = new WebSocket(`${scheme}//${location.host}/ws?${q}`);
  ws.onopen = () => { retryMs = 500; lastHeard = Date.now(); setStatus("live", "live"); };
  ws.onmessage = (e) => { lastHeard = Date.now(); onMessage(JSON.parse(e.data)); };
  ws.onclose = (e) => {
    ws = null;
    if (e.code === 4401) { askToken(e.reason); setStatus("token needed", "down"); return; }
    if (e.code === 4400) { setStatus("refused: " + e.reason, "down"); return; }
    const wait = Math.min(retryMs, 10000) * (0.8 + Math.random() * 0.4);
    retryMs *= 2;
    setStatus(`reconnecting in ${Math.ceil(wait / 1000)} s`, "down");
    setTimeout(connect, wait);
  };
}

function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "status " + cls; }

function askToken(reason) {
  $("token-reason").textContent = reason || "This daemon needs an API token.";
  $("token-form").hidden = false;
  $("token").focus();
}

function onMessage(m) {
  if (typeof m.seq === "number" && (state.seq === null || m.seq > state.seq || m.type === "snapshot")) state.seq = m.seq;
  switch (m.type) {
    case "snapshot": applySnapshot(m.data); break;
    case "job":
      upsertJob(m.data);
      // Headline numbers are the daemon's; ask for fresh ones shortly after a job ends.
      if (m.data.status === "completed" && !statsRefresh) {
        statsRefresh = setTimeout(() => { statsRefresh = null; send({ op: "snapshot" }); }, 2500);
      }
      break;
    case "runner": state.runners.set(m.data.id, { ...(state.runners.get(m.data.id) || {}), ...m.data }); break;
    case "pool": state.pools.set(poolKey(m.data), { ...(state.pools.get(poolKey(m.data)) || {}), ...m.data }); break;
    case "instance": upsertInstance(m.data); break;
    case "webhook": addWebhook(m); break;
    case "resync": case "lagged": case "subscribed": case "pong": case "workflow_run": break;
    case "error": console.warn("runnerhub:", m.data && m.data.message); break;
  }
  if (m.repository) noteRepo(m.repository);
  scheduleRender();
}

function applySnapshot(d) {
  state.jobs = new Map();
  for (const j of [...(d.queue || []), ...(d.running || []), ...(d.finished || [])]) upsertJob(j);
  state.runners = new Map((d.runners || []).map((r) => [r.id, r]));
  state.pools = new Map((d.pools || []).map((p) => [poolKey(p), p]));
  state.stats = d.stats || {};
  state.queueTotal = d.queue_total || 0;
  state.limits = d.limits || {};
  state.agingPerMinute = (d.scheduling && d.scheduling.aging_per_minute) || 0;
  state.instances = d.instances || null;
}

// A pool is one per instance: in a fleet, several hosts may serve a pool of the same name.
const poolKey = (p) => p.name + "@" + (p.instance || "");
// Whether an instance is alive, as the leader last said (a daemon alone always is).
function instanceAlive(id) {
  const i = state.instances && state.instances.find((x) => x.id === id);
  return !i || i.alive;
}
const instanceText = (id) => id + (instanceAlive(id) ? "" : " (down)");

function upsertInstance(i) {
  state.instances = (state.instances || []).filter((x) => x.id !== i.id);
  state.instances.push(i);
  state.instances.sort((a, b) => a.id.localeCompare(b.id));
}

// A fleet's instances under the pools: which leads, which is down (null: a daemon alone).
function fleetLine() {
  if (!state.instances) return "";
  const parts = state.instances.map((i) => {
    const text = i.id + (i.leader ? " (leader)" : "") + (i.alive ? "" : " (down)");
    return el("span", { class: i.alive ? "" : "down", "data-instance": i.id, title: `${i.runners} runners · pools ${i.pools.join(", ")}` }, text);
  });
  const line = el("p", { class: "muted", id: "instances" }, "fleet: ");
  parts.forEach((p, n) => { if (n) line.append(" · "); line.append(p); });
  return line;
}

function upsertJob(j) {
  if (repoFilter && j.repository !== repoFilter) return;
  state.jobs.set(j.id, { ...(state.jobs.get(j.id) || {}), ...j });
  noteRepo(j.repository);
  // Keep memory bounded: forget the oldest finished jobs.
  const finished = [...state.jobs.values()].filter((x) => x.status === "completed");
  if (finished.length > FINISHED_SHOWN * 4) {
    finished.sort((a, b) => Date.parse(a.completed_at || a.updated_at) - Date.parse(b.completed_at || b.updated_at));
    for (const x of finished.slice(0, finished.length - FINISHED_SHOWN * 2)) state.jobs.delete(x.id);
  }
}

function addWebhook(m) {
  state.webhooks.unshift({ ...m.data, repository: m.repository, time: m.time, fresh: true });
  state.webhooks.length = Math.min(state.webhooks.length, WEBHOOKS_SHOWN);
}

function noteRepo(r) {
  if (!r || state.repos.has(r)) return;
  state.repos.add(r);
  $("repos").append(el("option", { value: r }));
}

// ---- rendering (batched per animation frame) ----

let renderQueued = false;
function scheduleRender() {
  if (!renderQueued) { renderQueued = true; requestAnimationFrame(() => { renderQueued = false; render(); }); }
}

function render() {
  const now = Date.now();
  const jobs = [...state.jobs.values()];
  const queue = jobs.filter(isPending)
    .sort((a, b) => (agedRank(b) - agedRank(a)) || (queuedAt(a) - queuedAt(b)) || (a.id - b.id));
  const running = jobs.filter((j) => j.status === "in_progress");
  const finished = jobs.filter((j) => j.status === "completed")
    .sort((a, b) => Date.parse(b.completed_at || b.updated_at) - Date.parse(a.completed_at || a.updated_at))
    .slice(0, FINISHED_SHOWN);

  $("queue").tBodies[0].replaceChildren(...queue.map((j, i) => {
    const waited = (now - queuedAt(j)) / 1000;
    return el("tr", { "data-job-id": j.id },
      el("td", {}, i + 1), el("td", { class: "num" }, j.priority),
      el("td", { class: "wrap" }, `${j.workflow_name ? j.workflow_name + " / " : ""}${j.name} `, el("span", { class: "muted" }, "#" + j.id)),
      el("td", {}, j.repository), el("td", {}, j.pool || el("span", { class: "muted" }, "none")),
      el("td", {}, badge(j.status)),
      el("td", { class: "wrap why", "data-wait-reason": j.wait_reason || "", title: j.wait_detail || "" },
        j.wait_reason ? badge(j.wait_reason) : "–", j.wait_detail ? el("span", { class: "muted" }, " " + j.wait_detail) : null),
      el("td", { class: "num " + (waited > 900 ? "very-old" : waited > 120 ? "old" : "") }, duration(waited)));
  }));
  $("queue-empty").hidden = queue.length > 0;

  $("jobs").tBodies[0].replaceChildren(...[...running, ...finished].map((j) => el("tr", { "data-job-id": j.id, "data-status": j.status },
    el("td", { class: "wrap" }, `${j.name} `, el("span", { class: "muted" }, "#" + j.id)),
    el("td", {}, j.repository), el("td", {}, j.runner_name || "–"),
    el("td", {}, badge(j.status === "completed" ? (j.conclusion || "completed") : j.status)),
    el("td", { class: "num" }, duration(j.wait_seconds)),
    el("td", { class: "num" }, j.status === "in_progress" ? duration((now - Date.parse(j.started_at)) / 1000) : duration(j.duration_seconds)))));
  $("jobs-empty").hidden = running.length + finished.length > 0;

  renderPools(queue);
  // In a fleet each runner names its instance; a down instance's runners are on a down host.
  const fleet = !!state.instances;
  $("runner-instance").hidden = !fleet;
  const runners = [...state.runners.values()].sort((a, b) => (fleet && String(a.instance).localeCompare(String(b.instance)))
    || String(a.pool).localeCompare(String(b.pool)) || String(a.id).localeCompare(String(b.id)));
  $("runners").tBodies[0].replaceChildren(...runners.filter((r) => r.state !== "removed").map((r) => {
    const down = fleet && !instanceAlive(r.instance);
    return el("tr", { "data-runner-id": r.id, "data-instance": r.instance, class: down ? "on-down-host" : null,
        title: down ? `on ${r.instance}, which is down: its state is as last recorded` : null },
      fleet ? el("td", { class: down ? "down" : "" }, instanceText(r.instance)) : null,
      el("td", {}, r.pool), el("td", {}, r.github_runner_name || r.id),
      el("td", {}, badge(r.state)), el("td", {}, r.job_id ? "#" + r.job_id : "–"));
  }));
  $("runners-empty").hidden = runners.length > 0;

  $("webhooks").replaceChildren(...state.webhooks.map((w) => {
    const li = el("li", { class: w.fresh ? "new" : "" },
      el("time", { datetime: w.time }, new Date(w.time).toLocaleTimeString()),
      badge(w.outcome || "received"),
      el("span", {}, w.event + (w.action ? "." + w.action : "")),
      el("span", { class: "muted" }, w.repository || ""),
      w.detail ? el("span", { class: "muted" }, "— " + w.detail) : null);
    w.fresh = false;
    return li;
  }));
  $("webhooks-empty").hidden = state.webhooks.length > 0;

  const s = state.stats;
  // The snapshot lists at most 500 pending jobs; beyond that its total is the better count.
  $("h-queued").textContent = queue.length >= 500 ? Math.max(state.queueTotal, queue.length) : queue.length;
  $("h-running").textContent = running.length;
  $("h-rate").textContent = s.jobs_per_hour === undefined ? "–" : Math.round(s.jobs_per_hour);
  $("h-wait").textContent = duration(s.p50_wait_seconds);
  $("h-failed").textContent = s.jobs_failed ?? "–";
  $("h-hookfail").textContent = s.webhooks_failed ?? "–";
  $("seq").textContent = state.seq === null ? "" : "seq " + state.seq + (repoFilter ? " · " + repoFilter : "");
}

// One card per pool name. In a fleet a pool may be served by several instances: the card sums
// the alive ones (the queue is per pool, fleet-wide, so "is there room for this pool?" is the
// sum) and names each instance on a line of its own, a down one marked and not counted.
function renderPools(queue) {
  const max = state.limits.max_runners;
  const byName = new Map();
  for (const p of state.pools.values()) byName.set(p.name, [...(byName.get(p.name) || []), p]);
  const counted = (p) => {
    const own = [...state.runners.values()].filter((r) => r.pool === p.name && (!p.instance || !r.instance || r.instance === p.instance));
    const count = (st) => (p[st] !== undefined ? p[st] : own.filter((r) => r.state === st).length);
    return { busy: count("busy"), idle: count("idle"), starting: count("starting"), max: p.max_runners || 0 };
  };
  $("pools").replaceChildren(...[...byName.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([name, parts]) => {
    parts.sort((a, b) => String(a.instance).localeCompare(String(b.instance)));
    const sum = { busy: 0, idle: 0, starting: 0, max: 0 };
    for (const p of parts.filter((x) => instanceAlive(x.instance))) {
      const c = counted(p);
      for (const k of Object.keys(sum)) sum[k] += c[k];
    }
    const { busy, idle, starting } = sum;
    const queued = queue.filter((j) => j.pool === name).length;
    const cap = sum.max || 1;
    const part = (cls, n) => { const s = el("span", { class: cls, title: `${n} ${cls}` }); s.style.width = (100 * n / cap) + "%"; return s; };
    const labels = parts[0].labels;
    const hosts = state.instances ? el("ul", { class: "pool-instances" }, ...parts.map((p) => {
      const c = counted(p), up = instanceAlive(p.instance);
      return el("li", { "data-pool-instance": p.instance, class: up ? "" : "down" },
        `${instanceText(p.instance)}: ${c.busy} busy · ${c.idle} idle · ${c.starting} starting of ${c.max}`
          + (up ? "" : " (on a down host, not counted)"));
    })) : null;
    return el("div", { class: "pool", "data-pool": name },
      el("div", { class: "pool-head" }, el("strong", {}, name),
        el("span", {}, `${busy + idle + starting} / ${sum.max} runners · ${queued} queued`)),
      el("div", { class: "bar", role: "img", "aria-label": `${busy} busy, ${idle} idle, ${starting} starting of ${sum.max}` },
        part("busy", busy), part("idle", idle), part("starting", starting)),
      el("div", { class: "muted" }, `${busy} busy · ${idle} idle · ${starting} starting` + (labels ? " · " + labels.join(", ") : "")),
      hosts);
  }), max ? el("p", { class: "muted" }, state.instances ? `this host's limit: ${max} runners` : `host limit: ${max} runners`) : "", fleetLine());
}

// ---- history (charts.js draws it) ----

async function loadHistory() {
  const status = $("history-status");
  try {
    const r = await fetch(`/api/history?hours=${HISTORY_HOURS}`, {
      headers: token ? { Authorization: "Bearer " + token } : {}, cache: "no-store",
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      status.textContent = r.status === 401 ? "History needs the API token."
        : "History unavailable: " + ((body.error && body.error.message) || r.status);
      return;
    }
    drawHistory(body.data);
    status.textContent = "";
  } catch (e) {
    status.textContent = "History unavailable: " + e.message;
  }
}

// ---- filter, keys, timers ----

function applyFilter(repo) {
  repoFilter = repo.trim();
  $("repo").value = repoFilter;
  history.replaceState(null, "", repoFilter ? "#repo=" + encodeURIComponent(repoFilter) : "#");
  state.jobs = new Map(); state.webhooks = [];
  send({ op: "subscribe", repository: repoFilter || null, snapshot: true });
  scheduleRender();
}

document.addEventListener("DOMContentLoaded", () => {
  $("repo").value = repoFilter;
  $("filter").addEventListener("submit", (e) => { e.preventDefault(); applyFilter($("repo").value); });
  $("clear").addEventListener("click", () => applyFilter(""));
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("runnerhub.token", token);
    $("token-form").hidden = true;
    if (!ws) connect();
    loadHistory();
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLInputElement;
    if (e.key === "/" && !typing) { e.preventDefault(); $("repo").focus(); $("repo").select(); }
    else if (e.key === "Escape") { if (typing) e.target.blur(); applyFilter(""); }
    else if (e.key === "r" && !typing) send({ op: "snapshot" });
  });
  timers.push(setInterval(() => send({ op: "snapshot" }), SNAPSHOT_EVERY_MS));
  timers.push(setInterval(() => {
    send({ op: "ping" });
    if (ws && Date.now() - lastHeard > SILENCE_LIMIT_MS) ws.close(); // onclose reconnects
  }, PING_EVERY_MS));
  timers.push(setInterval(scheduleRender, 1000)); // wait times tick
  timers.push(setInterval(loadHistory, HISTORY_EVERY_MS));
  connect();
  loadHistory();
});
