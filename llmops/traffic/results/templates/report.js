/* Draws the charts a load-test report embeds: every chart is a spec in #report-data, built in Python. */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#db2777", "#65a30d"];

  // Dashed lines: a vertical one at the spec's mark_x (the sweep's knee, the capacity answer) and a
  // horizontal one at mark_y (an SLO's limit), each with its label.
  function dashed(ctx, color, from, to) {
    ctx.strokeStyle = color;
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.font = "12px system-ui, sans-serif";
  }
  const markLine = {
    id: "markLine",
    afterDatasetsDraw(chart, _args, opts) {
      const { top, bottom, left, right } = chart.chartArea;
      const ctx = chart.ctx;
      ctx.save();
      if (opts.x !== null && opts.x !== undefined) {
        const x = chart.scales.x.getPixelForValue(opts.x);
        dashed(ctx, "#b91c1c", [x, top], [x, bottom]);
        const width = ctx.measureText(opts.label || "").width;
        ctx.fillText(opts.label || "", x + 4 + width > right ? x - 4 - width : x + 4, top + 12);
      }
      if (opts.y !== null && opts.y !== undefined) {
        const y = chart.scales.y.getPixelForValue(opts.y);
        dashed(ctx, "#92400e", [left, y], [right, y]);
        ctx.fillText(opts.yLabel || "", left + 4, y - 4);
      }
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
        // The y axis reaches an SLO line above every point, so the line is always in view.
        scales: { x: axis(spec.x, spec.stacked, "category"),
          y: { ...axis(spec.y, spec.stacked, "linear"), suggestedMax: spec.mark_y == null ? undefined : spec.mark_y * 1.1 } },
        plugins: {
          legend: { display: spec.series.length > 1, labels: { boxWidth: 12 } },
          markLine: { x: spec.mark_x, label: spec.mark_label, y: spec.mark_y, yLabel: spec.mark_y_label },
        },
      },
      plugins: [markLine],
    });
  }

  for (const spec of data.charts || []) draw(spec);
  document.body.dataset.chartsDrawn = String((data.charts || []).length);
})();
