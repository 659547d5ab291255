/* Small SVG line charts for the testbed dashboard: axes, grid, lines, legend, hover readout. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const M = { l: 58, r: 16, t: 10, b: 36 };
  const H = 240;
  const MARKERS_UP_TO = 40;

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  }

  function ticks(lo, hi, count) {
    const step = niceStep(hi - lo, count);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function fmt(v) {
    const a = Math.abs(v);
    const units = [[1e9, "G"], [1e6, "M"], [1e4, "k"]];
    for (const [size, suffix] of units) {
      if (a >= size) return String(+(v / size).toPrecision(3)) + suffix;
    }
    if (a === 0) return "0";
    if (a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }

  function extent(series, key) {
    let lo = Infinity, hi = -Infinity;
    for (const s of series) {
      for (const v of s[key]) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return [lo, hi];
  }

  function widen(range, frac) {
    const [lo, hi] = range;
    if (lo === hi) {
      const d = Math.abs(lo) * 0.05 || 0.5;
      return [lo - d, hi + d];
    }
    const d = (hi - lo) * frac;
    return [lo - d, hi + d];
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function scales(series, W) {
    const [x0, x1] = widen(extent(series, "x"), 0);
    const [y0, y1] = widen(extent(series, "y"), 0.05);
    return {
      x0, x1, y0, y1,
      sx: (v) => M.l + ((v - x0) / (x1 - x0)) * (W - M.l - M.r),
      sy: (v) => H - M.b - ((v - y0) / (y1 - y0)) * (H - M.t - M.b),
    };
  }

  function drawAxes(svg, s, W, chart) {
    const grid = el("g", { class: "grid" }, svg);
    const axis = el("g", { class: "axis" }, svg);
    for (const v of ticks(s.y0, s.y1, 5)) {
      const y = s.sy(v);
      el("line", { x1: M.l, x2: W - M.r, y1: y, y2: y }, grid);
      el("text", { x: M.l - 6, y: y + 4, "text-anchor": "end" }, axis).textContent = fmt(v);
    }
    for (const v of ticks(s.x0, s.x1, Math.max(3, Math.floor(W / 110)))) {
      const x = s.sx(v);
      el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b }, grid);
      el("text", { x: x, y: H - M.b + 15, "text-anchor": "middle" }, axis).textContent = fmt(v);
    }
    el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, stroke: "#cbd5e1" }, svg);
    el("text", { class: "axis-label", x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle" }, svg)
      .textContent = chart.x_label;
    el("text", { class: "axis-label", x: -(H - M.b + M.t) / 2, y: 13, "text-anchor": "middle",
                 transform: "rotate(-90)" }, svg).textContent = chart.y_label;
  }

  function drawSeries(svg, s, chart) {
    chart.series.forEach((ser, i) => {
      const color = PALETTE[i % PALETTE.length];
      const g = el("g", { class: "series", "data-name": ser.name, "data-points": ser.x.length }, svg);
      el("title", {}, g).textContent = `${ser.name}: ${ser.total} points`;
      const pts = ser.x.map((x, j) => `${s.sx(x).toFixed(1)},${s.sy(ser.y[j]).toFixed(1)}`);
      el("polyline", { points: pts.join(" "), stroke: color }, g);
      if (ser.x.length <= MARKERS_UP_TO) {
        ser.x.forEach((x, j) => el("circle", { cx: s.sx(x), cy: s.sy(ser.y[j]), r: 2.6, fill: color }, g));
      }
    });
  }

  function nearest(xs, x) {
    let lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid; else hi = mid;
    }
    return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
  }

  function attachHover(svg, s, W, chart) {
    const hover = el("g", { class: "hover", visibility: "hidden" }, svg);
    const line = el("line", { y1: M.t, y2: H - M.b }, hover);
    const text = el("text", { y: M.t + 12 }, hover);
    svg.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * W;
      const x = s.x0 + ((px - M.l) / (W - M.l - M.r)) * (s.x1 - s.x0);
      const parts = chart.series.filter((ser) => ser.x.length).map((ser) => {
        const j = nearest(ser.x, x);
        return `${ser.name}: ${fmt(ser.y[j])}`;
      });
      line.setAttribute("x1", px);
      line.setAttribute("x2", px);
      text.setAttribute("x", px > W / 2 ? px - 6 : px + 6);
      text.setAttribute("text-anchor", px > W / 2 ? "end" : "start");
      text.textContent = `${chart.x_label.split(" ")[0]} ${fmt(x)} · ${parts.join(" · ")}`;
      hover.setAttribute("visibility", "visible");
    });
    svg.addEventListener("mouseleave", () => hover.setAttribute("visibility", "hidden"));
  }

  function drawLegend(legend, chart) {
    legend.textContent = "";
    chart.series.forEach((ser, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = PALETTE[i % PALETTE.length];
      item.append(swatch, `${ser.name} (${ser.total})`);
      legend.appendChild(item);
    });
  }

  /** A chart's <figure>: caption, legend and plot area; created once, redrawn in place. */
  function figure(container, id, title) {
    let fig = document.getElementById(`chart-${id}`);
    if (fig) return fig;
    fig = document.createElement("figure");
    fig.className = "chart";
    fig.id = `chart-${id}`;
    fig.dataset.points = "0";
    fig.innerHTML = '<figcaption><span></span><small></small></figcaption><div class="legend"></div><div class="plot"></div>';
    fig.querySelector("figcaption span").textContent = title;
    container.appendChild(fig);
    placeholder(fig, "waiting for data…");
    return fig;
  }

  function placeholder(fig, message) {
    const plot = fig.querySelector(".plot");
    plot.innerHTML = '<div class="nodata"></div>';
    plot.firstChild.textContent = message;
  }

  /** Draw `chart` ({title, x_label, y_label, series: [{name, x, y, total}], points}) into `fig`. */
  function draw(fig, chart) {
    const series = chart.series.filter((ser) => ser.x.length);
    fig.querySelector("figcaption span").textContent = chart.title;
    const total = series.reduce((n, ser) => n + ser.total, 0);
    fig.querySelector("figcaption small").textContent =
      chart.points < total ? `${chart.points} of ${total} points drawn` : `${total} points`;
    fig.dataset.points = String(chart.points);
    fig.dataset.series = String(series.length);
    drawLegend(fig.querySelector(".legend"), { series });
    if (!series.length) return placeholder(fig, "no data yet");
    const plot = fig.querySelector(".plot");
    const W = Math.max(320, Math.round(plot.clientWidth || 560));
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
                            "aria-label": chart.title });
    const s = scales(series, W);
    drawAxes(svg, s, W, chart);
    drawSeries(svg, s, { ...chart, series });
    attachHover(svg, s, W, { ...chart, series });
    plot.replaceChildren(svg);
  }

  window.TestbedCharts = { draw, figure, placeholder, fmt };
})();
