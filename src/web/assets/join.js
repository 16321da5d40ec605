// piswarm's /join page: a worker of protocol v1 in the browser (docs/protocol.md, docs/browser-workers.md).
//
// One WebSocket session per page, one Web Worker per thread. The page speaks protocol v1 like
// `piswarm worker`: hello (with the worker token from the link's #fragment), credit, results
// echoed with their ids, heartbeats, results computed on a lost connection re-sent (`resend`) on
// the next one of the same run, within a window of `max_prefetch`. Every string shown comes from
// the page's #strings (English or Portuguese) and is inserted as text.
(function () {
  'use strict';

  const T = JSON.parse(document.getElementById('strings').textContent);
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // The token lives in the fragment, which the browser never sends; only the hello carries it.
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = fragment.get('token');
  const cores = Math.max(1, Math.min(256, navigator.hardwareConcurrency || 1));
  const capable = typeof Worker === 'function' && typeof BigInt === 'function' && typeof WebSocket === 'function';
  /** Reconnection delays (ms): doubling from 1 s, at most 30 s. */
  const RETRY_MIN = 1000;
  const RETRY_MAX = 30000;
  /** The window of the speed shown (ms). */
  const RATE_WINDOW = 10000;

  const S = {
    ws: null,
    /** Counts connections; a task belongs to the one it was assigned on. */
    epoch: 0,
    welcomed: false,
    /** The run's π kernel, from the welcome. */
    kernel: 'oct',
    /** The user wants to compute (Start, not paused). */
    running: false,
    complete: false,
    /** Paused by the user (Start then says Resume). */
    paused: false,
    /** Refused for good (a wrong token): no retry. */
    refused: false,
    run: null,
    terms: null,
    maxPrefetch: 1,
    heartbeatMs: 20000,
    threads: cores,
    /** Tasks assigned on the current connection and not started. */
    queue: [],
    /** {worker, task, retire} */
    pool: [],
    /** Results not acknowledged yet, by id: {result, resend, sentOn} (sentOn: epoch, or -1). */
    unacked: new Map(),
    resendQueue: [],
    resendsWaiting: 0,
    /** Results sent on this connection and not answered; when the last answer came. */
    outstanding: 0,
    lastProgress: 0,
    accepted: 0,
    rejected: 0,
    /** Results re-sent after a lost connection. */
    resent: 0,
    termsAccepted: 0n,
    recent: [],
    retryMs: RETRY_MIN,
    retryTimer: null,
    ticker: null,
    statusKey: 'idle',
  };

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }

  function setStatus(key, values, tone) {
    S.statusKey = key;
    const el = $('status');
    el.textContent = fill(T[key] || key, values || {});
    el.className = tone || '';
    document.body.dataset.state = key;
  }

  const fmt = new Intl.NumberFormat(document.documentElement.lang);
  const fmtRate = new Intl.NumberFormat(document.documentElement.lang, { notation: 'compact', maximumFractionDigits: 2 });
  const fmtShare = new Intl.NumberFormat(document.documentElement.lang, { style: 'percent', maximumFractionDigits: 2 });

  function render() {
    $('intervals').textContent = fmt.format(S.accepted);
    $('rejected').textContent = fmt.format(S.rejected);
    $('in-hand').textContent = fmt.format(S.queue.length + S.pool.filter((w) => w.task).length);
    $('run').textContent = S.run === null ? '—' : String(S.run);
    const now = performance.now();
    while (S.recent.length && now - S.recent[0].t > RATE_WINDOW) S.recent.shift();
    if (S.recent.length) {
      const terms = S.recent.reduce((sum, r) => sum + r.terms, 0);
      const span = Math.max(1000, Math.min(RATE_WINDOW, now - S.recent[0].start));
      $('rate').textContent = fmtRate.format(terms / (span / 1000)) + ' ' + T.terms_per_s;
    } else {
      $('rate').textContent = '—';
    }
    if (S.terms !== null && S.terms > 0n) {
      // Parts per million, in BigInt, then a Number for the formatter.
      const share = Number((S.termsAccepted * 1000000n) / S.terms) / 1000000;
      $('share').textContent = fmtShare.format(share);
      $('share-bar').value = share;
    } else {
      $('share').textContent = S.run === null ? '—' : T.open_ended;
    }
    $('start').disabled = S.running || S.complete || !capable;
    $('start').textContent = S.paused ? T.resume : T.start;
    $('pause').disabled = !S.running;
    $('name').disabled = S.running;
  }

  // ---------------------------------------------------------------------------------------------
  // The Web Workers
  // ---------------------------------------------------------------------------------------------

  function spawnWorker() {
    const slot = { worker: new Worker('join/worker.js'), task: null, retire: false };
    // A worker that was terminated may still deliver an event already queued: ignored.
    const current = () => S.pool.includes(slot);
    slot.worker.onmessage = (e) => { if (current()) finished(slot, e.data); };
    slot.worker.onerror = (e) => {
      e.preventDefault();
      if (current()) setStatus('refused', { message: 'Web Worker: ' + (e.message || 'error') }, 'bad');
    };
    S.pool.push(slot);
  }

  function setThreads(n) {
    S.threads = n;
    if (!S.running) return;
    const active = S.pool.filter((w) => !w.retire);
    for (let i = active.length; i < n; i++) spawnWorker();
    for (let i = n; i < active.length; i++) {
      active[i].retire = true;
      if (!active[i].task) retire(active[i]);
    }
    if (n > active.length) request(2 * (n - active.length));
    dispatch();
  }

  function retire(slot) {
    slot.worker.terminate();
    S.pool = S.pool.filter((w) => w !== slot);
  }

  function stopWorkers() {
    S.pool.forEach((w) => w.worker.terminate());
    S.pool = [];
  }

  function dispatch() {
    if (!S.running) return;
    for (const slot of S.pool) {
      if (slot.task || slot.retire) continue;
      const task = S.queue.shift();
      if (!task) break;
      slot.task = task;
      slot.worker.postMessage({ id: task.id, a: task.a, b: task.b, kernel: task.kernel });
    }
    if (S.welcomed && S.running) {
      const busy = S.pool.some((w) => w.task);
      setStatus(busy ? 'computing' : 'waiting', { n: S.pool.filter((w) => !w.retire).length }, 'ok');
    }
    render();
  }

  function finished(slot, message) {
    const task = slot.task;
    slot.task = null;
    if (slot.retire) retire(slot);
    if (!task) return;
    if (!message.ok) {
      // The kernel refused an interval the server sent (it never should): the interval is left
      // to its lease, and the page says what happened.
      setStatus('refused', { message: message.message }, 'bad');
      dispatch();
      return;
    }
    const r = message.result;
    const now = performance.now();
    S.recent.push({ t: now, start: now - r.duration_s * 1000, terms: Number(BigInt(r.b) - BigInt(r.a) + 1n) });
    const entry = { result: r, resend: false, sentOn: -1, run: S.run };
    S.unacked.set(r.id, entry);
    if (task.epoch === S.epoch && S.welcomed) {
      sendResult(entry, false);
      request(1);
    } else if (S.welcomed) {
      // Computed for an earlier connection: re-sent, within the window.
      S.resendQueue.push(r.id);
      pumpResends();
    }
    dispatch();
  }

  // ---------------------------------------------------------------------------------------------
  // The session
  // ---------------------------------------------------------------------------------------------

  function send(message) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(message));
  }

  function request(count) {
    if (S.welcomed && count > 0) send({ type: 'request', count: count });
  }

  function sendResult(entry, resend) {
    const r = entry.result;
    const message = { type: 'result', id: r.id, a: r.a, b: r.b, even_sum: r.even_sum, odd_sum: r.odd_sum, pi: r.pi, duration_s: r.duration_s };
    if (resend) message.resend = true;
    entry.resend = resend;
    entry.sentOn = S.epoch;
    if (S.outstanding === 0) S.lastProgress = performance.now();
    S.outstanding++;
    send(message);
  }

  function pumpResends() {
    while (S.resendQueue.length && S.resendsWaiting < S.maxPrefetch) {
      const id = S.resendQueue.shift();
      const entry = S.unacked.get(id);
      if (!entry || entry.sentOn === S.epoch) continue;
      S.resendsWaiting++;
      S.resent++;
      sendResult(entry, true);
    }
  }

  function answered(id) {
    const entry = S.unacked.get(id);
    if (!entry || entry.sentOn !== S.epoch) return null;
    S.unacked.delete(id);
    S.outstanding = Math.max(0, S.outstanding - 1);
    S.lastProgress = performance.now();
    if (entry.resend) S.resendsWaiting = Math.max(0, S.resendsWaiting - 1);
    return entry;
  }

  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    if (!S.running || S.complete || S.refused || S.ws) return;
    S.epoch++;
    const epoch = S.epoch;
    S.welcomed = false;
    S.queue = [];
    S.outstanding = 0;
    S.resendsWaiting = 0;
    S.resendQueue = [];
    setStatus('connecting');
    const base = location.pathname.replace(/\/join\/?$/, '');
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + base + '/join/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      retryLater('reconnecting');
      return;
    }
    S.ws = ws;
    ws.onopen = () => {
      const name = ($('name').value || '').trim() || 'browser';
      send({ type: 'hello', version: 1, worker: name, token: token, agent: 'browser/' + shortAgent() });
    };
    ws.onmessage = (e) => {
      if (epoch !== S.epoch) return;
      let m;
      try {
        m = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      received(m);
    };
    ws.onclose = () => {
      if (epoch !== S.epoch) return;
      S.ws = null;
      S.welcomed = false;
      S.queue = [];
      // Tasks running now finish, and their results are re-sent on the next connection.
      if (S.running && !S.complete && !S.refused) retryLater(S.statusKey === 'stopping' ? 'stopping' : 'reconnecting');
      render();
    };
  }

  function retryLater(key) {
    if (S.retryTimer) return;
    const delay = S.retryMs;
    S.retryMs = Math.min(RETRY_MAX, S.retryMs * 2);
    setStatus(key, { s: Math.round(delay / 1000) }, 'bad');
    S.retryTimer = setTimeout(connect, delay);
  }

  function received(m) {
    switch (m.type) {
      case 'welcome': {
        S.welcomed = true;
        S.retryMs = RETRY_MIN;
        if (S.run !== null && S.run !== m.run) {
          // Another run: what was computed for the old one is worthless to it.
          S.unacked.clear();
          S.termsAccepted = 0n;
        }
        S.run = m.run;
        // The run's π kernel (protocol §4.7); servers older than the field run 'quad'.
        S.kernel = m.kernel || 'quad';
        S.terms = m.terms === null ? null : BigInt(m.terms);
        S.maxPrefetch = Math.max(1, m.max_prefetch | 0);
        S.heartbeatMs = Math.max(1000, (m.heartbeat_s || 20) * 1000);
        S.lastProgress = performance.now();
        for (const [id, entry] of S.unacked) if (entry.run === S.run || entry.run === null) S.resendQueue.push(id);
        pumpResends();
        const workers = S.pool.filter((w) => !w.retire).length;
        request(Math.min(S.maxPrefetch, 2 * workers));
        dispatch();
        break;
      }
      case 'assign':
        S.queue.push({ id: m.id, a: m.a, b: m.b, epoch: S.epoch, kernel: S.kernel });
        dispatch();
        break;
      case 'ack': {
        const entry = answered(m.id);
        if (entry && m.status === 'accepted') {
          S.accepted++;
          S.termsAccepted += BigInt(entry.result.b) - BigInt(entry.result.a) + 1n;
        }
        pumpResends();
        render();
        break;
      }
      case 'error':
        if (m.id !== undefined && m.id !== null) {
          if (answered(m.id)) S.rejected++;
          pumpResends();
          render();
        } else if (m.code === 'unauthorized') {
          S.refused = true;
          S.running = false;
          stopWorkers();
          setStatus('refused_token', {}, 'bad');
          render();
        } else {
          setStatus('refused', { message: m.message }, 'bad');
        }
        break;
      case 'done':
        if (m.reason === 'job_complete') {
          S.complete = true;
          S.running = false;
          send({ type: 'bye' });
          if (S.ws) S.ws.close();
          stopWorkers();
          setStatus('complete', {}, 'ok');
          render();
        } else {
          S.statusKey = 'stopping';
        }
        break;
      default:
        break; // a message this page does not know: ignored, as the protocol asks
    }
  }

  /** Heartbeats, the answer timeout (a link that died silently), and the display. */
  function tick() {
    const now = performance.now();
    if (S.welcomed) {
      if (!S.lastBeat || now - S.lastBeat >= S.heartbeatMs / 2) {
        send({ type: 'heartbeat' });
        S.lastBeat = now;
      }
      const limit = Math.max(10000, 3 * S.heartbeatMs);
      if (S.outstanding > 0 && now - S.lastProgress > limit && S.ws) {
        S.ws.close();
      }
    }
    render();
  }

  function start() {
    if (!capable || S.running || S.complete) return;
    S.running = true;
    S.paused = false;
    S.refused = false;
    S.retryMs = RETRY_MIN;
    for (let i = 0; i < S.threads; i++) spawnWorker();
    connect();
    render();
  }

  function pause() {
    if (!S.running) return;
    S.running = false;
    S.paused = true;
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    // Leave: the server gives this page's intervals back at once. Results not acknowledged yet
    // are kept and re-sent when the page resumes.
    send({ type: 'bye' });
    const ws = S.ws;
    S.ws = null;
    S.epoch++;
    S.welcomed = false;
    S.queue = [];
    if (ws) ws.close();
    stopWorkers();
    setStatus('paused');
    render();
  }

  /** The browser's short name, for the dashboard's worker table: "Chrome 131 · Android". */
  function shortAgent() {
    const ua = navigator.userAgent;
    const browsers = [
      [/Edg(?:A|iOS)?\/(\d+)/, 'Edge'], [/OPR\/(\d+)/, 'Opera'], [/SamsungBrowser\/(\d+)/, 'Samsung Internet'],
      [/Firefox\/(\d+)/, 'Firefox'], [/FxiOS\/(\d+)/, 'Firefox'], [/CriOS\/(\d+)/, 'Chrome'],
      [/HeadlessChrome\/(\d+)/, 'Headless Chrome'], [/Chrom(?:e|ium)\/(\d+)/, 'Chrome'],
      [/Version\/(\d+)[.\d]* (?:Mobile\/\S+ )?Safari/, 'Safari'],
    ];
    let name = 'browser';
    for (const [re, n] of browsers) {
      const m = ua.match(re);
      if (m) { name = n + ' ' + m[1]; break; }
    }
    const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad|iPod/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows'
      : /CrOS/.test(ua) ? 'ChromeOS' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : '';
    return os ? name + ' · ' + os : name;
  }

  // ---------------------------------------------------------------------------------------------
  // The page
  // ---------------------------------------------------------------------------------------------

  function randomSuffix() {
    const bytes = new Uint8Array(2);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  $('name').value = (params.get('name') || '').slice(0, 64) || 'browser-' + randomSuffix();
  const wanted = parseInt(params.get('threads') || '', 10);
  S.threads = Number.isFinite(wanted) ? Math.max(1, Math.min(cores, wanted)) : cores;
  const select = $('threads');
  for (let n = 1; n <= cores; n++) {
    const option = document.createElement('option');
    option.value = String(n);
    option.textContent = String(n);
    select.appendChild(option);
  }
  select.value = String(S.threads);
  select.addEventListener('change', () => setThreads(parseInt(select.value, 10)));
  $('threads-of').textContent = fill(T.threads_of, { n: cores });
  // The language toggle keeps the rest of the address (auto, name, threads, the #token).
  const toggle = $('lang-toggle');
  const other = new URLSearchParams(location.search);
  other.set('lang', toggle.getAttribute('lang'));
  toggle.href = '?' + other.toString() + location.hash;

  $('start').addEventListener('click', start);
  $('pause').addEventListener('click', pause);
  // A phone that wakes up reconnects at once rather than at the end of its back-off.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && S.running && !S.ws && S.retryTimer) {
      S.retryMs = RETRY_MIN;
      connect();
    }
  });
  window.addEventListener('pagehide', () => send({ type: 'bye' }));

  // For tests and curious users: the page's state, read-only.
  window.piswarmJoin = {
    state: () => ({
      state: S.statusKey, status: $('status').textContent, running: S.running, complete: S.complete, run: S.run, accepted: S.accepted,
      rejected: S.rejected, resent: S.resent, unacked: S.unacked.size, threads: S.pool.filter((w) => !w.retire).length,
      computing: S.pool.filter((w) => w.task).length, queued: S.queue.length,
    }),
  };

  if (!capable) {
    setStatus('no_workers', {}, 'bad');
  } else if (params.get('auto') === '1') {
    start();
  }
  render();
  S.ticker = setInterval(tick, 1000);
})();
