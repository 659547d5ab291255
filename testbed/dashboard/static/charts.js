/* Line charts for the testbed dashboard on uPlot (vendor/uplot, pinned 1.6.32): drag to zoom
   (double-click resets), cursors synced across charts with the same x axis, click a legend entry
   to hide or show its series, log y scale per chart. The server downsamples; the series of a
   chart may have different x values, joined here with gaps spanned. */
(function () {
  "use strict";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const H = 240;
  const MARKERS_UP_TO = 40;

  function fmt(v) {
    if (v == null || !isFinite(v)) return "—";
    const a = Math.abs(v);
    const units = [[1e9, "G"], [1e6, "M"], [1e4, "k"]];
    for (const [size, suffix] of units) {
      if (a >= size) return String(+(v / size).toPrecision(3)) + suffix;
    }
    if (a === 0) return "0";
    if (a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }

  /** A chart's <figure>: caption (with a log-y switch), plot area; created once, redrawn in place. */
  function figure(container, id, title) {
    let fig = document.getElementById(`chart-${id}`);
    if (fig) return fig;
    fig = document.createElement("figure");
    fig.className = "chart";
    fig.id = `chart-${id}`;
    fig.dataset.points = "0";
    fig.innerHTML = '<figcaption><span></span><small></small>' +
      '<label class="logy"><input type="checkbox"> log y</label></figcaption><div class="plot"></div>';
    fig.querySelector("figcaption span").textContent = title;
    fig.querySelector(".logy input").addEventListener("change", () => fig._chart && draw(fig, fig._chart));
    fig.querySelector(".plot").addEventListener("dblclick", () => { fig.dataset.zoomed = "no"; });
    container.appendChild(fig);
    placeholder(fig, "waiting for data…");
    return fig;
  }

  function placeholder(fig, message) {
    if (fig._uplot) { fig._uplot.destroy(); fig._uplot = null; }
    const plot = fig.querySelector(".plot");
    plot.innerHTML = '<div class="nodata"></div>';
    plot.firstChild.textContent = message;
  }

  function logSwitch(fig, chart, positive) {
    const box = fig.querySelector(".logy input");
    if (fig.dataset.logInit !== "yes") {  // first data: the server's suggestion (e.g. loss)
      box.checked = Boolean(chart.log_y);
      fig.dataset.logInit = "yes";
    }
    box.disabled = !positive;  // a log scale needs every value > 0
    return box.checked && positive;
  }

  function options(fig, chart, series, log, width) {
    return {
      width, height: H,
      scales: { x: { time: false }, y: { distr: log ? 3 : 1 } },
      axes: [
        { label: chart.x_label, values: (u, vals) => vals.map(fmt) },
        { label: chart.y_label, values: (u, vals) => vals.map(fmt), size: 64 },
      ],
      series: [
        { label: chart.x_label.split(" ")[0], value: (u, v) => fmt(v) },
        ...series.map((s, i) => ({
          label: `${s.name} (${s.total})`, stroke: PALETTE[i % PALETTE.length], width: 1.5,
          spanGaps: true, value: (u, v) => fmt(v), points: { show: s.x.length <= MARKERS_UP_TO },
        })),
      ],
      cursor: { sync: { key: `x:${chart.x_label}`, setSeries: false }, drag: { x: true, y: false } },
      hooks: { setSelect: [(u) => { if (u.select.width > 0) fig.dataset.zoomed = "yes"; }] },
    };
  }

  /** Draw `chart` ({id, title, x_label, y_label, log_y, series: [{name, x, y, total}], points}). */
  function draw(fig, chart) {
    fig._chart = chart;
    const series = chart.series.filter((ser) => ser.x.length);
    fig.querySelector("figcaption span").textContent = chart.title;
    const total = series.reduce((n, ser) => n + ser.total, 0);
    fig.querySelector("figcaption small").textContent =
      chart.points < total ? `${chart.points} of ${total} points drawn` : `${total} points`;
    fig.dataset.points = String(chart.points);
    fig.dataset.series = String(series.length);
    if (!series.length) return placeholder(fig, "no data yet");
    const positive = series.every((s) => s.y.every((v) => v > 0));
    const log = logSwitch(fig, chart, positive);
    const data = window.uPlot.join(series.map((s) => [s.x, s.y]));
    const shape = JSON.stringify([series.map((s) => s.name), log]);
    const u = fig._uplot;
    if (u && fig.dataset.shape === shape) {
      u.setData(data, fig.dataset.zoomed !== "yes");  // new points keep a zoom the user chose
      return;
    }
    const plot = fig.querySelector(".plot");
    if (u) u.destroy();
    plot.textContent = "";
    const width = Math.max(320, Math.round(plot.clientWidth || 560));
    fig._uplot = new window.uPlot(options(fig, chart, series, log, width), data, plot);
    fig.dataset.shape = shape;
    fig.dataset.zoomed = "no";
  }

  window.addEventListener("resize", () => {
    for (const fig of document.querySelectorAll("figure.chart")) {
      const plot = fig.querySelector(".plot");
      if (fig._uplot && plot.clientWidth) fig._uplot.setSize({ width: plot.clientWidth, height: H });
    }
  });

  window.TestbedCharts = { draw, figure, placeholder, fmt };
})();
