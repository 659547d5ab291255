/* Page wiring for the testbed dashboard: polling the JSON API, start/stop with the bearer token. */
(function () {
  "use strict";
  const C = window.TestbedCharts;
  const body = document.body;
  const POLL_MS = Number(body.dataset.pollMs) || 2000;
  const IDLE_POLL_MS = Math.max(POLL_MS * 5, 10000);
  const TOKEN_KEY = "testbed-dashboard-token";

  function flash(message, isError) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = isError ? "flash error" : "flash";
    box.hidden = false;
  }

  function num(v, digits) {
    return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "—";
  }

  function token() {
    let t = sessionStorage.getItem(TOKEN_KEY);
    if (!t) {
      t = window.prompt("Dashboard token (TESTBED_DASHBOARD_TOKEN):") || "";
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
    }
    return t;
  }

  async function post(url, payload) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
      body: JSON.stringify(payload || {}),
    });
    const data = await res.json().catch(() => ({}));
    if (res.status === 401 || res.status === 403) sessionStorage.removeItem(TOKEN_KEY);
    if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
    return data;
  }

  function setStatus(elem, status) {
    if (!elem) return;
    elem.className = `status status-${status}`;
    elem.textContent = status;
  }

  /* ---- run page: charts poll the charts API; 304 when nothing changed ---- */
  function renderCharts(container, charts) {
    const fixed = (container.dataset.fixed || "").split(";").filter(Boolean);
    fixed.forEach((pair) => C.figure(container, ...pair.split(":")));
    for (const chart of charts) C.draw(C.figure(container, chart.id, chart.title), chart);
    container.dataset.version = String(Number(container.dataset.version || 0) + 1);
  }

  function updateRunInfo(run, lines) {
    setStatus(document.getElementById("run-status"), run.status);
    const cards = document.getElementById("run-cards");
    const set = (field, text) => {
      const cell = cards && cards.querySelector(`[data-field="${field}"]`);
      if (cell) cell.textContent = text;
    };
    const acc = run.final_test_accuracy ?? run.last_test_accuracy;
    set("acc", num(acc, 4));
    set("steps", num(run.status === "running" ? run.last_step : run.iterations, 0));
    set("lines", String(lines));
    const stop = document.getElementById("stop-button");
    if (stop && run.status !== "running") stop.disabled = true;
  }

  function renderObserved(groups) {
    const tbody = document.querySelector("#observed tbody");
    if (!tbody) return;
    if (!groups.length) {
      tbody.innerHTML = '<tr><td colspan="4" class="empty">no per-device or per-link metrics in this run</td></tr>';
      return;
    }
    tbody.replaceChildren(...groups.map((g) => {
      const tr = document.createElement("tr");
      const tags = Object.entries(g.tags).map(([k, v]) => `${k}=${v}`).join(" ");
      const latest = Object.entries(g.latest).filter(([k]) => !["t", "step", "wall_s"].includes(k))
        .map(([k, v]) => `${k}=${C.fmt(v)}`).join("  ");
      [g.kind, tags, String(g.points), latest].forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 2) td.className = "num";
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  function pollRun(container) {
    let etag = null;
    const tick = async () => {
      let status = container.dataset.status;
      try {
        const res = await fetch(`${container.dataset.api}?points=600`, {
          cache: "no-store", headers: etag ? { "If-None-Match": etag } : {},
        });
        if (res.status === 200) {
          etag = res.headers.get("ETag");
          const data = await res.json();
          renderCharts(container, data.charts);
          updateRunInfo(data.run, data.lines);
          renderObserved(data.observed);
          status = container.dataset.status = data.run.status;
        }
      } catch (err) {
        console.warn("poll failed", err);
      }
      setTimeout(tick, status === "running" ? POLL_MS : IDLE_POLL_MS);
    };
    tick();
  }

  function initRun() {
    const container = document.getElementById("charts");
    renderCharts(container, []);
    pollRun(container);
    const stop = document.getElementById("stop-button");
    if (stop) {
      stop.addEventListener("click", async () => {
        try {
          await post(stop.dataset.url);
          flash("SIGINT sent; the run will record 'interrupted'.");
          stop.disabled = true;
        } catch (err) {
          flash(`stop refused: ${err.message}`, true);
        }
      });
    }
  }

  /* summary.json's time_to_accuracy: "0.9 12 s · 0.95 30 s · 0.98 —" (pages.tta_text) */
  function ttaText(entries) {
    if (!Array.isArray(entries) || !entries.length) return "—";
    return entries.map((e) => `${e.level} ${typeof e.train_s === "number" ? num(e.train_s, 0) + " s" : "—"}`)
      .join(" · ");
  }

  /* ---- runs page: live status cells, start form ---- */
  function updateRow(row, run) {
    setStatus(row.querySelector('[data-field="status"] .status'), run.status);
    const acc = run.final_test_accuracy ?? run.last_test_accuracy;
    row.querySelector('[data-field="acc"]').textContent = num(acc, 4);
    row.querySelector('[data-field="its"]').textContent = num(run.mean_it_s, 1);
    row.querySelector('[data-field="steps"]').textContent =
      num(run.status === "running" ? run.last_step : run.iterations, 0);
    row.querySelector('[data-field="tta"]').textContent = ttaText(run.time_to_accuracy);
  }

  async function pollRuns() {
    try {
      const data = await (await fetch("/api/runs", { cache: "no-store" })).json();
      const rows = new Map([...document.querySelectorAll("#runs-table tbody tr[data-key]")]
        .map((r) => [r.dataset.key, r]));
      if (data.runs.some((r) => !rows.has(r.key))) return window.location.reload();
      data.runs.forEach((r) => updateRow(rows.get(r.key), r));
      const live = data.runs.some((r) => r.status === "running");
      setTimeout(pollRuns, live ? POLL_MS * 2 : IDLE_POLL_MS);
    } catch (err) {
      setTimeout(pollRuns, IDLE_POLL_MS);
    }
  }

  function initStartForm(form) {
    const exp = form.elements.experiment, scale = form.elements.scale;
    const fillScales = () => {
      const opt = exp.selectedOptions[0];
      const scales = opt ? opt.dataset.scales.split(",") : [];
      scale.replaceChildren(...scales.map((s) => new Option(s, s, s === "smoke", s === "smoke")));
    };
    exp.addEventListener("change", fillScales);
    fillScales();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const data = await post(`/api/experiments/${encodeURIComponent(exp.value)}/start`, { scale: scale.value });
        flash(`started ${data.job.experiment} (pid ${data.job.pid}); it appears below once its run directory exists.`);
        setTimeout(() => window.location.reload(), 4000);
      } catch (err) {
        flash(`start refused: ${err.message}`, true);
      }
    });
  }

  /* sort by a header click (again: reverse); filter by text and status */
  function cellKey(row, col, numeric) {
    const cell = row.cells[col];
    const raw = cell.dataset.sort ?? cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    const v = parseFloat(raw.replace(/,/g, ""));
    return isFinite(v) ? v : -Infinity;
  }

  function sortRuns(table, th) {
    const col = th.cellIndex, numeric = th.dataset.type === "num";
    const desc = !th.classList.contains("sorted-desc");
    table.querySelectorAll("th").forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
    th.classList.add(desc ? "sorted-desc" : "sorted-asc");
    const rows = [...table.tBodies[0].querySelectorAll("tr[data-key]")];
    rows.sort((a, b) => {
      const x = cellKey(a, col, numeric), y = cellKey(b, col, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
    });
    table.tBodies[0].append(...rows);
  }

  function filterRuns(table) {
    const text = document.getElementById("runs-search").value.trim().toLowerCase();
    const status = document.getElementById("runs-status").value;
    let shown = 0;
    const rows = table.tBodies[0].querySelectorAll("tr[data-key]");
    rows.forEach((row) => {
      const st = row.querySelector('[data-field="status"]').textContent.trim();
      const ok = (!status || st === status) && (!text || row.textContent.toLowerCase().includes(text));
      row.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.getElementById("runs-shown").textContent = `${shown} of ${rows.length} shown`;
  }

  function initRunsTable() {
    const table = document.getElementById("runs-table");
    if (!table) return;
    table.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => sortRuns(table, th)));
    for (const id of ["runs-search", "runs-status"]) {
      document.getElementById(id).addEventListener("input", () => filterRuns(table));
    }
    filterRuns(table);
  }

  function initRuns() {
    const form = document.getElementById("start-form");
    if (form) initStartForm(form);
    initRunsTable();
    setTimeout(pollRuns, POLL_MS);
  }

  /* ---- compare page ---- */
  function fillCompareTable(runs) {
    const tbody = document.querySelector("#compare-table tbody");
    tbody.replaceChildren(...runs.map((r) => {
      const tr = document.createElement("tr");
      const cells = [r.key, r.status, r.mode || "—", num(r.final_test_accuracy ?? r.last_test_accuracy, 4),
                     num(r.best_test_accuracy, 4), num(r.mean_it_s, 1), num(r.wall_time_s, 0),
                     ttaText(r.time_to_accuracy)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i >= 3 && i < 7) td.className = "num";
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  function fillSpecDiff(runs, diff) {
    const table = document.getElementById("spec-diff");
    if (!table) return;
    const head = document.createElement("tr");
    for (const text of ["spec field", ...runs.map((r) => r.key)]) {
      const th = document.createElement("th");
      th.textContent = text;
      head.appendChild(th);
    }
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...diff.map((d) => {
      const tr = document.createElement("tr");
      for (const [i, text] of [d.path, ...d.values.map((v) => (v === null ? "—" : JSON.stringify(v)))].entries()) {
        const td = document.createElement("td");
        td.textContent = text;
        if (i) td.className = "value";
        tr.appendChild(td);
      }
      return tr;
    }));
    document.getElementById("spec-diff-note").textContent = diff.length
      ? `${diff.length} spec fields differ` : "the specs are the same";
  }

  async function pollCompare(container) {
    let live = false;
    try {
      const url = `${container.dataset.api}?runs=${encodeURIComponent(container.dataset.runs)}&points=600`;
      const res = await fetch(url, { cache: "no-store" });
      const data = await res.json();
      if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
      fillCompareTable(data.runs);
      fillSpecDiff(data.runs, data.spec_diff || []);
      for (const chart of data.charts) C.draw(C.figure(container, chart.id, chart.title), chart);
      live = data.runs.some((r) => r.status === "running");
    } catch (err) {
      flash(`compare failed: ${err.message}`, true);
      return;
    }
    if (live) setTimeout(() => pollCompare(container), POLL_MS * 2);
  }

  function initCompare() {
    const container = document.getElementById("charts");
    if (container) pollCompare(container);
  }

  const pages = { run: initRun, runs: initRuns, compare: initCompare };
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
