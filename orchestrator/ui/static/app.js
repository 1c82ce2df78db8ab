/* The dashboard's browser half: local times and ticking ages, live updates over server-sent
 * events, and the job page's charts (uPlot). The pages are complete without it (the server
 * renders every table); this only keeps them current. Data is only ever inserted as text
 * (textContent / createTextNode), never as HTML. The markup it writes is the one the server
 * renders (the ids and classes of docs/ui.md). */
"use strict";

(() => {
  const body = document.body;
  const page = body.dataset.page || "";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // ---- building elements (text only) -------------------------------------------------------

  /** An element with attributes and children (strings become text nodes; null is skipped). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const text = (value) => (value === null || value === undefined ? "" : String(value));
  const orDash = (value) => (value === null || value === undefined ? "-" : String(value));

  // ---- times: the browser's time zone, ages ticking every second ---------------------------

  const pad = (n) => String(n).padStart(2, "0");
  const zones = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" });
  const zoneName = (date) => {
    const part = zones.formatToParts(date).find((p) => p.type === "timeZoneName");
    return part ? part.value : "";
  };

  /** ``YYYY-MM-DD HH:MM:SS ZONE`` in the browser's time zone. */
  function formatTime(date) {
    const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    return `${day} ${clock} ${zoneName(date)}`.trim();
  }

  /** The server's ``format_age``: 4s, 3m12s, 2h05m, 3d04h; "-" without a time. */
  function formatAge(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "-";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
  }

  function showTime(node) {
    const when = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    if (node.classList.contains("age")) {
      node.textContent = formatAge((Date.now() - when.getTime()) / 1000);
      node.title = formatTime(when);
    } else {
      node.textContent = formatTime(when);
      node.title = when.toISOString();
    }
  }

  const showTimes = (root = document) => $$("time[datetime]", root).forEach(showTime);
  const timeEl = (iso, cls) => (iso ? el("time", { datetime: iso, class: cls }, iso) : "-");

  // ---- the connection banner ----------------------------------------------------------------

  const banner = $("#connection");
  function connection(state, message) {
    if (!banner) return;
    banner.className = state ? `connection ${state}` : "connection";
    banner.textContent = state ? message : "";
    banner.hidden = !state;
  }

  // ---- server-sent events ---------------------------------------------------------------------

  /** Opens ``/events`` for this page; the browser resumes with Last-Event-ID on its own. When
   * it gives up (an HTTP error answer closes an EventSource for good) we reopen after 2 s from
   * the last id we saw. */
  function live(params, handlers) {
    let lastId = body.dataset.streamId || "";
    let source = null;
    const open = () => {
      const query = new URLSearchParams(params);
      if (lastId) query.set("after", lastId);
      source = new EventSource(`/events?${query}`);
      source.onopen = () => connection(null);
      source.onerror = () => {
        connection("lost", "Connection lost — reconnecting…");
        if (source.readyState === EventSource.CLOSED) setTimeout(open, 2000);
      };
      const listen = (name, handle) => source.addEventListener(name, (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
        connection(null);
        handle(event.data ? JSON.parse(event.data) : {});
      });
      for (const [name, handle] of Object.entries(handlers)) listen(name, handle);
      listen("ok", () => {});
      listen("reset", () => window.location.reload());
      source.addEventListener("trouble", (event) => {
        let message = "A server is unreachable";
        try { message = JSON.parse(event.data).message || message; } catch (_) { /* text */ }
        connection("trouble", message);
      });
    };
    open();
    window.addEventListener("pagehide", () => source && source.close());
  }

  // ---- shared cells -----------------------------------------------------------------------------

  const statusBadge = (status) => el("span", { class: `status status-${status}` }, status);
  /** ``kind: message`` (the server's ``error_text``). */
  const errorText = (error) => {
    if (!error) return "";
    const code = error.code || "error";
    return error.message ? `${code}: ${error.message}` : String(code);
  };

  /** Replace a table's body rows (the server renders the header). */
  function fillBody(table, rows) {
    let tbody = $("tbody", table);
    if (!tbody) tbody = table.appendChild(el("tbody"));
    tbody.replaceChildren(...rows);
  }

  // ---- jobs page -------------------------------------------------------------------------------

  function jobRow(job) {
    const done = job.round;
    return el("tr", { id: `job-${job.id}`, "data-job-id": job.id, "data-version": job.version,
      "data-status": job.status },
    el("td", { class: "c-id" }, el("a", { href: `/jobs/${encodeURIComponent(job.id)}` }, job.id)),
    el("td", { class: "c-status" }, statusBadge(job.status), " ", el("small", { class: "phase" }, job.phase)),
    el("td", { class: "c-workload" }, job.workload),
    el("td", { class: "c-progress" }, el("progress", { value: done, max: job.rounds || 1 }), " ",
      el("span", {}, `${done}/${job.rounds}`)),
    el("td", { class: "c-alive" }, `${job.participants_alive}/${job.participants}`),
    el("td", { class: "c-age" }, timeEl(job.created_at, "age")),
    el("td", { class: "c-error" }, errorText(job.error)));
  }

  function jobsPage() {
    const query = new URLSearchParams(window.location.search);
    const wanted = query.get("status") || "";
    const onFirstPage = !query.get("cursor");
    const table = $("#jobs");
    const upsert = (job) => {
      const row = document.getElementById(`job-${job.id}`);
      if (row && Number(row.dataset.version) >= job.version) return; // never go back in time
      if (wanted && job.status !== wanted) { if (row) row.remove(); return; }
      const fresh = jobRow(job);
      showTimes(fresh);
      if (row) { row.replaceWith(fresh); return; }
      if (!onFirstPage) return;
      if (!table) { window.location.reload(); return; } // the empty page has no table to fill
      let tbody = $("tbody", table);
      if (!tbody) tbody = table.appendChild(el("tbody"));
      // Newest first: before the first row created earlier. A job older than every row of
      // the page belongs to a later page (unless the page is empty).
      const created = Date.parse(job.created_at);
      const later = $$("tr", tbody).find((tr) => {
        const time = $("td.c-age time", tr);
        return time && Date.parse(time.getAttribute("datetime")) <= created;
      });
      if (later) tbody.insertBefore(fresh, later);
      else if (!tbody.rows.length) tbody.append(fresh);
      else return;
      table.hidden = false;
      const none = $("#no-jobs");
      if (none) none.hidden = true;
    };
    const params = { view: "jobs" };
    for (const name of ["status", "workload"]) if (query.get(name)) params[name] = query.get(name);
    const search = new URLSearchParams(params);
    for (const label of query.getAll("label")) if (label) search.append("label", label);
    live(search, { job: upsert });
  }

  // ---- job page ----------------------------------------------------------------------------------

  const setText = (selector, value) => {
    const node = $(selector);
    if (node) node.textContent = text(value);
  };

  function renderSummary(job) {
    const status = $("#status");
    if (status) {
      status.textContent = job.status;
      status.className = status.className.replace(/\bstatus-\S+/g, "").trim();
      if (status.classList.contains("status")) status.classList.add(`status-${job.status}`);
    }
    setText("#phase", job.phase);
    setText("#round", `${job.round}/${job.rounds}`);
    setText("#error", errorText(job.error));
    for (const field of ["created", "started", "finished"]) {
      const slot = $(`#${field}`);
      if (slot) slot.replaceChildren(timeEl(job[`${field}_at`]));
    }
  }

  function renderTimeline(history) {
    const list = $("#timeline");
    if (!list) return;
    list.replaceChildren(...(history || []).map((h) => el("li", {},
      timeEl(h.at), " ", el("span", { class: "from" }, h.from || "submitted"), " → ",
      el("span", { class: "to" }, h.to),
      h.rule ? [" ", el("span", { class: "rule" }, h.rule)] : null,
      h.reason ? [" ", el("span", { class: "reason" }, h.reason)] : null)));
  }

  function renderParticipants(job) {
    const table = $("#participants");
    if (!table) return;
    fillBody(table, (job.participants || []).map((p) => el("tr", { "data-participant": p.id },
      el("td", { class: "p-id" }, p.id), el("td", { class: "p-role" }, p.role),
      el("td", { class: "p-state" }, p.state,
        p.error ? [" ", el("small", { class: "error" }, errorText(p.error))] : null),
      el("td", { class: "p-round" }, `${p.round}/${p.rounds}`),
      el("td", { class: "p-heartbeat" }, timeEl(p.last_seen, "age")),
      el("td", { class: "p-worker" }, p.worker))));
  }

  /** 1536 → "1.5 KiB" (the server's human size). */
  function humanSize(bytes) {
    if (bytes === null || bytes === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function renderCheckpoints(job) {
    const table = $("#checkpoints");
    if (!table) return;
    fillBody(table, (job.checkpoints || []).map((k, index) => el("tr",
      { "data-round": k.round, "data-participant": k.participant },
      el("td", { class: "k-round" }, k.round), el("td", { class: "k-participant" }, k.participant),
      el("td", { class: "k-size", "data-bytes": k.size }, humanSize(k.size)),
      el("td", { class: "k-sha256" }, el("code", {}, k.sha256)),
      el("td", { class: "k-final" }, k.final ? "final" : ""),
      el("td", { class: "k-download" }, el("a", { class: "download",
        href: `/jobs/${encodeURIComponent(job.id)}/checkpoints/${index}` }, "download")))));
    const none = $("#no-checkpoints");
    if (none) none.hidden = Boolean(job.checkpoints && job.checkpoints.length);
  }

  function renderEvents(notes) {
    const pre = $("#events");
    if (!pre || !notes) return;
    const or = (value, fallback) => (value === null || value === undefined || value === "" ? fallback : value);
    pre.textContent = notes.map((n) => {
      const when = new Date(n.at);
      const at = Number.isNaN(when.getTime()) ? or(n.at, "-") : formatTime(when);
      return [at, or(n.status, "-"), or(n.phase, "-"), `round ${or(n.round, "-")}`, or(n.reason, "")]
        .join("  ").trimEnd();
    }).join("\n");
  }

  function renderLogs(logs) {
    const section = $("#logs");
    if (!section || !logs) return;
    for (const [pid, lines] of Object.entries(logs)) {
      let pre = $$("pre.log", section).find((node) => node.dataset.participant === pid);
      if (!pre) {
        pre = el("pre", { class: "log", "data-participant": pid });
        section.append(el("details", {}, el("summary", {}, pid), pre));
      }
      pre.textContent = (lines || []).join("\n");
    }
    const none = $("p.empty", section);
    if (none) none.hidden = Object.keys(logs).length > 0;
  }

  function renderDetail(job) {
    renderSummary(job);
    renderTimeline(job.history);
    renderParticipants(job);
    renderCheckpoints(job);
    renderEvents(job.events);
    renderLogs(job.logs);
    const cancel = $("#cancel");
    if (cancel && (!job.can_cancel || job.status.startsWith("FINISHED_"))) cancel.remove();
    showTimes();
    drawCharts(job.charts);
  }

  // ---- charts ------------------------------------------------------------------------------------

  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
    "#4b5563", "#65a30d", "#9333ea"];
  const plots = new Map(); // "name, side, participants" -> {div, holder, plot}, in page order

  const chartWidth = (holder) => Math.max(240, holder.clientWidth || 480);
  const integerTicks = (u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : ""));
  /** The server's ``format_metric``: integers as they are, others to 4 significant digits. */
  const metricText = (u, v) => {
    if (v === null || v === undefined) return "–";
    return Number.isInteger(v) ? String(v) : String(Number(Number(v).toPrecision(4)));
  };

  function newPlot(metric, data, holder, width) {
    const series = [{ label: "round" }, ...metric.series.map((s, i) => ({
      label: s.participant, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
      points: { show: true, size: 5 }, value: metricText,
    }))];
    return new uPlot({
      width, height: 200, series,
      scales: { x: { time: false } },
      axes: [{ label: "round", values: integerTicks, incrs: [1, 2, 5, 10, 20, 50, 100] },
        { size: 60 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, data, holder);
  }

  /** The values the plot holds (not the ones it was given): what tests read as data-points. */
  const drawnPoints = (plot) => plot.data.slice(1)
    .reduce((sum, values) => sum + values.filter((v) => v !== null && v !== undefined).length, 0);

  function drawCharts(charts) {
    const box = $("#charts");
    if (!box || !charts || typeof uPlot === "undefined") return;
    const rounds = charts.rounds || [];
    const metrics = charts.metrics || [];
    const keys = metrics.map((m) => JSON.stringify([m.name, m.side, m.series.map((s) => s.participant)]));
    // Same charts with the same lines as drawn: only their data changes. Else draw anew.
    if (keys.join("\n") !== Array.from(plots.keys()).join("\n") || !box.firstChild) {
      for (const entry of plots.values()) entry.plot.destroy();
      plots.clear();
      box.replaceChildren();
      if (!metrics.length) box.append(el("p", { class: "muted", id: "no-metrics" }, "No metrics yet."));
    }
    metrics.forEach((metric, i) => {
      const data = [rounds, ...metric.series.map((s) => s.values)];
      let entry = plots.get(keys[i]);
      if (!entry) {
        const holder = el("div", { class: "plot" });
        const div = el("div", { class: "chart", "data-metric": metric.name, "data-side": metric.side },
          el("h3", {}, `${metric.name} — ${metric.side}`), holder);
        box.append(div);
        entry = { div, holder, plot: newPlot(metric, data, holder, chartWidth(holder)) };
        plots.set(keys[i], entry);
      } else {
        entry.plot.setData(data);
      }
      entry.div.dataset.points = String(drawnPoints(entry.plot));
    });
  }

  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      for (const { plot, holder } of plots.values()) plot.setSize({ width: chartWidth(holder), height: 200 });
    }, 150);
  });

  function jobPage() {
    const script = $("#job-data");
    let job = null;
    try { job = script ? JSON.parse(script.textContent) : null; } catch (_) { job = null; }
    if (job) {
      renderEvents(job.events); // (the server wrote their times in UTC: show them local)
      drawCharts(job.charts);
    }
    // Without the job's data (the job does not exist yet, or a server was unreachable), the
    // page loads itself again once the job has news: a URL opened before the submission, as
    // `orchestrator demo --ui` prints it, turns into the job's page.
    const path = window.location.pathname.split("/").filter(Boolean);
    const fromPath = path.length === 2 && path[0] === "jobs" ? decodeURIComponent(path[1]) : "";
    const id = job ? job.id : fromPath;
    if (!id) return;
    live({ view: "job", job: id }, { detail: job ? renderDetail : () => window.location.reload() });
  }

  // ---- workers page ------------------------------------------------------------------------------

  function workersPage() {
    live({ view: "workers" }, {
      workers: ({ workers }) => {
        const table = $("#workers");
        if (!table) { if (workers && workers.length) window.location.reload(); return; }
        fillBody(table, (workers || []).map((w) => el("tr", { "data-worker": w.name },
          el("td", { class: "w-name" }, w.name), el("td", { class: "w-role" }, w.role),
          el("td", { class: "w-capacity" }, orDash(w.capacity)),
          el("td", { class: "w-running" }, `${orDash(w.running)}/${orDash(w.capacity)}`),
          el("td", { class: "w-participants" }, (w.participants || []).join(", ")),
          el("td", { class: "w-workloads" }, (w.workloads || []).join(", ")),
          el("td", { class: "w-heartbeat" }, timeEl(w.last_heartbeat, "age")),
          el("td", { class: "w-host" }, w.host || "-"))));
        const none = $("#no-workers");
        if (none) none.hidden = Boolean(workers && workers.length);
        showTimes(table);
      },
    });
  }

  // ---- start ---------------------------------------------------------------------------------------

  showTimes();
  setInterval(() => $$("time.age[datetime]").forEach(showTime), 1000);
  if (typeof EventSource === "undefined") return;
  if (page === "jobs") jobsPage();
  else if (page === "job") jobPage();
  else if (page === "workers") workersPage();
})();
