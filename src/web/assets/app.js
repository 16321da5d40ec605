// piswarm dashboard. Plain script, no library. Everything that comes from the network is put in
// the page with textContent or as SVG attributes, never as HTML. Every string shown is in the
// page's #strings (English or Portuguese); numbers and dates go through Intl for the page's
// language.
"use strict";
(function () {
  const T = JSON.parse(document.getElementById("strings").textContent);
  const LANG = document.documentElement.lang || "en";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------------------
  const intFmt = new Intl.NumberFormat(LANG, { maximumFractionDigits: 0 });
  const sciFmt = new Intl.NumberFormat(LANG, { notation: "scientific", maximumFractionDigits: 3 });
  const piFmt = new Intl.NumberFormat(LANG, { minimumFractionDigits: 15, maximumFractionDigits: 15, useGrouping: false });
  const partialFmt = new Intl.NumberFormat(LANG, { notation: "scientific", maximumFractionDigits: 12 });
  const compactFmt = new Intl.NumberFormat(LANG, { notation: "compact", maximumFractionDigits: 2 });
  const pctFmt = new Intl.NumberFormat(LANG, { style: "percent", maximumFractionDigits: 1 });
  const msFmt = new Intl.NumberFormat(LANG, { style: "unit", unit: "millisecond", maximumFractionDigits: 3 });
  const relFmt = new Intl.RelativeTimeFormat(LANG, { numeric: "auto", style: "short" });
  const unit = (u) => new Intl.NumberFormat(LANG, { style: "unit", unit: u, unitDisplay: "narrow", maximumFractionDigits: 0 });
  const hourFmt = unit("hour"), minFmt = unit("minute"), secFmt = unit("second");
  const dateFmt = new Intl.DateTimeFormat(LANG, { dateStyle: "short", timeStyle: "medium" });

  const none = (v) => v === null || v === undefined;
  function fmtInt(n) {
    if (none(n)) return "–";
    try { return intFmt.format(typeof n === "string" ? BigInt(n) : n); } catch (e) { return String(n); }
  }
  const fmtSci = (x) => none(x) ? "–" : sciFmt.format(x);
  const fmtPi = (x) => none(x) ? "–" : piFmt.format(x);
  const fmtRate = (x) => !x ? "–" : compactFmt.format(x);
  function fmtDuration(s) {
    if (none(s) || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const parts = [];
    if (h) parts.push(hourFmt.format(h));
    if (h || m) parts.push(minFmt.format(m));
    parts.push(secFmt.format(sec));
    return parts.join(" ");
  }
  // "12 s ago", from an RFC 3339 time.
  function fmtAgo(iso) {
    const t = Date.parse(iso);
    if (isNaN(t)) return "–";
    const s = (t - Date.now()) / 1000;
    const a = Math.abs(s);
    if (a < 60) return relFmt.format(Math.round(s), "second");
    if (a < 3600) return relFmt.format(Math.round(s / 60), "minute");
    if (a < 86400) return relFmt.format(Math.round(s / 3600), "hour");
    return dateFmt.format(new Date(t));
  }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }
  // Bidirectional controls in a name could reorder what is shown ("evil" shown as "live"):
  // each is replaced by its visible code.
  const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
  function clean(s) {
    return String(s).replace(BIDI, (c) => "[U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "]");
  }
  const stateName = (s) => T[s] || s;

  function setText(id, value) {
    const el = $(id);
    if (el) el.textContent = none(value) ? "–" : String(value);
  }
  // A time cell: relative, local; the UTC value on hover. Refreshed every second.
  function setTime(el, iso) {
    el.dataset.ts = iso;
    el.textContent = fmtAgo(iso);
    el.title = iso;
  }
  setInterval(() => {
    // Only the cells whose text changes are written (an unchanged one would still relayout the table).
    document.querySelectorAll("[data-ts]").forEach((el) => {
      const t = fmtAgo(el.dataset.ts);
      if (el.textContent !== t) el.textContent = t;
    });
  }, 1000);

  // ---------------------------------------------------------------------------------------
  // Messages and requests
  // ---------------------------------------------------------------------------------------
  function say(id, text, ok) {
    const el = $(id);
    el.textContent = text || "";
    el.classList.toggle("ok", !!ok && !!text);
    el.classList.toggle("bad", !ok && !!text);
  }
  function showMessage(text) {
    $("message-text").textContent = T.error + ": " + text;
    $("message").hidden = false;
  }
  $("message-dismiss").addEventListener("click", () => { $("message").hidden = true; });

  async function api(method, path, body) {
    const init = { method, headers: { "Accept": "application/json", "Accept-Language": LANG } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try { res = await fetch(path, init); } catch (e) { throw new Error(T.unreachable); }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new Error((data && data.error) || String(res.status));
    return data;
  }

  // ---------------------------------------------------------------------------------------
  // Status: the server and the run being served
  // ---------------------------------------------------------------------------------------
  let currentRun = null;   // the run being served
  let viewRun = null;      // the run shown; null follows the current run
  let viewChunk = 1000;
  let lastStatus = null;
  let online = false;
  const pending = { start: false, stop: false };
  const eta = { samples: [], since: null, run: null };

  function renderButtons() {
    const s = lastStatus && lastStatus.server;
    const why = online ? "" : T.offline_why;
    for (const [id, wanted] of [["start", s && !s.running], ["stop", s && s.running]]) {
      const b = $(id);
      b.disabled = !online || pending[id] || !wanted;
      b.title = why;
    }
    $("create-clients").disabled = !online || !(s && s.running);
    $("create-clients").title = why;
    $("new-run").disabled = !online;
    $("new-run").title = why;
  }

  function renderServer(s) {
    const state = $("server-state");
    state.dataset.state = s.running ? "running" : "stopped";
    state.textContent = s.running ? T.running : T.stopped;
    setText("server-listen", s.listen);
    setText("server-uptime", s.running ? fmtDuration(s.uptime_s) : "–");
    setText("server-clients", fmtInt(s.clients));
    setText("server-local", fmtInt(s.local_clients));
    setText("clients-cap", fill(T.local_cap, { n: fmtInt(s.max_local_clients) }));
  }

  function renderFinal(f) {
    setText("f-workers", fmtInt(f.workers));
    setText("f-terms", fmtInt(f.terms));
    setText("f-intervals", fmtInt(f.intervals));
    setText("f-even", fmtInt(f.even_sum));
    setText("f-odd", fmtInt(f.odd_sum));
    setText("f-pi", fmtPi(f.pi));
    setText("f-error", fmtSci(f.pi_error));
    setText("f-digits", none(f.correct_digits) ? null : fmtInt(f.correct_digits));
    setText("f-corrected", fmtPi(f.pi_corrected));
  }

  // The time left: shown once it means something (5% done, or 3 s of progress), from the rate
  // over the last 5 s of this page's own updates (a window that smooths it, and that skips any
  // wait before the run moved).
  function renderEta(r) {
    const el = $("eta");
    if (r.complete) { el.textContent = fmtDuration(0); el.dataset.etaS = "0"; return; }
    const now = performance.now(), done = Number(r.done_terms);
    if (eta.run !== r.id || r.state !== "running") { eta.run = r.id; eta.samples = []; eta.since = null; }
    const samples = eta.samples;
    samples.push([now, done]);
    while (samples.length > 2 && samples[1][1] === samples[0][1]) samples.shift();
    while (samples.length > 2 && now - samples[1][0] >= 5000) samples.shift();
    const [t0, d0] = samples[0];
    if (eta.since === null && done > d0) eta.since = t0;
    const rate = now > t0 ? (done - d0) / ((now - t0) / 1000) : 0;
    const meaningful = rate > 0 && ((r.progress || 0) >= 0.05 || (eta.since !== null && now - eta.since >= 3000));
    if (!meaningful) { el.textContent = T.eta_wait; delete el.dataset.etaS; return; }
    const left = Math.max(0, r.terms - done) / rate;
    el.textContent = fmtDuration(left);
    el.dataset.etaS = String(left);
  }

  function renderRunStatus(r) {
    viewChunk = r.chunk;
    setText("view-run", r.id);
    setText("run-state", stateName(r.state));
    renderFinal({
      workers: r.workers, terms: r.done_terms, intervals: r.intervals_done,
      even_sum: r.even_sum, odd_sum: r.odd_sum, pi: r.pi, pi_error: r.pi_error,
      correct_digits: r.correct_digits, pi_corrected: r.pi_corrected,
    });
    const wrap = $("progress-wrap");
    if (r.terms) {
      wrap.hidden = false;
      $("progress").value = r.progress || 0;
      setText("progress-pct", pctFmt.format(r.progress || 0));
      setText("rate", fmtRate(r.rate_terms_per_s));
      setText("backups-line", r.backups_issued
        ? T.backups_line.replace("{issued}", fmtInt(r.backups_issued)).replace("{won}", fmtInt(r.backups_won)).replace("{terms}", fmtInt(Number(r.backup_terms)))
        : "");
      renderEta(r);
    } else {
      wrap.hidden = true;
    }
    if (r.store_failed) showMessage(r.store_failed);
  }

  function renderStatus(st) {
    lastStatus = st;
    renderServer(st.server);
    renderButtons();
    if (currentRun !== st.run.id) {
      const first = currentRun === null;
      currentRun = st.run.id;
      loadRuns();
      if (!first && viewRun === null) showRun(null);
    }
    if (viewRun === null) renderRunStatus(st.run);
  }

  const shownRun = () => (viewRun === null ? currentRun : viewRun);
  const following = () => viewRun === null;

  function setDownloads() {
    const id = shownRun();
    if (id === null) return;
    $("dl-json").href = "/api/runs/" + id + "/results.json";
    $("dl-final").href = "/api/runs/" + id + "/final.json";
    $("dl-csv").href = "/api/runs/" + id + "/results.csv";
  }

  // ---------------------------------------------------------------------------------------
  // History: server-side pages, a constant number of rows in the page
  // ---------------------------------------------------------------------------------------
  const H = {
    sort: "arrival", order: "desc", state: "done", worker: "", size: 50,
    rows: [], next: null, prev: null, total: 0, offset: 0, hit: null, fresh: 0,
    busy: 0,
  };
  // Live tracking of the current run's history: `head` is the newest position accounted for.
  const live = { started: false, run: null, head: null, received: 0, updates: 0, queue: Promise.resolve() };
  // History redraws (the rows rewritten): a test hook, `data-renders`.
  let renders = 0;

  // The live view: the newest results of the current run, unfiltered, on the first page.
  const atLiveHead = () => following() && H.state === "done" && H.sort === "arrival" && H.order === "desc" &&
    !H.worker && H.prev === null;

  function historyRow(tr, r) {
    const cells = tr.children;
    const inFlight = r.assigned_at !== undefined;
    tr.dataset.id = r.id;
    if (inFlight) delete tr.dataset.seq; else tr.dataset.seq = r.seq;
    tr.classList.toggle("hit", H.hit !== null && String(H.hit) === String(r.id));
    const values = [
      fmtInt(r.id), clean(r.worker), r.peer, "[" + fmtInt(r.a) + ", " + fmtInt(r.b) + "]",
      inFlight ? "–" : fmtInt(r.even_sum), inFlight ? "–" : fmtInt(r.odd_sum),
      inFlight ? (r.expired ? T.given_back : T.in_flight) : partialFmt.format(r.pi),
      inFlight ? "–" : msFmt.format(1000 * r.duration_s),
    ];
    values.forEach((v, i) => { cells[i].textContent = v; });
    cells[1].title = clean(r.worker);
    setTime(cells[8], inFlight ? r.assigned_at : r.timestamp);
  }

  function renderHistory() {
    const body = $("history-body");
    const rows = H.rows;
    // Reuse the rows: the table never holds more than one page.
    while (body.children.length > rows.length) body.removeChild(body.lastElementChild);
    while (body.children.length < rows.length) {
      const tr = document.createElement("tr");
      for (let i = 0; i < 9; i++) {
        const td = document.createElement("td");
        if (i === 1) td.className = "name";
        if (i === 2 || i === 4 || i === 5 || i === 7) td.classList.add("opt");
        if (i >= 4 && i <= 6) td.classList.add("num");
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    rows.forEach((r, i) => historyRow(body.children[i], r));
    $("history-empty").hidden = rows.length > 0;
    $("history-empty").textContent = H.worker || H.state !== "done" ? T.no_match : T.no_results;
    $("history-prev").disabled = H.prev === null;
    $("history-first").disabled = H.prev === null;
    $("history-next").disabled = H.next === null;
    $("history-last").disabled = H.next === null;
    setText("history-range", fill(T.rows_of, { shown: fmtInt(rows.length), total: fmtInt(H.total) }));
    setText("history-total", fmtInt(H.total));
    const h = $("history");
    h.dataset.total = String(H.total);
    h.dataset.renders = String(++renders);
    renderLive();
  }
  // What the stream changes without touching the rows: "N new — show" and the live hooks.
  function renderLive() {
    const n = $("history-new");
    n.hidden = H.fresh === 0 || atLiveHead();
    n.textContent = fill(T.new_results, { n: fmtInt(H.fresh) });
    const h = $("history");
    h.dataset.received = String(live.received);
    h.dataset.liveHead = live.head === null ? "" : String(live.head);
  }

  // Loads one page: `where` is {first}, {last}, {cursor}, {before} or {from}.
  async function loadPage(where) {
    const id = shownRun();
    if (id === null) return;
    const t0 = performance.now();
    const token = ++H.busy;
    try {
      if (H.state === "in_flight") {
        const offset = where.offset || 0;
        const q = new URLSearchParams({ offset: offset, limit: H.size });
        if (H.worker) q.set("worker", H.worker);
        const page = following() ? await api("GET", "/api/in-flight?" + q) : { intervals: [], total: 0, offset: 0 };
        if (token !== H.busy) return;
        H.rows = page.intervals; H.total = page.total; H.offset = page.offset;
        H.prev = offset > 0 ? Math.max(0, offset - H.size) : null;
        H.next = offset + H.size < page.total ? offset + H.size : null;
      } else {
        const q = new URLSearchParams({ sort: H.sort, order: H.order, limit: H.size });
        if (H.worker) q.set("worker", H.worker);
        if (where.cursor !== undefined) q.set("cursor", where.cursor);
        if (where.before !== undefined) q.set("before", where.before);
        if (where.from !== undefined) q.set("from", where.from);
        if (where.last) q.set("last", "true");
        const page = await api("GET", "/api/runs/" + id + "/results?" + q);
        if (token !== H.busy) return;
        H.rows = page.results; H.total = page.total;
        H.next = page.next_cursor; H.prev = page.prev_cursor;
      }
      if (atLiveHead()) H.fresh = 0;
      say("history-feedback", "");
      renderHistory();
      // What a page change cost, from the request to the rows in the page (for benchmarks).
      const h = $("history");
      h.dataset.pageMs = (performance.now() - t0).toFixed(1);
      h.dataset.pages = String(Number(h.dataset.pages || 0) + 1);
    } catch (e) { say("history-feedback", e.message, false); }
  }

  function go(where) {
    if (H.state === "in_flight" && where.cursor !== undefined) return loadPage({ offset: where.cursor });
    if (H.state === "in_flight" && where.before !== undefined) return loadPage({ offset: where.before });
    if (H.state === "in_flight" && where.last) return loadPage({ offset: Math.max(0, Math.floor((H.total - 1) / H.size) * H.size) });
    return loadPage(where);
  }
  $("history-next").addEventListener("click", () => go({ cursor: H.next }));
  $("history-prev").addEventListener("click", () => go({ before: H.prev }));
  $("history-first").addEventListener("click", () => { H.hit = null; go({}); });
  $("history-last").addEventListener("click", () => go({ last: true }));
  $("history-new").addEventListener("click", () => {
    H.sort = "arrival"; H.order = "desc"; H.worker = ""; H.state = "done"; H.hit = null;
    syncControls();
    loadPage({});
  });
  function syncControls() {
    $("history-sort").value = H.sort + ":" + H.order;
    $("history-state").value = H.state;
    $("history-worker").value = H.worker;
  }
  $("history-sort").addEventListener("change", () => {
    [H.sort, H.order] = $("history-sort").value.split(":");
    H.hit = null;
    loadPage({});
  });
  $("history-state").addEventListener("change", () => { H.state = $("history-state").value; H.hit = null; loadPage({}); });
  $("history-page-size").addEventListener("change", () => { H.size = Number($("history-page-size").value); loadPage({}); });
  $("history-worker").addEventListener("change", () => { H.worker = $("history-worker").value.trim(); H.hit = null; loadPage({}); });
  $("history-controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const raw = $("history-jump").value.trim().replace(/[\s_.,]/g, "");
    if (!/^\d+$/.test(raw)) { say("history-feedback", T.jump + ": " + T.no_match, false); return; }
    const n = Number(raw);
    const id = $("history-jump-kind").value === "term" ? Math.floor(n / viewChunk) : n;
    H.sort = "interval"; H.order = "asc"; H.state = "done"; H.hit = id;
    syncControls();
    loadPage({ from: id });
  });

  // Live results from the stream, in order; any gap is fetched from the history.
  function onLive(u) {
    live.queue = live.queue.then(() => applyLive(u)).catch(() => {}).then(() => {
      // Updates handled (a test hook): with nothing new, they cost no redraw.
      $("history").dataset.updates = String(++live.updates);
    });
  }
  async function applyLive(u) {
    if (!live.started || u.run !== live.run) {
      live.started = true;
      live.run = u.run;
      live.head = u.head;
      live.received = 0;
      // A stored run in view does not change with the current run.
      if (following()) await loadPage({}); else renderLive();
      return;
    }
    // Nothing new: nothing to do (no redraw).
    if (u.head <= live.head) return;
    let fresh;
    if (u.after === live.head && !u.more) {
      fresh = u.results;
    } else {
      fresh = await fetchRange(u.run, live.head, u.head);
    }
    live.received += fresh.count === undefined ? fresh.length : fresh.count;
    live.head = u.head;
    const rows = fresh.rows || fresh;
    // A stored run in view: its rows do not change.
    if (!following()) { renderLive(); return; }
    if (atLiveHead()) {
      const seen = new Set(H.rows.map((r) => r.seq));
      const merged = rows.filter((r) => !seen.has(r.seq)).concat(H.rows);
      merged.sort((a, b) => b.seq - a.seq);
      H.rows = merged.slice(0, H.size);
      // Paging comes from the server's count of the run's results (the stream's status, or the
      // catch-up's pages), never from how many rows were merged: a burst of several pages in one
      // update keeps only the newest page, and the older ones are reached by Next and Last.
      H.total = Math.max(H.total, u.status.run.intervals_done, fresh.total || 0);
      H.next = H.rows.length === H.size && H.total > H.rows.length ? H.rows[H.rows.length - 1].seq : null;
      renderHistory();
    } else {
      // Another page, order or filter in view: only "N new — show" changes.
      H.fresh += rows.length;
      renderLive();
    }
  }
  // Results of `run` with after < seq <= head: how many, the newest page of them, and the
  // server's count of the run's results.
  async function fetchRange(run, after, head) {
    let cursor = after, count = 0, newest = [], total = 0;
    for (;;) {
      const q = new URLSearchParams({ sort: "arrival", order: "asc", cursor: cursor, limit: 1000 });
      const page = await api("GET", "/api/runs/" + run + "/results?" + q);
      const got = page.results.filter((r) => r.seq <= head);
      count += got.length;
      total = Math.max(total, page.total);
      newest = newest.concat(got).slice(-H.size);
      if (!page.results.length || page.next_cursor === null || page.results[page.results.length - 1].seq >= head) break;
      cursor = page.next_cursor;
    }
    newest.reverse();
    return { count: count, rows: newest, total: total };
  }

  // ---------------------------------------------------------------------------------------
  // Runs
  // ---------------------------------------------------------------------------------------
  async function loadRuns() {
    try {
      const runs = await api("GET", "/api/runs");
      const list = $("runs");
      list.replaceChildren(...runs.map((r) => {
        const li = document.createElement("li");
        li.dataset.run = r.id;
        const terms = r.terms === null ? T.open_ended : fill(T.run_terms, { n: fmtInt(r.terms) });
        li.textContent = "#" + r.id + " · " + terms + " · " + fill(T.run_chunk, { n: fmtInt(r.chunk) }) + " · " +
          (r.current ? T.current : stateName(r.state)) + " · ";
        const when = document.createElement("span");
        setTime(when, r.created_at);
        li.appendChild(when);
        if (r.id === shownRun()) li.classList.add("selected");
        li.addEventListener("click", () => showRun(r.current ? null : r.id));
        return li;
      }));
    } catch (e) { showMessage(e.message); }
  }

  // Shows a run (null: the current one): its report, first page of history and plots.
  async function showRun(id) {
    const t0 = performance.now();
    viewRun = id;
    H.rows = []; H.prev = null; H.next = null; H.fresh = 0; H.hit = null;
    if (id !== null && H.state === "in_flight") H.state = "done";
    syncControls();
    $("back-current").hidden = id === null;
    document.querySelectorAll("#runs li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.run) === shownRun()));
    setDownloads();
    const jobs = [loadPage({}), refreshPlots(true)];
    if (id === null) {
      if (lastStatus) renderRunStatus(lastStatus.run);
    } else {
      jobs.push((async () => {
        const [f, row] = await Promise.all([
          api("GET", "/api/runs/" + id + "/final"), api("GET", "/api/runs/" + id),
        ]);
        viewChunk = row.chunk;
        setText("view-run", id);
        setText("run-state", stateName(row.state));
        renderFinal(f);
        $("progress-wrap").hidden = true;
      })().catch((e) => showMessage(e.message)));
    }
    await Promise.all(jobs);
    const card = $("final-card");
    card.dataset.switchMs = (performance.now() - t0).toFixed(1);
    card.dataset.switches = String(Number(card.dataset.switches || 0) + 1);
  }
  $("back-current").addEventListener("click", () => showRun(null));

  // ---------------------------------------------------------------------------------------
  // Workers
  // ---------------------------------------------------------------------------------------
  const W = { sort: "rate", order: "desc", offset: 0, size: 100, total: 0 };
  const DEFAULT_ASC = ["name", "kind", "peer", "connected"];
  async function loadWorkers() {
    try {
      const q = new URLSearchParams({ sort: W.sort, order: W.order, offset: W.offset, limit: W.size });
      const page = await api("GET", "/api/workers?" + q);
      W.total = page.total;
      if (W.offset >= page.total && page.total > 0) { W.offset = Math.floor((page.total - 1) / W.size) * W.size; return loadWorkers(); }
      const body = $("workers-body");
      while (body.children.length > page.workers.length) body.removeChild(body.lastElementChild);
      while (body.children.length < page.workers.length) {
        const tr = document.createElement("tr");
        for (let i = 0; i < 11; i++) {
          const td = document.createElement("td");
          if (i === 0) td.className = "name";
          if (i === 2 || i === 3 || i === 5 || i === 7 || i === 8 || i === 10) td.classList.add("opt");
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      page.workers.forEach((w, i) => {
        const tr = body.children[i];
        tr.dataset.session = w.session;
        const c = tr.children;
        c[0].textContent = clean(w.name); c[0].title = clean(w.name);
        const kindLabel = T["kind_" + w.kind] || w.kind;
        // A browser is shown with its short name (Chrome 131 · Android); others keep it as a hint.
        c[1].textContent = w.kind === "browser" && w.agent ? kindLabel + " · " + clean(w.agent) : kindLabel;
        c[1].title = clean(w.agent || "");
        c[2].textContent = w.peer;
        setTime(c[3], w.connected_at);
        c[4].textContent = fmtInt(w.accepted);
        c[5].textContent = fmtInt(w.rejected);
        c[6].textContent = fmtInt(w.in_hand);
        c[6].title = T.allowance + ": " + fmtInt(w.allowance);
        c[7].textContent = fmtInt(w.strikes);
        c[8].textContent = w.backups ? fmtInt(w.backups_won) + " / " + fmtInt(w.backups) : "–";
        c[8].title = T.backups_hint;
        c[9].textContent = fmtRate(w.terms_per_s);
        c[9].title = fmtInt(Math.round(w.terms_per_s)) + " " + T.terms_per_s;
        setTime(c[10], w.last_seen_at);
      });
      $("workers-empty").hidden = page.total > 0;
      setText("workers-count", fmtInt(page.total));
      const last = Math.min(page.total, W.offset + page.workers.length);
      setText("workers-range", page.total ? fmtInt(W.offset + 1) + "–" + fmtInt(last) + " / " + fmtInt(page.total) : "");
      $("workers-prev").disabled = W.offset === 0;
      $("workers-next").disabled = W.offset + W.size >= page.total;
      document.querySelectorAll("#workers button.sort").forEach((b) => {
        if (b.dataset.sort === W.sort) b.setAttribute("aria-sort", W.order === "asc" ? "ascending" : "descending");
        else b.removeAttribute("aria-sort");
      });
    } catch (e) { /* the next refresh tries again */ }
  }
  document.querySelectorAll("#workers button.sort").forEach((b) => b.addEventListener("click", () => {
    const key = b.dataset.sort;
    if (W.sort === key) W.order = W.order === "asc" ? "desc" : "asc";
    else { W.sort = key; W.order = DEFAULT_ASC.includes(key) ? "asc" : "desc"; }
    W.offset = 0;
    loadWorkers();
  }));
  $("workers-prev").addEventListener("click", () => { W.offset = Math.max(0, W.offset - W.size); loadWorkers(); });
  $("workers-next").addEventListener("click", () => { W.offset += W.size; loadWorkers(); });

  // ---------------------------------------------------------------------------------------
  // Plots, drawn at the element's own size so that text stays readable on a phone
  // ---------------------------------------------------------------------------------------
  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function tip(node, text) { node.appendChild(el("title", {}, text)); return node; }
  function size(svg, height) {
    const w = Math.max(280, Math.round(svg.clientWidth || 600));
    svg.setAttribute("viewBox", "0 0 " + w + " " + height);
    svg.style.height = height + "px";
    return w;
  }
  function noData(svg) {
    size(svg, 80);
    svg.replaceChildren(el("text", { x: 16, y: 44 }, T.no_data));
  }
  const SUP = { "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹" };
  const pow10 = (d) => "10" + String(d).split("").map((c) => SUP[c] || c).join("");

  function drawErrorPlot(points) {
    const svg = $("error-plot");
    const pts = points.filter((p) => p.terms > 0 && p.error > 0);
    if (pts.length < 1) return noData(svg);
    const H0 = 240, W = size(svg, H0), L = 52, R = 14, TOP = 10, B = 30;
    const lx = (v) => Math.log10(v);
    const ys = [];
    pts.forEach((p) => { ys.push(lx(p.error)); if (p.corrected_error > 0) ys.push(lx(p.corrected_error)); });
    let x0 = Math.floor(lx(pts[0].terms)), x1 = Math.ceil(lx(pts[pts.length - 1].terms));
    let y0 = Math.floor(Math.min(...ys)), y1 = Math.ceil(Math.max(...ys));
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const X = (v) => L + (W - L - R) * (lx(v) - x0) / (x1 - x0);
    const Y = (v) => TOP + (H0 - TOP - B) * (y1 - lx(v)) / (y1 - y0);
    const kids = [];
    kids.push(el("line", { x1: L, y1: H0 - B, x2: W - R, y2: H0 - B, class: "axis" }));
    kids.push(el("line", { x1: L, y1: TOP, x2: L, y2: H0 - B, class: "axis" }));
    const xstep = Math.max(1, Math.ceil((x1 - x0) / Math.max(2, Math.floor((W - L) / 70))));
    for (let d = x0; d <= x1; d += xstep) {
      const x = L + (W - L - R) * (d - x0) / (x1 - x0);
      kids.push(el("line", { x1: x, y1: TOP, x2: x, y2: H0 - B, class: "axis" }));
      kids.push(el("text", { x: x, y: H0 - B + 18, "text-anchor": d === x1 ? "end" : "middle" }, pow10(d)));
    }
    const ystep = Math.max(1, Math.ceil((y1 - y0) / 6));
    for (let d = y0; d <= y1; d += ystep) {
      const y = TOP + (H0 - TOP - B) * (y1 - d) / (y1 - y0);
      kids.push(el("line", { x1: L, y1: y, x2: W - R, y2: y, class: "axis" }));
      kids.push(el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, pow10(d)));
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
    // Hover values: one target per point.
    const step = Math.max(1, Math.ceil(pts.length / 80));
    pts.forEach((p, i) => {
      if (i % step !== 0 && i !== pts.length - 1) return;
      kids.push(tip(el("circle", { cx: X(p.terms).toFixed(1), cy: Y(p.error).toFixed(1), r: 5, class: "dot" }),
        fill(T.error_tip, { terms: fmtInt(p.terms), error: fmtSci(p.error) })));
    });
    svg.replaceChildren(...kids);
  }

  function drawThroughput(workers, total) {
    const svg = $("throughput-plot");
    const ws = workers.filter((w) => w.terms_per_s > 0).slice(0, 20);
    const more = Math.max(0, total - ws.length);
    setText("throughput-more", more ? fill(T.more_workers, { n: fmtInt(more) }) : "");
    $("throughput-more").hidden = !more;
    if (!ws.length) return noData(svg);
    const rowH = 22, H0 = ws.length * rowH + 12;
    const W = size(svg, H0);
    const L = Math.min(170, Math.round(W * 0.32)), VAL = 64;
    const max = Math.max(...ws.map((w) => w.terms_per_s));
    const chars = Math.max(6, Math.floor(L / 7.2));
    const kids = [];
    ws.forEach((w, i) => {
      const y = 6 + i * rowH;
      const full = clean(w.worker);
      const name = full.length > chars ? full.slice(0, chars - 1) + "…" : full;
      kids.push(el("text", { x: 4, y: y + 15 }, name));
      const width = Math.max(2, (W - L - VAL - 8) * w.terms_per_s / max);
      kids.push(tip(el("rect", { x: L, y: y + 3, width: width.toFixed(1), height: rowH - 6, class: "bar" }),
        full + ": " + fmtInt(Math.round(w.terms_per_s)) + " " + T.terms_per_s));
      kids.push(el("text", { x: L + width + 4, y: y + 15 }, fmtRate(w.terms_per_s)));
    });
    svg.replaceChildren(...kids);
  }

  function drawCoverage(map) {
    const svg = $("coverage-map");
    if (!map.buckets.length) { setText("coverage-span", ""); svg.replaceChildren(); return; }
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
      return tip(r, fill(T.coverage_tip, {
        lo: fmtInt(lo), hi: fmtInt(hi), done: fmtInt(b.done), in_flight: fmtInt(b.in_flight),
        given_back: fmtInt(b.given_back), rejected: fmtInt(b.rejected), not_started: fmtInt(b.not_started),
      }));
    });
    svg.replaceChildren(...kids);
    setText("coverage-span", "[0, " + fmtInt(map.span * map.chunk) + ")");
  }

  let plotsBusy = false, lastPlots = null, lastCoverage = null;
  async function refreshPlots(force) {
    const id = shownRun();
    if (id === null || (plotsBusy && !force)) return;
    if (!force && !following()) return;  // a stored run does not change
    plotsBusy = true;
    try {
      const [plots, cov] = await Promise.all([
        api("GET", "/api/runs/" + id + "/plots?points=150"),
        api("GET", "/api/runs/" + id + "/coverage?buckets=200"),
      ]);
      if (id !== shownRun()) return;
      lastPlots = plots; lastCoverage = cov;
      drawErrorPlot(plots.error);
      drawThroughput(plots.workers, plots.workers_total);
      drawCoverage(cov);
      const list = $("history-workers");
      list.replaceChildren(...plots.workers.map((w) => { const o = document.createElement("option"); o.value = w.worker; return o; }));
    } catch (e) { /* the next refresh tries again */ } finally { plotsBusy = false; }
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (lastPlots) { drawErrorPlot(lastPlots.error); drawThroughput(lastPlots.workers, lastPlots.workers_total); }
    }, 150);
  });

  // ---------------------------------------------------------------------------------------
  // The live stream
  // ---------------------------------------------------------------------------------------
  function setOnline(on) {
    online = on;
    $("live").textContent = on ? T.live : T.offline;
    $("live").classList.toggle("off", !on);
    renderButtons();
  }
  let booted = false;
  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("update", (ev) => {
      const u = JSON.parse(ev.data);
      setOnline(true);
      renderStatus(u.status);
      if (!booted) { booted = true; setDownloads(); refreshPlots(true); loadWorkers(); }
      onLive(u);
    });
    es.onerror = () => setOnline(false);
  }

  // ---------------------------------------------------------------------------------------
  // Controls: disabled while their request is pending; they say what happened
  // ---------------------------------------------------------------------------------------
  async function control(key, button, feedback, busyText, fn) {
    if (key) pending[key] = true;
    button.disabled = true;
    say(feedback, busyText || "", true);
    try {
      const text = await fn();
      say(feedback, text || "", true);
    } catch (e) {
      say(feedback, e.message, false);
    } finally {
      if (key) pending[key] = false;
      button.disabled = false;
      renderButtons();
    }
  }
  $("start").addEventListener("click", () => control("start", $("start"), "server-feedback", T.starting, async () => {
    renderStatus(await api("POST", "/api/server/start"));
    return T.started;
  }));
  $("stop").addEventListener("click", () => control("stop", $("stop"), "server-feedback", T.stopping, async () => {
    renderStatus(await api("POST", "/api/server/stop"));
    return T.stopped_msg;
  }));
  $("clients-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    control(null, $("create-clients"), "clients-feedback", "", async () => {
      const mode = $("client-mode").value;
      const res = await api("POST", "/api/clients", { count: Number($("client-count").value), mode: mode });
      return fill(T.created, { n: fmtInt(res.created), mode: T["mode_" + mode] });
    });
  });
  $("run-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    control(null, $("new-run"), "run-feedback", "", async () => {
      const terms = $("run-terms").value.trim().replace(/[_\s]/g, "");
      const chunk = $("run-chunk").value.trim().replace(/[_\s]/g, "");
      const body = { terms: terms === "" ? null : terms };
      if (chunk !== "") body.chunk = chunk;
      const run = await api("POST", "/api/runs", body);
      renderStatus(await api("GET", "/api/status"));
      await showRun(null);
      return fill(T.run_created, { id: run.id });
    });
  });

  // The join panel: the link other devices open, and its QR code (an image the server draws).
  api("GET", "/api/join").then((j) => {
    const link = $("join-link");
    link.textContent = j.url;
    link.href = j.url;
    $("join-qr").src = j.qr_svg;
    const notes = [];
    if (!j.reachable) notes.push(T.join_unreachable);
    if (j.token_in_link) notes.push(T.join_token);
    $("join-note").textContent = notes.join(" ");
    $("join-card").dataset.reachable = String(j.reachable);
  }).catch(() => {});
  $("join-copy").addEventListener("click", () => {
    const done = () => { setText("join-copied", T.copied); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText($("join-link").href).then(done, () => {});
    } else {
      const range = document.createRange();
      range.selectNodeContents($("join-link"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
  });

  api("GET", "/api/status").then((st) => {
    setOnline(true);
    renderStatus(st);
    setDownloads();
  }).catch((e) => showMessage(e.message));
  connect();
  setInterval(() => refreshPlots(false), 1000);
  setInterval(loadWorkers, 1000);
  setInterval(loadRuns, 10000);
})();
