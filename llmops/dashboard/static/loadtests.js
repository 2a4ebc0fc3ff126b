/* The dashboard's "Load tests" section: kept generator runs from /api/loadtests, each linked to its report
   (uses el and getJSON from app.js). */

"use strict";

(function () {
  const EVERY_MS = 30000;
  const note = document.getElementById("loadtests-note");
  const table = document.getElementById("loadtests-runs");
  const chartBox = document.getElementById("loadtests-chart");
  const capacityBox = document.getElementById("loadtests-capacity");
  let chart = null;

  const ms = s => (s == null ? "-" : `${(s * 1000).toFixed(1)} ms`);
  const num = (x, d, unit) => (x == null ? "-" : `${x.toFixed(d)}${unit || ""}`);

  // "20261201T095034Z-sweep-1-2-4" -> local time and the name after the timestamp.
  function when(run) {
    const t = run.started_at ? new Date(run.started_at) : null;
    return t && !isNaN(t) ? t.toLocaleString() : run.name.slice(0, 16);
  }
  const label = run => run.name.replace(/^\d{8}T\d{6}Z-/, "");

  function row(run) {
    const done = run.status !== "incomplete";
    const link = run.report_url ? el("a", { href: run.report_url, target: "_blank", rel: "noopener" }, "report") : "-";
    const status = el("td", { class: done ? "" : "muted", title: run.reason || "" },
      run.status + (done || !run.reason ? "" : ` (${run.reason})`));
    const cells = done
      ? [`${run.ok}/${run.requests}`, num(run.requests_per_s, 2), num(run.output_tokens_per_s, 1), ms(run.latency_p50_s),
        ms(run.latency_p95_s), ms(run.ttft_p50_s), num(run.error_ratio == null ? null : 100 * run.error_ratio, 1, " %")]
      : ["-", "-", "-", "-", "-", "-", "-"];
    return el("tr", { "data-run": run.name, "data-status": run.status },
      el("td", {}, el("strong", {}, label(run)), el("br"), el("span", { class: "muted" }, `${when(run)}, ${run.kind || "?"}`)),
      status, el("td", {}, run.model || "-"), ...cells.map(c => el("td", {}, c)), el("td", {}, link));
  }

  function drawChart(runs) {
    const done = runs.filter(r => r.status !== "incomplete" && r.requests_per_s != null).reverse();
    chartBox.hidden = done.length === 0;
    if (!done.length) return;
    // Many runs share a name (every `make load-test` is "load-test"): the label carries the time too.
    const labels = done.map(r => `${r.name.slice(4, 6)}/${r.name.slice(6, 8)} ${r.name.slice(9, 11)}:${r.name.slice(11, 13)} ${label(r)}`);
    const datasets = [
      { label: "requests/s", data: done.map(r => r.requests_per_s), backgroundColor: "#2563ebcc", yAxisID: "y" },
      { label: "p50 latency (ms)", data: done.map(r => (r.latency_p50_s == null ? null : 1000 * r.latency_p50_s)),
        type: "line", borderColor: "#d97706", backgroundColor: "#d97706", yAxisID: "y2" },
    ];
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets = datasets;
      chart.update("none");
      return;
    }
    chart = new Chart(chartBox.querySelector("canvas"), {
      type: "bar", data: { labels, datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "req/s" } },
          y2: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "ms" } },
        },
        plugins: { legend: { labels: { boxWidth: 12 } } },
      },
    });
  }

  // The last capacity answer: its date, model and SLO, the one-line answer, and its report.
  function showCapacity(cap) {
    capacityBox.hidden = !cap;
    if (!cap) return;
    const link = cap.report_url ? el("a", { href: cap.report_url, target: "_blank", rel: "noopener" }, "report") : "";
    const streams = cap.max_concurrency == null ? "no answer" : `${cap.max_concurrency} concurrent streams`;
    capacityBox.replaceChildren(
      el("strong", {}, `Capacity: ${streams}`), " ",
      el("span", { class: "muted" }, `${when(cap)}, ${cap.model || "?"}, SLO ${cap.slo || "?"}${cap.complete ? "" : " (interrupted)"}`),
      el("br"), el("span", { "data-capacity-message": "" }, cap.message || ""), " ", link);
  }

  async function refresh() {
    try {
      const doc = await getJSON("/api/loadtests");
      const runs = doc.runs || [];
      note.className = "panel muted";
      note.textContent = runs.length
        ? `${runs.length} run(s) kept in ${doc.folder}/, newest first; \`make compare A=... B=...\` compares two.`
        : doc.detail || "no load test kept yet: run `make load-test`";
      table.hidden = runs.length === 0;
      table.querySelector("tbody").replaceChildren(...runs.map(row));
      drawChart(runs);
      showCapacity(doc.last_capacity);
    } catch (err) {
      note.className = "panel unavailable";
      note.textContent = `load tests unavailable: ${err.message}`;
    }
  }

  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, EVERY_MS);
})();
