// piswarm dashboard. Plain script, no library. Everything that comes from the network is put in
// the page with textContent or as SVG attributes, never as HTML.
"use strict";
(function () {
  const T = JSON.parse(document.getElementById("strings").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_ROWS = 1000;

  let currentRun = null;   // id of the run being served
  let viewRun = null;      // id of the run shown; null follows the current run
  let oldestSeq = null;    // cursor for "older"
  let newestSeq = null;
  let lastStatus = null;

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function showMessage(text) {
    const m = $("message");
    m.textContent = T.error + ": " + text;
    m.hidden = false;
    clearTimeout(showMessage.timer);
    showMessage.timer = setTimeout(() => { m.hidden = true; }, 6000);
  }

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      throw new Error((data && data.error) || res.status + " " + res.statusText);
    }
    return data;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  function fmtInt(n) {
    if (n === null || n === undefined) return "–";
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }
  function fmtSci(x) { return x === null || x === undefined ? "–" : Number(x).toExponential(3); }
  function fmtPi(x) { return x === null || x === undefined ? "–" : Number(x).toFixed(15); }
  function fmtRate(x) {
    if (!x) return "–";
    const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [v, u] of units) if (x >= v) return (x / v).toFixed(2) + " " + u;
    return x.toFixed(0);
  }

  // ---- status and final result ----
  function renderServer(s) {
    const state = $("server-state");
    state.dataset.state = s.running ? "running" : "stopped";
    state.textContent = s.running ? T.running : T.stopped;
    setText("server-listen", s.listen);
    setText("server-uptime", s.running ? fmtDuration(s.uptime_s) : "–");
    setText("server-clients", s.clients);
    setText("server-local", s.local_clients);
    $("start").disabled = s.running;
    $("stop").disabled = !s.running;
    $("create-clients").disabled = !s.running;
  }

  function renderFinal(f) {
    setText("f-workers", f.workers);
    setText("f-terms", fmtInt(f.terms));
    setText("f-intervals", fmtInt(f.intervals));
    setText("f-even", f.even_sum);
    setText("f-odd", f.odd_sum);
    setText("f-pi", fmtPi(f.pi));
    setText("f-error", fmtSci(f.pi_error));
    setText("f-digits", f.correct_digits);
    setText("f-corrected", fmtPi(f.pi_corrected));
  }

  function renderRunStatus(r) {
    setText("view-run", r.id);
    setText("run-state", r.state === "complete" ? T.complete : r.state === "running" ? T.running : T.stopped);
    renderFinal({
      workers: r.workers, terms: r.done_terms, intervals: r.intervals_done,
      even_sum: r.even_sum, odd_sum: r.odd_sum, pi: r.pi, pi_error: r.pi_error,
      correct_digits: r.correct_digits, pi_corrected: r.pi_corrected,
    });
    const wrap = $("progress-wrap");
    if (r.terms) {
      wrap.hidden = false;
      const frac = Math.min(1, Number(r.done_terms) / r.terms);
      $("progress").value = frac;
      let text = (100 * frac).toFixed(1) + "%  ·  " + T.rate + " " + fmtRate(r.rate_terms_per_s) + " terms/s";
      if (!r.complete) text += "  ·  " + T.eta + " " + fmtDuration(r.eta_s);
      $("progress-text").textContent = text;
    } else {
      wrap.hidden = true;
    }
  }

  function renderStatus(st) {
    lastStatus = st;
    renderServer(st.server);
    if (currentRun !== st.run.id) {
      const first = currentRun === null;
      currentRun = st.run.id;
      if (viewRun === null && !first) loadHistory();
      loadRuns();
    }
    if (viewRun === null) renderRunStatus(st.run);
  }

  function shownRun() { return viewRun === null ? currentRun : viewRun; }

  function setDownloads() {
    const id = shownRun();
    if (id === null) return;
    $("dl-json").href = "/api/runs/" + id + "/results.json";
    $("dl-final").href = "/api/runs/" + id + "/final.json";
    $("dl-csv").href = "/api/runs/" + id + "/results.csv";
  }

  // ---- history ----
  function resultRow(r) {
    const tr = document.createElement("tr");
    tr.dataset.seq = r.seq;
    const cells = [
      r.id, r.worker, r.peer, "[" + r.a + ", " + r.b + "]", r.even_sum, r.odd_sum,
      Number(r.pi).toExponential(12), (1000 * r.duration_s).toFixed(3) + " ms", r.timestamp,
    ];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = String(c);
      if (i === 1) { td.className = "worker"; td.title = String(c); }
      if (i >= 4 && i <= 6) td.classList.add("num");
      tr.appendChild(td);
    });
    return tr;
  }

  function updateEmpty() {
    const n = $("history-body").children.length;
    $("history-empty").hidden = n > 0;
    const last = $("history-body").lastElementChild;
    oldestSeq = last ? Number(last.dataset.seq) : null;
  }

  async function loadHistory() {
    const id = shownRun();
    if (id === null) return;
    const body = $("history-body");
    try {
      const page = await api("GET", "/api/runs/" + id + "/results?limit=50");
      body.replaceChildren(...page.results.map(resultRow));
      newestSeq = page.results.length ? page.results[0].seq : null;
      $("older").hidden = page.next_cursor === null;
      updateEmpty();
    } catch (e) { showMessage(e.message); }
  }

  async function loadOlder() {
    const id = shownRun();
    if (id === null || oldestSeq === null) return;
    try {
      const page = await api("GET", "/api/runs/" + id + "/results?limit=100&cursor=" + oldestSeq);
      const body = $("history-body");
      page.results.forEach((r) => body.appendChild(resultRow(r)));
      $("older").hidden = page.next_cursor === null;
      updateEmpty();
    } catch (e) { showMessage(e.message); }
  }

  function addLiveResults(results, more) {
    if (viewRun !== null || !results.length) return;
    const body = $("history-body");
    const fresh = results.filter((r) => newestSeq === null || r.seq > newestSeq);
    if (!fresh.length) return;
    const frag = document.createDocumentFragment();
    fresh.forEach((r) => frag.appendChild(resultRow(r)));
    body.insertBefore(frag, body.firstChild);
    newestSeq = fresh[0].seq;
    while (body.children.length > MAX_ROWS) body.removeChild(body.lastElementChild);
    if (more || body.children.length >= MAX_ROWS) $("older").hidden = false;
    updateEmpty();
  }

  // ---- runs ----
  async function loadRuns() {
    try {
      const runs = await api("GET", "/api/runs");
      const list = $("runs");
      list.replaceChildren(...runs.map((r) => {
        const li = document.createElement("li");
        li.dataset.run = r.id;
        const terms = r.terms === null ? T.open_ended : fmtInt(r.terms);
        li.textContent = "#" + r.id + " · " + terms + " / " + fmtInt(r.chunk) + " · " +
          (r.current ? T.current : r.state) + " · " + r.created_at;
        if (r.id === shownRun()) li.classList.add("selected");
        li.addEventListener("click", () => selectRun(r.current ? null : r.id));
        return li;
      }));
    } catch (e) { showMessage(e.message); }
  }

  async function selectRun(id) {
    viewRun = id;
    $("back-current").hidden = id === null;
    setDownloads();
    loadRuns();
    loadHistory();
    refreshPlots();
    if (id === null) {
      if (lastStatus) renderRunStatus(lastStatus.run);
      return;
    }
    try {
      const [f, row] = await Promise.all([
        api("GET", "/api/runs/" + id + "/final"), api("GET", "/api/runs/" + id),
      ]);
      setText("view-run", id);
      setText("run-state", row.state === "complete" ? T.complete : T.stopped);
      renderFinal(f);
      $("progress-wrap").hidden = true;
    } catch (e) { showMessage(e.message); }
  }

  // ---- plots ----
  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function noData(svg) {
    svg.replaceChildren(el("text", { x: 20, y: 30 }, T.no_data));
  }

  function drawErrorPlot(points) {
    const svg = $("error-plot");
    const pts = points.filter((p) => p.terms > 0 && p.error > 0);
    if (pts.length < 1) return noData(svg);
    const W = 600, H = 260, L = 50, R = 10, TOP = 10, B = 30;
    const lx = (v) => Math.log10(v);
    const ys = [];
    pts.forEach((p) => { ys.push(lx(p.error)); if (p.corrected_error > 0) ys.push(lx(p.corrected_error)); });
    let x0 = Math.floor(lx(pts[0].terms)), x1 = Math.ceil(lx(pts[pts.length - 1].terms));
    let y0 = Math.floor(Math.min(...ys)), y1 = Math.ceil(Math.max(...ys));
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const X = (v) => L + (W - L - R) * (lx(v) - x0) / (x1 - x0);
    const Y = (v) => TOP + (H - TOP - B) * (y1 - lx(v)) / (y1 - y0);
    const kids = [];
    kids.push(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    kids.push(el("line", { x1: L, y1: TOP, x2: L, y2: H - B, class: "axis" }));
    const xstep = Math.max(1, Math.ceil((x1 - x0) / 8));
    for (let d = x0; d <= x1; d += xstep) {
      const x = L + (W - L - R) * (d - x0) / (x1 - x0);
      kids.push(el("line", { x1: x, y1: TOP, x2: x, y2: H - B, class: "axis" }));
      kids.push(el("text", { x: x - 10, y: H - B + 16 }, "1e" + d));
    }
    const ystep = Math.max(1, Math.ceil((y1 - y0) / 6));
    for (let d = y0; d <= y1; d += ystep) {
      const y = TOP + (H - TOP - B) * (y1 - d) / (y1 - y0);
      kids.push(el("line", { x1: L, y1: y, x2: W - R, y2: y, class: "axis" }));
      kids.push(el("text", { x: 4, y: y + 4 }, "1e" + d));
    }
    const path = (key) => {
      let d = "";
      pts.forEach((p) => {
        const v = p[key];
        if (v > 0) d += (d ? " L" : "M") + X(p.terms).toFixed(1) + " " + Y(v).toFixed(1);
      });
      return d;
    };
    const raw = path("error");
    if (raw) kids.push(el("path", { d: raw, class: "raw" }));
    const cor = path("corrected_error");
    if (cor) kids.push(el("path", { d: cor, class: "corrected" }));
    svg.replaceChildren(...kids);
  }

  function drawThroughput(workers) {
    const svg = $("throughput-plot");
    const ws = workers.filter((w) => w.terms_per_s > 0).slice(0, 20);
    if (!ws.length) return noData(svg);
    const rowH = Math.min(24, 240 / ws.length), L = 150, W = 600;
    const max = Math.max(...ws.map((w) => w.terms_per_s));
    svg.setAttribute("viewBox", "0 0 600 " + Math.max(60, Math.ceil(ws.length * rowH + 20)));
    const kids = [];
    ws.forEach((w, i) => {
      const y = 10 + i * rowH;
      const name = w.worker.length > 22 ? w.worker.slice(0, 21) + "…" : w.worker;
      kids.push(el("text", { x: 4, y: y + rowH * 0.7 }, name));
      const width = Math.max(1, (W - L - 90) * w.terms_per_s / max);
      kids.push(el("rect", { x: L, y: y + 2, width: width, height: Math.max(2, rowH - 4), class: "bar" }));
      kids.push(el("text", { x: L + width + 4, y: y + rowH * 0.7 }, fmtRate(w.terms_per_s)));
    });
    svg.replaceChildren(...kids);
  }

  function drawCoverage(map) {
    const svg = $("coverage-map");
    if (!map.buckets.length) { setText("coverage-span", ""); return noData(svg); }
    const n = map.buckets.length, w = 1000 / n;
    const kids = map.buckets.map((b, i) => {
      const total = b.done + b.in_flight + b.given_back + b.not_started;
      let cls = "not_started";
      if (b.rejected > 0) cls = "rejected";
      else if (b.given_back > 0) cls = "given_back";
      else if (b.in_flight > 0) cls = "in_flight";
      else if (b.done === total && total > 0) cls = "done";
      else if (b.done > 0) cls = "partial";
      const r = el("rect", { x: (i * w).toFixed(2), y: 0, width: (w + 0.3).toFixed(2), height: 40, class: "cov-" + cls });
      const lo = i * map.width, hi = Math.min(map.span, (i + 1) * map.width) - 1;
      r.appendChild(el("title", {}, "intervals " + lo + "–" + hi + ": " + b.done + " " + T.done + ", " +
        b.in_flight + " " + T.in_flight + ", " + b.given_back + " " + T.given_back + ", " +
        b.rejected + " " + T.rejected + ", " + b.not_started + " " + T.not_started));
      return r;
    });
    svg.replaceChildren(...kids);
    setText("coverage-span", "[0, " + fmtInt(map.span * map.chunk) + ")");
  }

  let plotsBusy = false;
  async function refreshPlots() {
    const id = shownRun();
    if (id === null || plotsBusy) return;
    plotsBusy = true;
    try {
      const [plots, cov] = await Promise.all([
        api("GET", "/api/runs/" + id + "/plots?points=150"),
        api("GET", "/api/runs/" + id + "/coverage?buckets=200"),
      ]);
      drawErrorPlot(plots.error);
      drawThroughput(plots.workers);
      drawCoverage(cov);
    } catch (e) { /* the next refresh tries again */ }
    plotsBusy = false;
  }

  // ---- live stream ----
  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("update", (ev) => {
      $("live").textContent = T.live;
      $("live").classList.remove("off");
      const data = JSON.parse(ev.data);
      const first = currentRun === null;
      renderStatus(data.status);
      if (first) { setDownloads(); loadHistory(); refreshPlots(); }
      addLiveResults(data.results, data.more);
    });
    es.onerror = () => {
      $("live").textContent = T.offline;
      $("live").classList.add("off");
    };
  }

  // ---- controls ----
  async function control(button, fn) {
    button.disabled = true;
    try { await fn(); } catch (e) { showMessage(e.message); }
    button.disabled = false;
    if (lastStatus) renderServer(lastStatus.server);
  }

  $("start").addEventListener("click", () => control($("start"), async () => {
    renderStatus(await api("POST", "/api/server/start"));
  }));
  $("stop").addEventListener("click", () => control($("stop"), async () => {
    renderStatus(await api("POST", "/api/server/stop"));
  }));
  $("clients-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    control($("create-clients"), async () => {
      await api("POST", "/api/clients", {
        count: Number($("client-count").value), mode: $("client-mode").value,
      });
    });
  });
  $("run-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    control($("new-run"), async () => {
      const terms = $("run-terms").value.trim().replace(/[_\s]/g, "");
      const chunk = $("run-chunk").value.trim().replace(/[_\s]/g, "");
      const body = { terms: terms === "" ? null : terms };
      if (chunk !== "") body.chunk = chunk;
      await api("POST", "/api/runs", body);
      viewRun = null;
      $("back-current").hidden = true;
      $("history-body").replaceChildren();
      newestSeq = null;
      updateEmpty();
      renderStatus(await api("GET", "/api/status"));
      setDownloads();
      loadHistory();
      refreshPlots();
    });
  });
  $("older").addEventListener("click", loadOlder);
  $("back-current").addEventListener("click", () => selectRun(null));

  api("GET", "/api/status").then((st) => {
    renderStatus(st);
    setDownloads();
    loadHistory();
    refreshPlots();
  }).catch((e) => showMessage(e.message));
  connect();
  setInterval(refreshPlots, 2000);
  setInterval(loadRuns, 10000);
})();
