/* The "Requests" section: the request log from /api/requests, newest first, with filters, paging and details
   (uses el, getJSON and CLASS_WORDS from app.js). */

"use strict";

(() => {
  const section = document.getElementById("requests-section");
  if (!section) return;
  const form = document.getElementById("requests-filters");
  const body = document.querySelector("#requests tbody");
  const more = document.getElementById("requests-more");
  const detail = document.getElementById("request-detail");
  const degraded = document.getElementById("requests-degraded");
  const logLine = document.getElementById("requests-log");
  const FIELDS = [
    ["time", "time"], ["call_id", "call id"], ["kind", "kind"], ["model", "model"], ["served_by", "fallback used"],
    ["deployment", "deployment"], ["outcome", "outcome"], ["status", "HTTP status"], ["retries", "retries"],
    ["latency_ms", "latency (ms)"], ["ttft_ms", "time to first token (ms)"], ["stream", "stream"],
    ["finish_reason", "finish reason"], ["prompt_tokens", "prompt tokens"], ["completion_tokens", "completion tokens"],
    ["tools", "tools offered"], ["tool_calls", "tool calls made"],
    ["priority", "queue priority"], ["queue_wait_ms", "queue wait (ms)"],
    ["user_agent", "user agent"], ["key_alias", "key alias"], ["key_hash", "key hash"],
    ["error_type", "error type"], ["error_message", "error"], ["prompt", "prompt"], ["answer", "answer"],
  ];
  let cursor = null;
  let shown = [];
  let selected = null;
  let paged = false; // the user asked for older pages: stop refreshing the first one

  function params(withCursor) {
    const data = new FormData(form);
    const p = new URLSearchParams();
    for (const name of ["model", "kind", "priority", "user_agent", "since", "q"]) {
      const v = (data.get(name) || "").trim();
      if (v) p.set(name, v);
    }
    const outcome = data.get("outcome");
    if (data.get("failures") && (!outcome || outcome === "ok")) p.set("outcome", "failures");
    else if (outcome) p.set("outcome", outcome);
    p.set("limit", "50");
    if (data.get("tools")) p.set("tools", "1");
    if (withCursor && cursor) p.set("cursor", cursor);
    return p;
  }

  function when(iso) {
    const t = new Date(iso);
    return t.toDateString() === new Date().toDateString() ? t.toLocaleTimeString() : t.toLocaleString();
  }

  // "3 tools → 2 calls" (the calls are known of a success only); empty for a request without tools.
  function toolsCell(r) {
    if (!r.tools) return "";
    const offered = `${r.tools} tool${r.tools === 1 ? "" : "s"}`;
    return r.tool_calls == null ? offered : `${offered} → ${r.tool_calls} call${r.tool_calls === 1 ? "" : "s"}`;
  }

  function row(r, index) {
    const tokens = r.prompt_tokens == null ? "" : `${r.prompt_tokens} → ${r.completion_tokens ?? 0}`;
    const tr = el("tr", { class: "row", tabindex: "0", "data-index": String(index), "data-call-id": r.call_id || "" },
      el("td", {}, when(r.time)), el("td", {}, r.kind || ""), el("td", {}, r.model || ""),
      el("td", { class: `oc oc-${r.outcome}` }, CLASS_WORDS[r.outcome] || r.outcome), el("td", {}, r.status ?? ""),
      el("td", {}, r.latency_ms == null ? "" : `${Math.round(r.latency_ms)} ms`), el("td", {}, tokens),
      el("td", { class: "priority" }, r.priority ?? ""), el("td", { class: "tools" }, toolsCell(r)), el("td", {}, r.user_agent || ""), el("td", { class: "err" }, r.error_type ? `${r.error_type}: ${(r.error_message || "").slice(0, 120)}` : ""));
    return tr;
  }

  function showDetail(index) {
    const r = shown[index];
    if (!r) return;
    for (const tr of body.querySelectorAll("tr.selected")) tr.classList.remove("selected");
    const tr = body.querySelector(`tr[data-index="${index}"]`);
    if (tr) tr.classList.add("selected");
    selected = r.call_id;
    const dl = el("dl", {});
    for (const [key, label] of FIELDS) {
      let v = key === "outcome" ? (CLASS_WORDS[r.outcome] || r.outcome) : r[key];
      if (v === null || v === undefined || v === "") continue;
      if (typeof v === "boolean") v = v ? "yes" : "no";
      dl.append(el("dt", {}, label), el("dd", {}, v));
    }
    detail.replaceChildren(el("h3", {}, `Request ${r.call_id || ""}`), dl);
    detail.hidden = false;
    detail.scrollIntoView({ block: "nearest" });
  }

  function render(doc, append) {
    const log = doc.log || {};
    degraded.hidden = !log.degraded;
    degraded.textContent = log.degraded ? `request log degraded: ${log.degraded}${log.dropped ? ` (${log.dropped} rows dropped)` : ""}` : "";
    logLine.textContent = log.enabled === false ? "request log off (REQUEST_LOG=0)" : "";
    if (!append) { shown = []; body.replaceChildren(); }
    const start = shown.length;
    shown = shown.concat(doc.requests || []);
    (doc.requests || []).forEach((r, i) => body.append(row(r, start + i)));
    if (!shown.length) body.replaceChildren(el("tr", {}, el("td", { colspan: "11", class: "muted" }, "no requests match")));
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    const again = shown.findIndex((r) => r.call_id === selected);
    if (again >= 0) body.querySelector(`tr[data-index="${again}"]`)?.classList.add("selected");
  }

  async function load(append) {
    try {
      render(await getJSON(`/api/requests?${params(append)}`), append);
    } catch (err) {
      degraded.hidden = false;
      degraded.textContent = `request log unavailable: ${err.message}`;
    }
  }

  function fillSelect(name, values) {
    values = values.map(String); // priorities come as numbers
    const select = form.elements[name];
    const keep = select.value;
    const options = [el("option", { value: "" }, "all")].concat(values.map((v) => el("option", { value: v }, v)));
    select.replaceChildren(...options);
    select.value = values.includes(keep) ? keep : "";
  }

  async function loadFacets() {
    try {
      const doc = await getJSON("/api/requests/facets");
      fillSelect("model", doc.models || []);
      fillSelect("kind", doc.kinds || []);
      fillSelect("priority", doc.priorities || []);
      fillSelect("user_agent", doc.user_agents || []);
    } catch (err) {
      /* the table's own load reports an unreadable log */
    }
  }

  body.addEventListener("click", (e) => {
    const tr = e.target.closest("tr.row");
    if (tr) showDetail(Number(tr.dataset.index));
  });
  body.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr.row");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); showDetail(Number(tr.dataset.index)); }
  });
  more.addEventListener("click", () => { paged = true; load(true); });
  form.addEventListener("change", () => { paged = false; load(false); });
  let typing = null;
  form.elements.q.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => load(false), 300); });
  form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });

  loadFacets().then(() => load(false));
  // Refresh the first page while the user has not paged further back.
  setInterval(() => { if (!document.hidden && !paged) load(false); }, 5000);
  setInterval(() => { if (!document.hidden) loadFacets(); }, 30000);
})();
