// piswarm dashboard. Plain modules, no library. Everything that comes from the network is put in
// the page with textContent or as SVG attributes, never as HTML. Every string shown is in the
// page's #strings (English or Portuguese); numbers and dates go through Intl for the page's
// language (format.js). The plots are drawn by plots.js.
import {
  T, LANG, $, none, fmtInt, fmtSci, fmtPi, fmtRate, fmtDuration, fmtUptime, fmtSeconds, fill, clean, stateName,
  put, setText, setAttr, setProp, setData, setTime, setStamp, partialFmt, pctFmt,
} from "./format.js";
import { drawErrorPlot, drawThroughput, drawCoverage } from "./plots.js";

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
    setProp(b, "disabled", !online || pending[id] || !wanted);
    setProp(b, "title", why);
  }
  setProp($("create-clients"), "disabled", !online || !(s && s.running));
  setProp($("create-clients"), "title", why);
  setProp($("new-run"), "disabled", !online);
  setProp($("new-run"), "title", why);
}

function renderServer(s) {
  const state = $("server-state");
  setData(state, "state", s.running ? "running" : "stopped");
  put(state, s.running ? T.running : T.stopped);
  setText("server-listen", s.listen);
  setText("server-uptime", s.running ? fmtUptime(s.uptime_s) : "–");
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
  if (r.complete) { put(el, fmtDuration(0)); setData(el, "etaS", "0"); return; }
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
  if (!meaningful) { put(el, T.eta_wait); if (el.dataset.etaS !== undefined) delete el.dataset.etaS; return; }
  const left = Math.max(0, r.terms - done) / rate;
  put(el, fmtDuration(left));
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
    setProp(wrap, "hidden", false);
    setProp($("progress"), "value", r.progress || 0);
    setText("progress-pct", pctFmt.format(r.progress || 0));
    setText("rate", fmtRate(r.rate_terms_per_s));
    setText("backups-line", r.backups_issued
      ? T.backups_line.replace("{issued}", fmtInt(r.backups_issued)).replace("{won}", fmtInt(r.backups_won)).replace("{terms}", fmtInt(Number(r.backup_terms)))
      : "");
    renderEta(r);
  } else {
    setProp(wrap, "hidden", true);
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
// Test hooks that must not touch the DOM (see onLive).
window.piswarmHooks = { updates: 0 };

// The live view: the newest results of the current run, unfiltered, on the first page.
const atLiveHead = () => following() && H.state === "done" && H.sort === "arrival" && H.order === "desc" &&
  !H.worker && H.prev === null;

// The rows. A page change rewrites the text of the rows in place; a live update keeps the rows
// it still shows as they are and moves the oldest ones, rewritten, to the top for the new
// results; rows are added or removed in one step. Nothing that did not change is written, and
// the rows' columns and height never depend on their text (style.css).
//
// The history scrolls in a box of its own (style.css), so that a page change draws the rows in
// the box, about twenty, not a screenful. Only the rows in view (and four rows around) are
// written and shown with the page. The others are hidden until found (`hidden="until-found"`:
// not laid out nor painted, yet found by the browser's find in page, which shows them), and
// written once the history has been left alone for a second, in idle time, a few at a time
// (someone paging fast does not pay for rows they never see); a scroll (of the page or of the
// box) or a new size shows the ones it brings near, written first if need be, before the frame
// that shows them, and printing shows them all. A page of 250 rows costs what the rows in view
// cost. Where the rows are is read before anything is written, while the page's layout is
// still valid: nothing forces a layout.
// Test hook: `piswarmHooks.unwritten`, rows whose text is not written yet.
const rowKey = (r) => (r.assigned_at !== undefined ? "f" + r.id : "s" + r.seq);
const unwritten = new Set(), veiled = new Set();
Object.defineProperty(window.piswarmHooks, "unwritten", { get: () => unwritten.size });
let rowTemplate = null;
function newCells() {
  if (!rowTemplate) {
    rowTemplate = document.createElement("tr");
    for (let i = 0; i < 9; i++) {
      const td = document.createElement("td");
      if (i === 1) td.className = "name";
      if (i === 2 || i === 4 || i === 5 || i === 7) td.classList.add("opt");
      if (i >= 4 && i <= 6) td.classList.add("num");
      td.appendChild(document.createTextNode(""));
      rowTemplate.appendChild(td);
    }
  }
  return [...rowTemplate.cloneNode(true).children];
}
// Gives `tr` the row `r`; writes and shows it now if it is `near` the screen, else later.
function historyRow(tr, r, key, near) {
  tr.classList.toggle("hit", H.hit !== null && String(H.hit) === String(r.id));
  // A result never changes: a row that already shows it keeps its text.
  if (tr.rowKey !== key || key[0] !== "s") {
    tr.rowKey = key;
    tr.row = r;
    setData(tr, "id", String(r.id));
    if (r.assigned_at !== undefined) { if (tr.dataset.seq !== undefined) delete tr.dataset.seq; } else setData(tr, "seq", String(r.seq));
    unwritten.add(tr);
  }
  if (near) show(tr);
  else if (unwritten.has(tr) && !veiled.has(tr)) { tr.hidden = "until-found"; veiled.add(tr); }
}
function show(tr) {
  if (veiled.delete(tr)) tr.hidden = false;
  if (unwritten.has(tr)) writeRow(tr);
}
function writeRow(tr) {
  unwritten.delete(tr);
  if (!tr.firstChild) tr.append(...newCells());
  const r = tr.row, cells = tr.children;
  const inFlight = r.assigned_at !== undefined;
  const name = clean(r.worker), interval = "[" + fmtInt(r.a) + ", " + fmtInt(r.b) + "]";
  const even = inFlight ? "–" : fmtInt(r.even_sum), odd = inFlight ? "–" : fmtInt(r.odd_sum);
  const values = [
    fmtInt(r.id), name, r.peer, interval, even, odd,
    inFlight ? (r.expired ? T.given_back : T.in_flight) : partialFmt.format(r.pi),
    inFlight ? "–" : fmtSeconds(r.duration_s),
  ];
  for (let i = 0; i < 8; i++) put(cells[i], values[i]);
  // Cut to their column's width: the whole value on hover.
  setProp(cells[1], "title", name);
  setProp(cells[3], "title", interval);
  setProp(cells[4], "title", even);
  setProp(cells[5], "title", odd);
  setStamp(cells[8], inFlight ? r.assigned_at : r.timestamp);
}
// The rows [first, last) of `n` that are on screen or within four rows of it: in the history's
// box (a scroll box of its own, its header on top) where the box is on screen. Every row has the
// header row's height (style.css).
function nearRows(n) {
  const head = $("history").tHead.rows[0].getBoundingClientRect();
  const h = head.height;
  if (!h) return [0, 0];
  const box = $("history-box").getBoundingClientRect();
  const top = $("history-body").getBoundingClientRect().top;
  const from = Math.max(head.bottom, 0), to = Math.min(box.bottom, innerHeight);
  return [Math.max(0, Math.floor((from - top) / h) - 4), Math.min(n, Math.max(0, Math.ceil((to - top) / h) + 4))];
}
function showNear() {
  if (!veiled.size) return;
  const kids = $("history-body").children;
  const [first, last] = nearRows(kids.length);
  for (let i = first; i < last; i++) show(kids[i]);
}
addEventListener("scroll", showNear, { passive: true });
$("history-box").addEventListener("scroll", showNear, { passive: true });
addEventListener("resize", showNear);
// A printed page shows every row.
addEventListener("beforeprint", () => { for (const tr of [...veiled]) show(tr); });
// Find in page shows a row it found by itself.
$("history-body").addEventListener("beforematch", (e) => show(e.target.closest("tr")));
// The rows out of view, written a second after the history last changed, in idle time: about
// 4 ms of work at a time, or as much when the page has not been idle for half a second.
let idleWrite = 0, quiet = 0;
function writeLater() {
  clearTimeout(quiet);
  cancelIdleCallback(idleWrite);
  idleWrite = 0;
  if (unwritten.size) quiet = setTimeout(writeSome, 1000);
}
function writeSome() {
  if (idleWrite || !unwritten.size) return;
  idleWrite = requestIdleCallback((deadline) => {
    idleWrite = 0;
    const end = performance.now() + (deadline.didTimeout ? 4 : Math.min(4, deadline.timeRemaining()));
    for (const tr of unwritten) {
      writeRow(tr);
      if (performance.now() >= end) break;
    }
    writeSome();
  }, { timeout: 500 });
}
// Puts `trs` in the table body in one step: nothing if they are there already, the new ones
// at the top if the others only moved down (a live update), else all of them at once.
function placeRows(body, trs) {
  const kids = body.children;
  const k = kids.length ? trs.indexOf(kids[0]) : trs.length;
  let shifted = k >= 0 && kids.length >= trs.length - k;
  for (let i = k; shifted && i < trs.length; i++) shifted = kids[i - k] === trs[i];
  if (!shifted) { body.replaceChildren(...trs); return; }
  while (kids.length > trs.length - k) body.lastElementChild.remove();
  if (k > 0) body.prepend(...trs.slice(0, k));
}

function renderHistory() {
  const body = $("history-body");
  const rows = H.rows;
  const [first, last] = nearRows(rows.length);
  const kept = new Map();
  for (const tr of body.children) kept.set(tr.rowKey, tr);
  const keys = rows.map(rowKey);
  const trs = keys.map((k) => { const tr = kept.get(k); if (tr) kept.delete(k); return tr; });
  // Rows that no longer show anything are reused, in their order, for the new ones (their
  // text rewritten in place costs less than new rows do).
  const spare = [...kept.values()];
  let s = 0;
  rows.forEach((r, i) => {
    if (!trs[i]) trs[i] = s < spare.length ? spare[s++] : document.createElement("tr");
    historyRow(trs[i], r, keys[i], i >= first && i < last);
  });
  placeRows(body, trs);
  for (const tr of spare.slice(s)) { unwritten.delete(tr); veiled.delete(tr); }
  writeLater();
  const empty = $("history-empty");
  setProp(empty, "hidden", rows.length > 0);
  put(empty, H.worker || H.state !== "done" ? T.no_match : T.no_results);
  setProp($("history-prev"), "disabled", H.prev === null);
  setProp($("history-first"), "disabled", H.prev === null);
  setProp($("history-next"), "disabled", H.next === null);
  setProp($("history-last"), "disabled", H.next === null);
  setText("history-range", fill(T.rows_of, { shown: fmtInt(rows.length), total: fmtInt(H.total) }));
  setText("history-total", fmtInt(H.total));
  const h = $("history");
  setData(h, "total", String(H.total));
  h.dataset.renders = String(++renders);
  renderLive();
}
// What the stream changes without touching the rows: "N new — show" and the live hooks.
function renderLive() {
  const n = $("history-new");
  setProp(n, "hidden", H.fresh === 0 || atLiveHead());
  put(n, fill(T.new_results, { n: fmtInt(H.fresh) }));
  const h = $("history");
  setData(h, "received", String(live.received));
  setData(h, "liveHead", live.head === null ? "" : String(live.head));
}

// The path of a page of results: `where` as for loadPage.
function resultsPath(id, where) {
  const q = new URLSearchParams({ sort: H.sort, order: H.order, limit: H.size });
  if (H.worker) q.set("worker", H.worker);
  if (where.cursor !== undefined) q.set("cursor", where.cursor);
  if (where.before !== undefined) q.set("before", where.before);
  if (where.from !== undefined) q.set("from", where.from);
  if (where.last) q.set("last", "true");
  return "/api/runs/" + id + "/results?" + q;
}
// Pages of a stored run read ahead: a stored run never changes, so once a page is shown the
// next one in the direction of travel is asked for, and a click on Next (or Previous) finds
// it on its way or here — no round trip to wait for on a busy machine. A few pages are kept;
// none of the current run, which changes. A read ahead that failed is asked again.
const ahead = new Map();  // path → promise of the page
function readPage(path) {
  const early = ahead.get(path);
  if (!early) return api("GET", path);
  ahead.delete(path);
  return early.catch(() => api("GET", path));
}
function readAhead(id, where) {
  const path = resultsPath(id, where);
  if (following() || id !== shownRun() || ahead.has(path)) return;
  const page = api("GET", path);
  page.catch(() => {});
  ahead.set(path, page);
  while (ahead.size > 4) ahead.delete(ahead.keys().next().value);
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
      const page = await readPage(resultsPath(id, where));
      if (token !== H.busy) return;
      H.rows = page.results; H.total = page.total;
      H.next = page.next_cursor; H.prev = page.prev_cursor;
      const back = where.before !== undefined || where.last;
      if (back && H.prev !== null) readAhead(id, { before: H.prev });
      if (!back && H.next !== null) readAhead(id, { cursor: H.next });
    }
    if (atLiveHead()) H.fresh = 0;
    if ($("history-feedback").textContent) say("history-feedback", "");
    const t1 = performance.now();
    renderHistory();
    const renderMs = performance.now() - t1;
    // What a page change cost, from the request to the rows drawn (the frame that shows them
    // has been laid out and painted when a task queued from its animation frame runs), and
    // when they were drawn: hooks for benchmarks.
    requestAnimationFrame(() => setTimeout(() => {
      const h = $("history"), now = performance.now();
      h.dataset.pageMs = (now - t0).toFixed(1);
      h.dataset.renderMs = renderMs.toFixed(1);
      h.dataset.fetchMs = (t1 - t0).toFixed(1);
      h.dataset.drawnAt = now.toFixed(1);
      h.dataset.pages = String(Number(h.dataset.pages || 0) + 1);
    }, 0));
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
    // Updates handled (a test hook): with nothing new, they cost no redraw. Kept out of the
    // DOM: a write there, even of an attribute no style uses, makes the browser run a frame
    // (style, and the visibility of every row of a 250-row page) four times a second.
    window.piswarmHooks.updates = ++live.updates;
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
let lastRuns = null;
async function loadRuns() {
  try {
    const runs = await api("GET", "/api/runs");
    // The same runs: the list stays as it is (its times keep themselves up to date; the time
    // of a run's last stored totals, not shown, moves each second while it runs).
    const key = JSON.stringify([shownRun(), runs.map((r) => Object.assign({}, r, { updated_at: null }))]);
    if (key === lastRuns) return;
    lastRuns = key;
    const list = $("runs");
    list.replaceChildren(...runs.map((r) => {
      const li = document.createElement("li");
      li.dataset.run = r.id;
      const terms = r.terms === null ? T.open_ended : fill(T.run_terms, { n: fmtInt(r.terms) });
      li.textContent = "#" + r.id + " · " + terms + " · " + fill(T.run_chunk, { n: fmtInt(r.chunk) }) + " · " +
        (r.current ? T.current : stateName(r.state)) + " · ";
      // When it was created, as a clock time (a date if not today), written once: a ticking
      // "12 s ago" here cost a frame a second on a page where nothing happens.
      const when = document.createElement("span");
      setStamp(when, r.created_at);
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
    // Refreshed every second: only what changed is written.
    page.workers.forEach((w, i) => {
      const tr = body.children[i];
      setData(tr, "session", String(w.session));
      const c = tr.children;
      put(c[0], clean(w.name)); setProp(c[0], "title", clean(w.name));
      const kindLabel = T["kind_" + w.kind] || w.kind;
      // A browser is shown with its short name (Chrome 131 · Android); others keep it as a hint.
      put(c[1], w.kind === "browser" && w.agent ? kindLabel + " · " + clean(w.agent) : kindLabel);
      setProp(c[1], "title", clean(w.agent || ""));
      put(c[2], w.peer);
      setTime(c[3], w.connected_at);
      put(c[4], fmtInt(w.accepted));
      put(c[5], fmtInt(w.rejected));
      put(c[6], fmtInt(w.in_hand));
      setProp(c[6], "title", T.allowance + ": " + fmtInt(w.allowance));
      put(c[7], fmtInt(w.strikes));
      put(c[8], w.backups ? fmtInt(w.backups_won) + " / " + fmtInt(w.backups) : "–");
      setProp(c[8], "title", T.backups_hint);
      put(c[9], fmtRate(w.terms_per_s));
      setProp(c[9], "title", fmtInt(Math.round(w.terms_per_s)) + " " + T.terms_per_s);
      setTime(c[10], w.last_seen_at);
    });
    setProp($("workers-empty"), "hidden", page.total > 0);
    setText("workers-count", fmtInt(page.total));
    const last = Math.min(page.total, W.offset + page.workers.length);
    setText("workers-range", page.total ? fmtInt(W.offset + 1) + "–" + fmtInt(last) + " / " + fmtInt(page.total) : "");
    setProp($("workers-prev"), "disabled", W.offset === 0);
    setProp($("workers-next"), "disabled", W.offset + W.size >= page.total);
    document.querySelectorAll("#workers button.sort").forEach((b) => {
      if (b.dataset.sort === W.sort) setAttr(b, "aria-sort", W.order === "asc" ? "ascending" : "descending");
      else if (b.hasAttribute("aria-sort")) b.removeAttribute("aria-sort");
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
// Plots: what to draw and when (plots.js draws them)
// ---------------------------------------------------------------------------------------
let plotsBusy = false, lastPlots = null, lastDrawn = null;
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
    // Nothing new (a finished run followed): nothing is redrawn.
    const drawn = JSON.stringify([id, plots, cov]);
    if (drawn === lastDrawn) return;
    lastDrawn = drawn;
    lastPlots = plots;
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
  put($("live"), on ? T.live : T.offline);
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
// The worker table, each second while there are workers; with none connected and none shown,
// nothing to ask (the stream's status says when one connects).
setInterval(() => {
  if (lastStatus && lastStatus.server.clients === 0 && W.total === 0) return;
  loadWorkers();
}, 1000);
setInterval(loadRuns, 10000);
