/**
 * jobpixel dashboard charts. Runs under CSP script-src 'self': no inline script anywhere.
 * Reads the chart data from the JSON data island <script type="application/json" id="jp-charts">
 * (a list of {id, kind: "line"|"bar", labels, series: [{label, data, dashed}]}) and draws each
 * on the <canvas id=…> with Chart.js (vendored, served by this server). Every chart has an HTML
 * table beside it with the same numbers, so the canvas is decoration for sighted users.
 */
(function () {
  "use strict";
  /** @type {HTMLElement|null} */
  var island = document.getElementById("jp-charts");
  if (!island || typeof window.Chart !== "function") return;
  /** @type {Array<{id: string, kind: string, labels: string[], series: Array<{label: string, data: Array<number|null>, dashed?: boolean}>}>} */
  var charts = JSON.parse(island.textContent || "[]");
  var COLOURS = ["#1d4ed8", "#6b7280", "#047857"];
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  charts.forEach(function (spec) {
    var canvas = document.getElementById(spec.id);
    if (!canvas) return;
    var datasets = spec.series.map(function (s, i) {
      return {
        label: s.label,
        data: s.data,
        borderColor: COLOURS[i % COLOURS.length],
        backgroundColor: spec.kind === "bar" ? COLOURS[i % COLOURS.length] : "transparent",
        borderDash: s.dashed ? [6, 4] : [],
        borderWidth: 2,
        pointRadius: spec.kind === "line" ? 2.5 : undefined,
        spanGaps: false,
        tension: 0.2
      };
    });
    new window.Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: reduceMotion ? false : { duration: 300 },
        maintainAspectRatio: false,
        responsive: true,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: spec.series.length > 1 } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 8 } } }
      }
    });
  });
})();
