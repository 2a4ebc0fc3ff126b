/* The "Alert history" section: /api/alerts/history newest first, and "silence for 1 h" through the dashboard
   (POST /api/alerts/silence with the page's CSRF token; uses el, getJSON and ago from app.js). */

"use strict";

(() => {
  const section = document.getElementById("alert-history-section");
  if (!section) return;
  const form = document.getElementById("alert-history-filters");
  const body = document.querySelector("#alert-history tbody");
  const note = document.getElementById("alert-history-note");
  const message = document.getElementById("alert-history-message");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  // Silences made from this page: fingerprint -> end (ms), until Alertmanager's answer shows them.
  const silenced = new Map();

  function span(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function say(text, ok) {
    message.hidden = false;
    message.className = ok ? "panel" : "panel unavailable";
    message.textContent = text;
  }

  async function silence(alert, button) {
    button.disabled = true;
    try {
      const response = await fetch("/api/alerts/silence", {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ labels: alert.labels }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      say(`${alert.alertname} silenced until ${new Date(answer.ends_at).toLocaleString()} (silence ${answer.silence_id})`, true);
      silenced.set(alert.fingerprint, Date.parse(answer.ends_at));
      button.textContent = "silenced";
    } catch (err) {
      say(`could not silence ${alert.alertname}: ${err.message}`, false);
      button.disabled = false;
    }
  }

  function row(a) {
    const action = el("button", { type: "button", class: "silence" }, "silence for 1 h");
    action.addEventListener("click", () => silence(a, action));
    // Held back by a silence now: Alertmanager's word (silenced_until, whoever made it), or one made on this
    // page that Alertmanager's answer does not show yet.
    const until = Math.max(a.silenced_until ? Date.parse(a.silenced_until) : 0, silenced.get(a.fingerprint) || 0);
    if (until > Date.now()) {
      action.textContent = "silenced";
      action.title = `silenced until ${new Date(until).toLocaleString()}`;
      action.disabled = true;
    }
    const where = a.instance ? ` on ${a.labels.backend || a.instance}` : "";
    // Recovered from Prometheus's ALERTS series: it fired while the dashboard was down, so no notice reached it.
    const source = a.source === "prometheus"
      ? el("div", { class: "muted alert-source", title: "the dashboard was down while this fired: recovered from " +
          "Prometheus's ALERTS series (times to its evaluation step)" }, "from Prometheus")
      : null;
    return el("tr", { class: `alert-${a.state}`, "data-fingerprint": a.fingerprint, "data-source": a.source },
      el("td", {}, el("strong", {}, a.alertname), el("span", { class: "muted" }, where), source),
      el("td", {}, el("span", { class: a.resolved ? "muted" : `sev-${a.severity}` }, a.state)),
      el("td", { title: a.starts_at }, `${new Date(a.starts_at).toLocaleString()} (${ago(a.starts_at)} ago)`),
      el("td", {}, span(a.duration_s)),
      el("td", {}, a.resolved ? `yes, ${new Date(a.ends_at).toLocaleString()}` : "no, still firing"),
      el("td", {}, a.summary, a.description ? el("div", { class: "muted" }, a.description) : null),
      el("td", {}, a.resolved ? null : action));
  }

  async function refresh() {
    const data = new FormData(form);
    const p = new URLSearchParams({ limit: "100" });
    for (const name of ["state", "since"]) if (data.get(name)) p.set(name, data.get(name));
    try {
      const doc = await getJSON(`/api/alerts/history?${p}`);
      if (!doc.history.available) {
        note.textContent = "";
        body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, `history unavailable: ${doc.history.detail}`)));
        return;
      }
      note.textContent = `${doc.history.alerts} alerts from ${doc.history.notifications} notifications kept ` +
        `(${doc.history.days} days)`;
      if (!doc.alerts.length) {
        body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no alert in this time")));
        return;
      }
      body.replaceChildren(...doc.alerts.map(row));
    } catch (err) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, `history unavailable: ${err.message}`)));
    }
  }

  form.addEventListener("change", refresh);
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 10000);
})();
