/* The dashboard page: polls the JSON API and redraws in place (no reloads, no third-party requests). */

"use strict";

// Ollama says "kept loaded" with an expiry centuries away; a time of day alone would mislead.
function expiry(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (isNaN(when)) return "";
  if (when - Date.now() > 365 * 24 * 3600 * 1000) return ", kept loaded";
  const sameDay = when.toDateString() === new Date().toDateString();
  return `, until ${sameDay ? when.toLocaleTimeString() : when.toLocaleString()}`;
}

const CARDS = [
  ["proxy", "LiteLLM proxy"],
  ["ollama", "Backend (Ollama API)"],
  ["canary", "Canary (end to end)"],
  ["traffic", "Real traffic"],
  ["prometheus", "Prometheus"],
  ["alertmanager", "Alertmanager (alert delivery)"],
  ["redis", "Redis (the queue's shared state)"],
];
const WORDS = { healthy: "healthy", unhealthy: "unhealthy", offline: "offline" };
const COLORS = ["#2563eb", "#d97706", "#dc2626", "#059669", "#7c3aed"];
// One colour per outcome class (llmops/outcomes.py LEGENDS), the same on every chart: only failures are red.
const CLASS_COLORS = { "ok (2xx)": "#059669", "client error (4xx)": "#d97706", "rate limited (429)": "#7c3aed",
  "server error (5xx)": "#dc2626", "timeout": "#9f1239" };
const CLASS_WORDS = { ok: "ok", client_error: "client error", rate_limited: "rate limited",
  server_error: "server error", timeout: "timeout" };
const STATUS_EVERY_MS = Math.max(2000, Math.min(5000, 1000 * Number(document.body.dataset.probeInterval || 5)));
const charts = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function ago(iso) {
  if (!iso) return "";
  let s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129600) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.max(0, Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024))));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

function card(key, title, c) {
  const state = c.enabled === false ? "off" : c.status;
  const held = c.status === "healthy" && /last probe failed/.test(c.detail || "");
  const off = c.needed === false ? "not used" : "off";  // Redis when one proxy worker keeps the queue itself
  const word = c.enabled === false ? off : c.error === "pending" ? "checking" : WORDS[c.status] || c.status;
  const rows = [];
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") rows.push(el("dt", {}, k), el("dd", {}, v)); };
  add("latency", c.latency_ms == null ? null : `${c.latency_ms.toFixed(1)} ms`);
  add("version", c.version);
  if (c.since && c.error !== "pending") add(c.status === "healthy" ? "up for" : "down for", ago(c.since));
  if (key === "proxy") add("models", (c.models || []).join(", ") || "none");
  if (key === "proxy" && c.health_check) add("LiteLLM /health", c.health_check.detail);
  if (key === "traffic" && c.success_ratio != null) add("success", `${(100 * c.success_ratio).toFixed(1)} %`);
  if (key === "traffic" && c.outcomes) {
    const counted = Object.entries(c.outcomes).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${CLASS_WORDS[k] || k}`);
    add(`requests (${c.window || "5m"})`, `${c.requests || 0}${counted.length ? `: ${counted.join(", ")}` : ""}`);
  }
  if (key === "canary" && c.model) add("model", c.model);
  if (key === "redis" && c.role) add("used as", c.role);
  const node = el("article", { class: `card ${state}${held ? " held" : ""}`, "data-component": key },
    el("h3", {}, title, el("span", { class: "badge" }, word)),
    el("dl", {}, ...rows),
    el("p", { class: "why" }, c.detail || ""));
  if (key === "ollama" && (c.backends || []).length > 1) {
    node.append(el("ul", {}, ...c.backends.map(b =>
      el("li", {}, `${b.backend}: ${WORDS[b.status] || b.status}${b.latency_ms == null ? "" : ` (${b.latency_ms.toFixed(1)} ms)`}`))));
  }
  return node;
}

async function refreshStatus() {
  const box = document.getElementById("overall");
  try {
    const [s, self] = await Promise.all([getJSON("/api/status"), getJSON("/healthz")]);
    box.className = `overall state-${s.overall}`;
    document.getElementById("overall-word").textContent = s.overall;
    document.getElementById("overall-reason").textContent = s.reason;
    document.getElementById("checked-at").textContent = s.checked_at ? `checked ${ago(s.checked_at)} ago` : "";
    const cards = CARDS.map(([k, t]) => card(k, t, s.components[k] || { status: "offline", detail: "no data" }));
    cards.push(card("dashboard", "Dashboard", {
      status: "healthy", detail: self.monitor_running ? "serving; background probes running" : "serving; probes are off",
      latency_ms: null, since: new Date(Date.now() - 1000 * self.uptime_s).toISOString(),
    }));
    document.getElementById("cards").replaceChildren(...cards);
  } catch (err) {
    box.className = "overall state-down";
    document.getElementById("overall-word").textContent = "no answer";
    document.getElementById("overall-reason").textContent = `the dashboard itself did not answer: ${err.message}`;
  }
}

async function refreshModels() {
  if (window.llmopsModels) return window.llmopsModels.refresh();  // static/models.js: the per-model table
  const tbody = document.querySelector("#models tbody");
  try {
    const m = await getJSON("/api/models");
    if (!m.models.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no models known yet")));
      return;
    }
    tbody.replaceChildren(...m.models.map(r => el("tr", {},
      el("td", {}, r.name),
      el("td", {}, r.configured ? "yes" : "no"),
      el("td", {}, r.present_on.length ? r.present_on.join(", ") + (r.size ? ` (${bytes(r.size)})` : "") : "nowhere"),
      el("td", {}, r.loaded_on.length ? r.loaded_on.map(l =>
        `${l.backend}: ${bytes(l.size)}${l.size_vram ? `, ${bytes(l.size_vram)} VRAM` : ""}` +
        expiry(l.expires_at)).join("; ") : "not loaded"))));
  } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, `models unavailable: ${err.message}`)));
  }
}

async function refreshAlerts() {
  const box = document.getElementById("alerts");
  try {
    const a = await getJSON("/api/alerts");
    if (!a.available) { box.className = "panel unavailable"; box.textContent = a.detail; return; }
    box.className = "panel";
    if (!a.firing.length) {
      box.replaceChildren(el("span", { class: "muted" }, `none firing${a.pending ? ` (${a.pending} pending)` : ""}`));
      return;
    }
    box.replaceChildren(...a.firing.map(x => el("div", { class: "alert" },
      el("span", { class: `sev-${x.severity}` }, x.severity), el("strong", {}, x.name),
      el("span", {}, x.summary || ""), el("span", { class: "muted" }, x.since ? `for ${ago(x.since)}` : ""))));
  } catch (err) {
    box.className = "panel unavailable";
    box.textContent = `alerts unavailable: ${err.message}`;
  }
}

const NA = "n/a";
const pct = r => (r == null ? NA : `${(100 * r).toFixed(0)} %`);
const size = n => (n == null ? NA : bytes(n));
const num = (n, digits) => (n == null ? NA : n.toFixed(digits));

function meter(ratio, label) {
  const r = ratio == null ? 0 : Math.max(0, Math.min(1, ratio));
  const level = r >= 0.9 ? "bad" : r >= 0.75 ? "warn" : "ok";
  const fill = el("span", { class: `fill ${level}` });
  fill.style.width = `${(100 * r).toFixed(1)}%`;
  return el("div", { class: "meter", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": Math.round(100 * r) }, fill);
}

function facts(pairs) {
  const rows = [];
  for (const [k, v, bar] of pairs) rows.push(el("dt", {}, k), el("dd", {}, v, bar || null));
  return el("dl", { class: "facts" }, ...rows);
}

function hostSummary(h, error) {
  if (error) return [el("span", { class: "unavailable" }, `host figures unavailable: ${error}`)];
  const used = h.memory_total_bytes == null || h.memory_available_bytes == null ? null
    : h.memory_total_bytes - h.memory_available_bytes;
  const diskUsed = h.disk_total_bytes == null || h.disk_free_bytes == null ? null : h.disk_total_bytes - h.disk_free_bytes;
  const diskRatio = diskUsed == null || !h.disk_total_bytes ? null : diskUsed / h.disk_total_bytes;
  const cores = h.cpu_count ? ` of ${h.cpu_count} cores` : "";
  return [
    facts([
      ["CPU", `${pct(h.cpu_utilization_ratio)}${cores}`, meter(h.cpu_utilization_ratio, "host CPU")],
      ["memory", `${size(used)} of ${size(h.memory_total_bytes)} (${pct(h.memory_used_ratio)})`,
        meter(h.memory_used_ratio, "host memory")],
      ["load", `${num(h.load1, 2)} / ${num(h.load5, 2)} / ${num(h.load15, 2)} (1/5/15 min)`],
      ["disk /", `${size(diskUsed)} of ${size(h.disk_total_bytes)} (${pct(diskRatio)})`, meter(diskRatio, "disk")],
    ]),
    el("p", { class: "muted source" }, `from ${h.source}${h.detail ? `: ${h.detail}` : ""}`),
  ];
}

function processRows(processes) {
  const names = Object.keys(processes).sort();
  if (!names.length) return [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no stack processes known (supervisor not running)"))];
  return names.map(name => {
    const p = processes[name];
    if (p.status !== "running") {
      return el("tr", { "data-service": name }, el("td", {}, name), el("td", {}, p.pid || ""),
        el("td", { colspan: 2, class: "muted" }, p.status));
    }
    const extra = p.processes > 1 ? ` (${p.processes} processes)` : "";
    return el("tr", { "data-service": name }, el("td", {}, name), el("td", {}, p.pid),
      el("td", {}, size(p.rss_bytes) + extra), el("td", {}, p.cpu_percent == null ? "measuring" : `${p.cpu_percent.toFixed(1)} %`));
  });
}

function gpuCard(g) {
  const power = g.power_watts == null ? NA : `${g.power_watts.toFixed(0)} W` +
    (g.power_limit_watts == null ? "" : ` of ${g.power_limit_watts.toFixed(0)} W`);
  const procs = g.processes == null ? el("p", { class: "muted" }, "processes: not reported")
    : !g.processes.length ? el("p", { class: "muted" }, "no process holds memory")
      : el("ul", {}, ...g.processes.map(p => el("li", {},
        `${p.name} (pid ${p.pid}${p.service ? `, ${p.service}` : ""}): ${size(p.memory_bytes)}`)));
  return el("article", { class: "panel gpu", "data-gpu": g.index },
    el("h3", {}, `GPU ${g.index}: ${g.name || "unknown"}`),
    facts([
      ["memory", `${size(g.memory_used_bytes)} of ${size(g.memory_total_bytes)} (${pct(g.memory_used_ratio)})`,
        meter(g.memory_used_ratio, `GPU ${g.index} memory`)],
      ["utilisation", pct(g.utilization_ratio), meter(g.utilization_ratio, `GPU ${g.index} utilisation`)],
      ["power", power],
      ["temperature", g.temperature_celsius == null ? NA : `${g.temperature_celsius.toFixed(0)} °C`],
    ]),
    procs);
}

function gpuPanels(gpu) {
  if (gpu.status === "ok") return gpu.gpus.map(gpuCard);
  if (gpu.status === "no GPU found") {
    return [el("div", { class: "panel nogpu" }, el("strong", {}, "no GPU found"), el("span", { class: "muted" }, gpu.detail))];
  }
  return [el("div", { class: "panel unavailable" }, `GPU telemetry error: ${gpu.detail}`)];
}

function vramPanel(models) {
  const head = el("h3", {}, "Loaded models (VRAM)");
  if (!models.length) return [head, el("p", { class: "muted" }, "no model loaded")];
  return [head, el("ul", {}, ...models.map(m => el("li", { "data-model": m.name },
    el("strong", {}, m.name), ` on ${m.backend}: ${bytes(m.size_vram)} VRAM of ${bytes(m.size)}`,
    m.vram_ratio === 0 ? el("span", { class: "muted" }, " (on the CPU)") : null)))];
}

async function refreshHost() {
  const summary = document.getElementById("host-summary");
  try {
    const d = await getJSON("/api/host");
    const errors = d.errors || {};
    summary.className = "panel";
    summary.replaceChildren(...hostSummary(d.host, errors.host));
    document.querySelector("#processes tbody").replaceChildren(...processRows(d.processes));
    document.getElementById("gpus").replaceChildren(...gpuPanels(d.gpu));
    document.getElementById("vram").replaceChildren(...vramPanel(d.gpu.models || []));
  } catch (err) {
    summary.className = "panel unavailable";
    summary.textContent = `host figures unavailable: ${err.message}`;
  }
}

function timeLabel(seconds, span) {
  const d = new Date(seconds * 1000);
  const hm = d.toTimeString().slice(0, 5);
  return span > 43200 ? `${d.getDate()}/${d.getMonth() + 1} ${hm}` : hm;
}

function drawChart(spec, span) {
  let entry = charts[spec.id];
  if (!entry) {
    const canvas = el("canvas", { "aria-label": spec.title, role: "img" });
    const nodata = el("div", { class: "nodata" }, "no data in this window");
    const wrap = el("div", { class: "chart", "data-chart": spec.id },
      el("h3", {}, `${spec.title} (${spec.unit})`), el("div", { class: "box" }, canvas, nodata));
    document.getElementById("charts").append(wrap);
    const state = { span };
    const chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
        spanGaps: false, interaction: { mode: "index", intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0 } },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 6, callback: v => timeLabel(v, state.span) } },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 5 } },
        },
        plugins: { legend: { labels: { boxWidth: 12 } }, tooltip: { callbacks: { title: i => i.length ? timeLabel(i[0].parsed.x, 0) : "" } } },
      },
    });
    entry = charts[spec.id] = { chart, wrap, nodata, state };
  }
  entry.state.span = span;
  entry.nodata.hidden = !spec.empty;
  entry.chart.data.datasets = spec.series.map((s, i) => ({
    label: s.name, borderColor: CLASS_COLORS[s.name] || COLORS[i % COLORS.length],
    backgroundColor: CLASS_COLORS[s.name] || COLORS[i % COLORS.length],
    data: s.points.map(([x, y]) => ({ x, y })),
  }));
  entry.chart.update("none");
}

async function refreshCharts() {
  const windowName = document.getElementById("window").value;
  const note = document.getElementById("charts-unavailable");
  const grid = document.getElementById("charts");
  let doc;
  try {
    const model = (document.getElementById("chart-model") || {}).value || "all";
    doc = await getJSON(`/api/charts?window=${encodeURIComponent(windowName)}&model=${encodeURIComponent(model)}`);
  } catch (err) {
    doc = { available: false, detail: `metrics unavailable: ${err.message}`, charts: [] };
  }
  if (!doc.available) {
    // Say so instead of drawing empty axes.
    note.textContent = doc.detail || "metrics unavailable";
    note.hidden = false;
    grid.hidden = true;
    return;
  }
  note.hidden = true;
  grid.hidden = false;
  for (const spec of doc.charts) drawChart(spec, doc.end - doc.start);
}

const seconds = s => (s == null ? "n/a" : s < 1 ? `${(1000 * s).toFixed(0)} ms` : `${s.toFixed(2)} s`);

async function refreshQueue() {
  const window_ = document.getElementById("window").value;
  const missing = document.getElementById("queue-unavailable");
  const priorities = document.querySelector("#queue-priorities tbody");
  const backends = document.querySelector("#queue-backends tbody");
  try {
    const q = await getJSON(`/api/queue?window=${encodeURIComponent(window_)}`);
    missing.hidden = q.available && q.enabled;
    missing.textContent = q.detail || "";
    priorities.replaceChildren(...(q.priorities.length ? q.priorities.map(p => el("tr", {},
      el("td", {}, p.priority), el("td", {}, p.waiting), el("td", {}, p.admitted),
      el("td", {}, seconds(p.p50_s)), el("td", {}, seconds(p.p95_s))))
      : [el("tr", {}, el("td", { colspan: "5", class: "muted" }, "nothing waited in this window"))]));
    backends.replaceChildren(...(q.backends.length ? q.backends.map(b => el("tr", {},
      el("td", {}, b.backend), el("td", {}, b.model), el("td", {}, `${b.busy} / ${b.slots}`),
      el("td", {}, b.health_checks ?? 0)))
      : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "no slots known"))]));
    document.getElementById("queue-rejected").textContent = "refused: " +
      ["full", "timeout", "client_left"].map(reason => `${reason.replace("_", " ")} ${q.rejected[reason] || 0}`).join(", ");
  } catch (err) {
    missing.hidden = false;
    missing.textContent = `queue unavailable: ${err.message}`;
  }
}

function every(ms, fn) {
  fn();
  setInterval(() => { if (!document.hidden) fn(); }, ms);
}

document.getElementById("window").addEventListener("change", refreshCharts);
document.getElementById("window").addEventListener("change", refreshQueue);
every(STATUS_EVERY_MS, refreshStatus);
every(5000, refreshModels);
every(5000, refreshHost);
every(10000, refreshAlerts);
every(15000, refreshCharts);
every(10000, refreshQueue);
