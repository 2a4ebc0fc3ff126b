/* Draws the charts a load-test report embeds: every chart is a spec in #report-data, built in Python. */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#db2777", "#65a30d"];

  // A vertical dashed line at the spec's mark_x (the sweep's knee), with its label.
  const markLine = {
    id: "markLine",
    afterDatasetsDraw(chart, _args, opts) {
      if (opts.x === null || opts.x === undefined) return;
      const x = chart.scales.x.getPixelForValue(opts.x);
      const { top, bottom } = chart.chartArea;
      const ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#b91c1c";
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#b91c1c";
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillText(opts.label || "", x + 4, top + 12);
      ctx.restore();
    },
  };

  function dataset(spec, s, i) {
    const color = s.color || PALETTE[i % PALETTE.length];
    const points = spec.x.type === "linear" ? s.data.map(([x, y]) => ({ x, y })) : s.data;
    return {
      label: s.name, data: points, borderColor: color, backgroundColor: spec.kind === "line" ? color : color + "cc",
      borderWidth: spec.kind === "line" ? 2 : 1, pointRadius: spec.kind === "line" && spec.x.type === "linear" ? 3 : 0,
      borderDash: s.dashed ? [6, 4] : undefined, spanGaps: true, tension: 0, stack: spec.stacked ? "all" : s.stack,
    };
  }

  function draw(spec) {
    const canvas = document.querySelector(`figure[data-chart="${spec.id}"] canvas`);
    if (!canvas) return;
    const axis = (a, stacked, fallback) => ({
      type: a.type || fallback, stacked: !!stacked, beginAtZero: true,
      title: { display: !!a.title, text: a.title || "" }, ticks: { maxTicksLimit: 10 },
    });
    new Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels || undefined, datasets: spec.series.map((s, i) => dataset(spec, s, i)) },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: spec.x.type === "linear" ? "nearest" : "index", intersect: false },
        scales: { x: axis(spec.x, spec.stacked, "category"), y: axis(spec.y, spec.stacked, "linear") },
        plugins: {
          legend: { display: spec.series.length > 1, labels: { boxWidth: 12 } },
          markLine: { x: spec.mark_x, label: spec.mark_label },
        },
      },
      plugins: [markLine],
    });
  }

  for (const spec of data.charts || []) draw(spec);
  document.body.dataset.chartsDrawn = String((data.charts || []).length);
})();
