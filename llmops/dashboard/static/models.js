/* The dashboard's per-model table and the charts' model filter (uses el, getJSON, bytes from app.js). */

"use strict";

(function () {
  const CLASSES = [["ok", "ok"], ["client_error", "4xx"], ["rate_limited", "429"], ["timeout", "timeout"],
    ["server_error", "5xx"]];
  const ms = s => (s == null ? "-" : `${(1000 * s).toFixed(s < 0.1 ? 1 : 0)} ms`);
  const perS = (n, unit) => (n == null ? "-" : `${n.toFixed(n < 10 ? 2 : 1)} ${unit}`);

  // The keep-alive countdown: "unloads in 4:05", redrawn every second between table refreshes.
  function countdown(iso) {
    const when = Date.parse(iso);
    if (isNaN(when)) return "";
    const left = Math.round((when - Date.now()) / 1000);
    if (left > 365 * 24 * 3600) return "kept loaded";
    if (left <= 0) return "unloading";
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    const mmss = `${String(m).padStart(h ? 2 : 1, "0")}:${String(s).padStart(2, "0")}`;
    return `unloads in ${h ? `${h}:` : ""}${mmss}`;
  }

  function tick() {
    for (const node of document.querySelectorAll("#models [data-expires]")) {
      node.textContent = countdown(node.dataset.expires);
    }
  }

  function loaded(r) {
    if (!r.loaded_on.length) return "not loaded";
    return el("span", {}, ...r.loaded_on.map((l, i) => el("span", { class: "loaded" },
      i ? "; " : "", `${l.backend}: ${bytes(l.size)}${l.size_vram ? `, ${bytes(l.size_vram)} VRAM` : ""} `,
      l.expires_at ? el("span", { class: "muted", "data-expires": l.expires_at }, countdown(l.expires_at)) : null)));
  }

  function outcomes(t) {
    if (!t || (!t.requests && !t.fallbacks)) return "-";
    const parts = CLASSES.filter(([k]) => t.outcomes[k]).map(([k, label]) => `${label} ${t.outcomes[k]}`);
    if (t.fallbacks) parts.push(`fell back ${t.fallbacks}`);  // answered by the fallback model
    return parts.join(", ");
  }

  function row(r) {
    const t = r.traffic;
    const inProxy = (r.configured ? "yes" : "no") + (r.note ? ` (${r.note})` : "");
    return el("tr", { "data-model": r.name },
      el("td", {}, r.name),
      el("td", {}, r.kind),
      el("td", r.note ? { class: "model-note" } : {}, inProxy),
      el("td", {}, r.present_on.length ? r.present_on.join(", ") + (r.size ? ` (${bytes(r.size)})` : "") : "nowhere"),
      el("td", {}, loaded(r)),
      el("td", { "data-col": "requests" }, t ? String(t.requests) : "0"),
      el("td", { "data-col": "outcomes" }, outcomes(t)),
      el("td", {}, t ? `${ms(t.p50_s)} / ${ms(t.p95_s)}` : "-"),
      el("td", {}, t && r.kind !== "embedding" ? ms(t.ttft_p50_s) : "-"),
      el("td", {}, t && r.kind !== "embedding" ? perS(t.output_tokens_per_s, "tok/s") : "-"),
      el("td", {}, t && r.kind === "embedding" ? perS(t.embeddings_per_s, "req/s") : "-"));
  }

  function fillFilter(names) {
    const select = document.getElementById("chart-model");
    if (!select) return;
    const wanted = ["all", ...names];
    const have = [...select.options].map(o => o.value);
    if (wanted.join("\n") === have.join("\n")) return;
    const current = select.value || "all";
    select.replaceChildren(...wanted.map(n => el("option", { value: n }, n)));
    select.value = wanted.includes(current) ? current : "all";
  }

  async function refresh() {
    const tbody = document.querySelector("#models tbody");
    const columns = document.querySelectorAll("#models thead th").length;
    const windowName = document.getElementById("window").value;
    try {
      const m = await getJSON(`/api/models/traffic?window=${encodeURIComponent(windowName)}`);
      fillFilter(m.models.map(r => r.name));
      const note = document.getElementById("models-note");
      note.textContent = m.available ? `traffic over the last ${m.window}` : `traffic figures unavailable: ${m.detail}`;
      if (!m.models.length) {
        tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "muted" }, "no models known yet")));
        return;
      }
      tbody.replaceChildren(...m.models.map(row));
    } catch (err) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "muted" }, `models unavailable: ${err.message}`)));
    }
  }

  window.llmopsModels = { refresh, countdown };
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", () => {
    const select = document.getElementById("chart-model");
    if (select) select.addEventListener("change", () => refreshCharts());
  });
})();
